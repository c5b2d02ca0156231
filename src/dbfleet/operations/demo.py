"""``dbfleet demo``: the whole loop on an embedded SQLite database.

Creates a sample database, an inventory and a repository in one directory,
backs up twice (the second after a small change, to show deduplication),
restores, verifies fingerprints and checks every byte of the repository.
The directory is left in place so the user can keep exploring with the
printed ``--config`` path.
"""

from __future__ import annotations

import os
import random
import secrets
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import yaml

from dbfleet.config import load_inventory
from dbfleet.errors import UsageError
from dbfleet.operations.backup import backup_database
from dbfleet.operations.common import Repositories
from dbfleet.operations.repository import check, init_repository
from dbfleet.operations.restore import restore_snapshot, verify_snapshot

WORDS = [
    "backup",
    "restore",
    "verify",
    "snapshot",
    "chunk",
    "index",
    "pack",
    "key",
    "passphrase",
    "retention",
    "schedule",
    "postgres",
    "mysql",
    "mongodb",
    "redis",
    "sqlite",
    "clickhouse",
    "neo4j",
    "weaviate",
    "influx",
    "tenant",
    "audit",
    "migration",
    "lock",
    "history",
    "rollback",
    "fingerprint",
    "recovery",
    "drill",
    "freshness",
    "metric",
]


def create_sample_database(path: Path, notes: int = 20000, seed: int = 7) -> None:
    rng = random.Random(seed)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(
            """
            CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT);
            CREATE TABLE notes (
                id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES authors(id),
                title TEXT, body TEXT, score REAL, created TEXT, attachment BLOB);
            CREATE INDEX notes_author ON notes(author_id);
            CREATE TABLE tags (note_id INTEGER, tag TEXT, PRIMARY KEY (note_id, tag));
            """
        )
        conn.executemany(
            "INSERT INTO authors VALUES (?, ?, ?)",
            [(i, f"author {i}", f"author{i}@example.org") for i in range(1, 201)],
        )
        conn.executemany(
            "INSERT INTO notes VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    rng.randint(1, 200),
                    " ".join(rng.choices(WORDS, k=4)),
                    " ".join(rng.choices(WORDS, k=rng.randint(20, 120))),
                    round(rng.random() * 100, 3),
                    f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    rng.randbytes(rng.choice((0, 0, 0, 64, 256))) or None,
                )
                for i in range(1, notes + 1)
            ],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO tags VALUES (?, ?)",
            [(rng.randint(1, notes), rng.choice(WORDS)) for _ in range(notes)],
        )


def change_one_percent(path: Path) -> int:
    """A day's work: edit 1% of the notes (a contiguous range, as recent notes
    are) and add a few new ones."""
    with closing(sqlite3.connect(path)) as conn, conn:
        edited = conn.execute(
            "UPDATE notes SET score = score + 1 WHERE id BETWEEN 12000 AND 12199"
        ).rowcount
        added = conn.execute(
            "INSERT INTO notes (author_id, title, body, score, created) "
            "SELECT 200, title, body, score, '2026-12-01' FROM notes WHERE id <= 50"
        ).rowcount
        return edited + added


def run_demo(directory: Path, say: Callable[[str], None]) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    inventory_path = directory / "dbfleet.yaml"
    if inventory_path.exists():
        raise UsageError(
            f"{directory} already holds a demo", hint="pass an empty or new directory with --dir"
        )
    database = directory / "notes.db"
    create_sample_database(database)
    say(f"created a sample SQLite database {database} ({database.stat().st_size:,} bytes)")

    passphrase_file = directory / "passphrase"
    fd = os.open(passphrase_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(24) + "\n")
    inventory_path.write_text(
        yaml.safe_dump(
            {
                "repositories": {
                    "local": {
                        "url": f"file://{(directory / 'repository').absolute()}",
                        "passphrase_file": str(passphrase_file.absolute()),
                    }
                },
                "databases": {"notes": {"engine": "sqlite", "path": str(database.absolute())}},
            },
            sort_keys=False,
        )
    )
    inventory = load_inventory(inventory_path)
    init_repository(inventory, "local")
    say(f"initialised an encrypted repository in {directory / 'repository'}")

    repos = Repositories(inventory)
    first = backup_database(repos, "notes")
    say(
        f"backup 1: snapshot {first.snapshot[:8] if first.snapshot else '?'}, "
        f"{first.size:,} bytes read, {first.added_bytes:,} bytes stored"
    )
    changed = change_one_percent(database)
    second = backup_database(repos, "notes")
    say(
        f"changed {changed} rows; backup 2: snapshot "
        f"{second.snapshot[:8] if second.snapshot else '?'}, {second.size:,} bytes read, "
        f"only {second.added_bytes:,} new bytes stored (deduplicated)"
    )

    restored = directory / "notes-restored.db"
    restore_snapshot(repos, "notes:latest", to=str(restored))
    say(f"restored the latest snapshot to {restored}")
    verified = verify_snapshot(repos, "notes:latest")
    say(
        f"verify: {'fingerprints match' if verified.ok else 'MISMATCH'} "
        f"({verified.tables_compared} tables, restore took {verified.restore_seconds:.2f}s)"
    )
    report = check(repos, "local", read_data=True)
    say(
        f"repo check --read-data: {'no errors' if report.ok else report.errors}, "
        f"{report.packs} packs, {report.blobs} blobs"
    )
    say(f"explore further: dbfleet --config {inventory_path} snapshots")
    return {
        "directory": str(directory),
        "config": str(inventory_path),
        "backups": [first.as_dict(), second.as_dict()],
        "restored_to": str(restored),
        "verify": verified.as_dict(),
        "check": report.as_dict(),
        "ok": verified.ok and report.ok,
    }
