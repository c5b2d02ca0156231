"""The ``dbfleet`` command, driven as a user drives it: a subprocess with an
inventory, a SQLite database and a file:// repository in a temporary directory.

Every invocation also checks that the passphrase never shows in the output."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbfleet.operations.demo import create_sample_database

PASSPHRASE = "cli-Passphrase-7f3a9c-never-printed"


@dataclass
class Estate:
    """A directory with notes.db, dbfleet.yaml and an initialised repository."""

    root: Path
    config: Path
    database: Path
    repository: Path
    first_backup: dict[str, Any]


def write_inventory(root: Path, name: str, databases: dict[str, dict[str, Any]]) -> Path:
    path = root / name
    document = {
        "repositories": {
            "local": {
                "url": f"file://{root / 'repo'}",
                "passphrase_env": "DBFLEET_PASSPHRASE",
            }
        },
        "databases": databases,
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def dbfleet(
    *args: str | Path,
    config: Path | None = None,
    passphrase: str | None = PASSPHRASE,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DBFLEET_")}
    full_env["COLUMNS"] = "200"
    if passphrase is not None:
        full_env["DBFLEET_PASSPHRASE"] = passphrase
    full_env.update(env or {})
    argv = [sys.executable, "-m", "dbfleet"]
    if config is not None:
        argv += ["--config", str(config)]
    proc = subprocess.run(
        argv + [str(a) for a in args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )
    for stream in (proc.stdout, proc.stderr):
        assert PASSPHRASE not in stream, f"passphrase leaked by {args}"
        assert "Traceback" not in stream, proc.stderr
    return proc


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single line a failing command prints on stderr."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dbfleet: error: "), proc.stderr
    return lines[0]


def rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in found}


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Estate:
    root = tmp_path_factory.mktemp("estate")
    database = root / "notes.db"
    create_sample_database(database, notes=2000)
    config = write_inventory(
        root, "dbfleet.yaml", {"notes": {"engine": "sqlite", "path": str(database)}}
    )

    init = dbfleet("repo", "init", config=config)
    assert init.returncode == 0, init.stderr
    assert "created repository local" in init.stdout
    assert (root / "repo" / "config").is_file()

    backup = dbfleet("backup", "notes", "--json", config=config)
    assert backup.returncode == 0, backup.stderr
    (result,) = json.loads(backup.stdout)
    return Estate(root, config, database, root / "repo", result)


def copy_estate(estate: Estate, tmp_path: Path) -> Estate:
    """An independent copy (own repository) for tests that damage things."""
    root = tmp_path / "copy"
    shutil.copytree(estate.root, root)
    config = write_inventory(
        root, "dbfleet.yaml", {"notes": {"engine": "sqlite", "path": str(root / "notes.db")}}
    )
    return Estate(root, config, root / "notes.db", root / "repo", estate.first_backup)


# -- the happy path -------------------------------------------------------


def test_backup_json(estate: Estate) -> None:
    result = estate.first_backup
    for key in ("database", "ok", "snapshot", "added_bytes", "error"):
        assert key in result
    assert result["database"] == "notes"
    assert result["ok"] is True
    assert result["error"] is None
    assert len(result["snapshot"]) == 64 and int(result["snapshot"], 16) >= 0
    assert 0 < result["added_bytes"] < estate.database.stat().st_size


def test_snapshots_json(estate: Estate) -> None:
    proc = dbfleet("snapshots", "--json", config=estate.config)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert isinstance(listed, list) and listed
    for item in listed:
        for key in ("id", "database", "engine", "time", "size", "added_bytes"):
            assert key in item
        assert datetime.fromisoformat(item["time"]).tzinfo is not None
    (mine,) = [s for s in listed if s["id"] == estate.first_backup["snapshot"]]
    assert mine["database"] == "notes" and mine["engine"] == "sqlite"
    assert mine["size"] == estate.database.stat().st_size
    assert mine["added_bytes"] == estate.first_backup["added_bytes"]


def test_snapshots_human(estate: Estate) -> None:
    proc = dbfleet("snapshots", "notes", config=estate.config)
    assert proc.returncode == 0, proc.stderr
    assert estate.first_backup["snapshot"][:8] in proc.stdout


def test_restore_to_path(estate: Estate, tmp_path: Path) -> None:
    target = tmp_path / "restored.db"
    proc = dbfleet("restore", "notes:latest", "--to", target, config=estate.config)
    assert proc.returncode == 0, proc.stderr
    assert tables(target) == tables(estate.database)
    for table in ("authors", "notes", "tags"):
        assert rows(target, table) == rows(estate.database, table)

    # restoring over an existing file needs --clean, and changes nothing without it
    before = target.read_bytes()
    again = dbfleet("restore", "notes:latest", "--to", target, config=estate.config)
    assert again.returncode == 1
    assert "--clean" in error_line(again)
    assert target.read_bytes() == before


def test_restore_by_id_single_table(estate: Estate) -> None:
    snapshot_id = estate.first_backup["snapshot"]
    proc = dbfleet(
        "restore", snapshot_id[:12], "--target", "other", "--table", "notes", config=estate.config
    )
    assert proc.returncode == 0, proc.stderr
    other = estate.root / "other.db"
    assert tables(other) == {"notes"}
    assert rows(other, "notes") == rows(estate.database, "notes")


def test_verify(estate: Estate) -> None:
    before = set(estate.root.iterdir())
    proc = dbfleet("verify", "notes:latest", "--json", config=estate.config)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is True and result["differences"] == []
    assert result["tables_compared"] == 3
    assert set(estate.root.iterdir()) == before  # the scratch copy is gone


def test_repo_check_read_data(estate: Estate) -> None:
    proc = dbfleet("repo", "check", "--read-data", config=estate.config)
    assert proc.returncode == 0, proc.stderr
    assert "no errors" in proc.stdout


def test_config_check_ok(estate: Estate) -> None:
    proc = dbfleet("config", "check", "--json", config=estate.config, passphrase=None)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["databases"] == {"notes": "sqlite"}


def test_repo_key_list_json(estate: Estate) -> None:
    proc = dbfleet("repo", "key", "list", "--json", config=estate.config)
    assert proc.returncode == 0, proc.stderr
    (key,) = json.loads(proc.stdout)
    assert key["current"] is True and key["repository"] == "local"


def test_key_add_and_passwd(estate: Estate, tmp_path: Path) -> None:
    copy = copy_estate(estate, tmp_path)
    second, third = "second-Passphrase-b81d", "third-Passphrase-c92e"

    def run(
        *args: str, passphrase: str, new: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = dbfleet(
            *args, config=copy.config, passphrase=passphrase, env={"NEW_PASS": new} if new else None
        )
        for secret in (second, third):
            assert secret not in proc.stdout + proc.stderr
        return proc

    added = run(
        "repo", "key", "add", "--new-passphrase-env", "NEW_PASS", passphrase=PASSPHRASE, new=second
    )
    assert added.returncode == 0, added.stderr
    assert run("snapshots", "--json", passphrase=second).returncode == 0

    changed = run(
        "repo", "key", "passwd", "--new-passphrase-env", "NEW_PASS", passphrase=second, new=third
    )
    assert changed.returncode == 0, changed.stderr
    assert run("snapshots", passphrase=second).returncode == 3
    listed = run("repo", "key", "list", "--json", passphrase=third)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 2


# -- failures -------------------------------------------------------------


def test_corrupted_pack(estate: Estate, tmp_path: Path) -> None:
    copy = copy_estate(estate, tmp_path)
    (pack,) = [p for p in (copy.repository / "data").rglob("*") if p.is_file()]
    content = bytearray(pack.read_bytes())
    content[200] ^= 0xFF
    pack.write_bytes(bytes(content))

    check = dbfleet("repo", "check", "--read-data", config=copy.config)
    assert check.returncode == 3
    errors = check.stderr.strip().splitlines()
    assert errors and all(line.startswith("local: error: ") for line in errors), check.stderr
    assert "errors" in check.stdout

    restore = dbfleet("restore", "notes:latest", "--to", tmp_path / "r.db", config=copy.config)
    assert restore.returncode == 3
    assert "authentication failed" in error_line(restore)
    assert not (tmp_path / "r.db").exists()


def test_config_check_broken_inventory(tmp_path: Path) -> None:
    config = write_inventory(
        tmp_path,
        "broken.yaml",
        {
            "notes": {"engine": "sqlite", "path": "/x.db", "pth": "typo"},
            "app": {"engine": "oracle", "url": "oracle://h/db"},
        },
    )
    proc = dbfleet("config", "check", config=config, passphrase=None)
    assert proc.returncode == 2
    assert "databases.notes.pth" in proc.stderr
    assert proc.stderr.startswith("dbfleet: error: ")


def test_config_yaml_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("databases:\n  notes: [unclosed\n")
    proc = dbfleet("config", "check", config=config, passphrase=None)
    assert proc.returncode == 2
    assert "line" in error_line(proc)


def test_missing_inventory(tmp_path: Path) -> None:
    proc = dbfleet("snapshots", config=tmp_path / "nope.yaml")
    assert proc.returncode == 2


@pytest.mark.parametrize("selector", ["zzzz", "notes:abc", "notes:0000000000", "ghost:latest"])
def test_bad_snapshot_id(estate: Estate, selector: str, tmp_path: Path) -> None:
    proc = dbfleet("restore", selector, "--to", tmp_path / "x.db", config=estate.config)
    assert proc.returncode == 2
    error_line(proc)


def test_wrong_passphrase(estate: Estate) -> None:
    proc = dbfleet("snapshots", config=estate.config, passphrase="not-the-passphrase")
    assert proc.returncode == 3
    line = error_line(proc)
    assert "wrong passphrase" in line and "not-the-passphrase" not in line


@pytest.mark.parametrize("json_output", [False, True])
def test_backup_with_a_wrong_passphrase_exits_3(estate: Estate, json_output: bool) -> None:
    """Every database failing for the same integrity reason exits 3, like
    any other command; the per-database result carries the code too."""
    args = ["backup", "--all"] + (["--json"] if json_output else [])
    proc = dbfleet(*args, config=estate.config, passphrase="not-the-passphrase")
    assert proc.returncode == 3
    if json_output:
        results = json.loads(proc.stdout)
        assert results and all(r["exit_code"] == 3 and not r["ok"] for r in results)
        assert {r["error_type"] for r in results} == {"WrongPassphraseError"}
    assert "not-the-passphrase" not in proc.stdout + proc.stderr


def test_no_passphrase_and_no_terminal(estate: Estate) -> None:
    proc = dbfleet("snapshots", config=estate.config, passphrase=None)
    assert proc.returncode == 2
    assert "DBFLEET_PASSPHRASE" in error_line(proc)


def test_init_twice(estate: Estate) -> None:
    proc = dbfleet("repo", "init", config=estate.config)
    assert proc.returncode == 3
    assert "already exists" in error_line(proc)


def test_backup_all_with_one_failure(estate: Estate, tmp_path: Path) -> None:
    copy = copy_estate(estate, tmp_path)
    config = write_inventory(
        copy.root,
        "two.yaml",
        {
            "notes": {"engine": "sqlite", "path": str(copy.database)},
            "ghost": {"engine": "sqlite", "path": str(copy.root / "does-not-exist.db")},
        },
    )
    proc = dbfleet("backup", "--all", "--json", config=config)
    assert proc.returncode == 1
    results = {r["database"]: r for r in json.loads(proc.stdout)}
    assert set(results) == {"notes", "ghost"}
    assert results["notes"]["ok"] is True and results["notes"]["error"] is None
    assert results["notes"]["added_bytes"] == 0  # unchanged since the first backup
    assert results["ghost"]["ok"] is False and results["ghost"]["snapshot"] is None
    assert "does-not-exist.db" in results["ghost"]["error"]
    listed = json.loads(dbfleet("snapshots", "--json", config=config).stdout)
    assert {s["database"] for s in listed} == {"notes"}


def test_demo(tmp_path: Path) -> None:
    proc = dbfleet("demo", "--dir", tmp_path / "demo", "--json", passphrase=None)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is True
    assert result["check"]["errors"] == []
    second = result["backups"][1]
    assert 0 < second["added_bytes"] < second["size"] / 2
    secret = (tmp_path / "demo" / "passphrase").read_text().strip()
    assert secret not in proc.stdout and secret not in proc.stderr


def test_version_and_help() -> None:
    proc = dbfleet("--help", passphrase=None)
    assert proc.returncode == 0
    assert "backup" in proc.stdout and "restore" in proc.stdout
    version = dbfleet("--version", passphrase=None)
    assert version.returncode == 0 and version.stdout.startswith("dbfleet ")


COMMANDS = [
    [],
    ["backup"],
    ["snapshots"],
    ["restore"],
    ["verify"],
    ["health"],
    ["demo"],
    ["repo"],
    ["repo", "init"],
    ["repo", "check"],
    ["repo", "unlock"],
    ["repo", "key"],
    ["repo", "key", "list"],
    ["repo", "key", "add"],
    ["repo", "key", "remove"],
    ["repo", "key", "passwd"],
    ["config"],
    ["config", "check"],
    ["forget"],
    ["prune"],
    ["pin"],
    ["unpin"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "dbfleet")
def test_help_of_each_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """In-process (the subprocess path is covered above) to keep the suite fast."""
    from dbfleet.cli.main import run

    with pytest.raises(SystemExit) as info:
        run([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "Usage:" in out


@pytest.mark.parametrize(
    "args",
    [
        ["forget", "--keep-daily", "x"],
        ["forget", "--keep-within", "3x"],
        ["restore"],
        ["no-such-command"],
        ["backup", "--no-such-option"],
    ],
    ids=lambda a: " ".join(a),
)
def test_usage_errors_exit_2_without_traceback(estate: Estate, args: list[str]) -> None:
    proc = dbfleet(*args, config=estate.config)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip()


def test_forget_and_prune(estate: Estate, tmp_path: Path) -> None:
    own = copy_estate(estate, tmp_path)
    for _ in range(3):
        with closing(sqlite3.connect(own.database)) as conn, conn:
            conn.execute("UPDATE notes SET score = score + 1 WHERE id <= 100")
        assert dbfleet("backup", "notes", config=own.config).returncode == 0
    pin = dbfleet("pin", "notes:latest", config=own.config)
    assert pin.returncode == 0, pin.stderr
    dry = dbfleet("forget", "--keep-last", "1", "--dry-run", "--json", config=own.config)
    assert dry.returncode == 0, dry.stderr
    (group,) = json.loads(dry.stdout)
    assert len(group["keep"]) == 1 and len(group["remove"]) == 3
    assert "pinned" in group["keep"][0]["reasons"]
    listed = json.loads(dbfleet("snapshots", "--json", config=own.config).stdout)
    assert len(listed) == 4  # the dry run removed nothing
    done = dbfleet("forget", "--keep-last", "2", "--prune", config=own.config)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(dbfleet("snapshots", "--json", config=own.config).stdout)) == 2
    prune = dbfleet("prune", "--json", config=own.config)
    assert prune.returncode == 0, prune.stderr
    check = dbfleet("repo", "check", "--read-data", config=own.config)
    assert check.returncode == 0, check.stderr
    assert dbfleet("verify", "notes:latest", config=own.config).returncode == 0
