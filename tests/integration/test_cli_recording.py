"""Every operation a person runs is recorded in the job catalog: real SQLite
and PostgreSQL databases, a real file:// repository, the commands run as
subprocesses as a user runs them, and read back through ``dbfleet jobs --json``."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbfleet.config import load_inventory
from dbfleet.operations.demo import create_sample_database
from dbfleet.operations.repository import init_repository
from tests.integration.conftest import PG_PASSWORD_ENV, PgServer

PASSPHRASE = "recording-Passphrase-7f31-never-printed"
FAST_KDF = {"n": 2**10, "r": 8, "p": 1}
ACTOR = f"cli:{getpass.getuser()}"


class Estate:
    def __init__(self, root: Path, databases: dict[str, dict[str, Any]], **top: Any) -> None:
        self.root = root
        self.config = root / "dbfleet.yaml"
        document = {
            "repositories": {
                "local": {
                    "url": f"file://{root / 'repo'}",
                    "passphrase_env": "DBFLEET_TEST_REC_PW",
                },
                "offsite": {
                    "url": f"file://{root / 'offsite'}",
                    "passphrase_env": "DBFLEET_TEST_REC_PW",
                },
            },
            **top,
            "databases": databases,
        }
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))
        os.environ["DBFLEET_TEST_REC_PW"] = PASSPHRASE
        init_repository(load_inventory(self.config), "local", kdf=FAST_KDF)
        init_repository(load_inventory(self.config), "offsite", kdf=FAST_KDF)

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "DBFLEET_CONFIG"}
        env.update(COLUMNS="200", DBFLEET_TEST_REC_PW=PASSPHRASE)
        proc = subprocess.run(
            [sys.executable, "-m", "dbfleet", "--config", str(self.config), *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=300,
            check=False,
        )  # fmt: skip
        for stream in (proc.stdout, proc.stderr):
            assert PASSPHRASE not in stream
            assert "Traceback" not in stream, proc.stderr
        assert proc.returncode == code, proc.stderr
        return proc

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self.run(*args, "--json", code=code).stdout)

    def jobs(self) -> list[dict[str, Any]]:
        return list(reversed(self.json("jobs", "--limit", "100")))


@pytest.fixture
def estate(tmp_path: Path) -> Estate:
    notes, wiki = tmp_path / "notes.db", tmp_path / "wiki.db"
    create_sample_database(notes, notes=800)
    create_sample_database(wiki, notes=50, seed=5)
    return Estate(
        tmp_path,
        {
            "notes": {"engine": "sqlite", "path": str(notes), "repository": "local"},
            "wiki": {"engine": "sqlite", "path": str(wiki), "repository": "local"},
            "gone": {
                "engine": "sqlite",
                "path": str(tmp_path / "missing" / "gone.db"),
                "repository": "local",
            },
        },
    )


def test_cli_backup_is_recorded_with_its_size_facts(estate: Estate) -> None:
    results = estate.json("backup", "notes", "wiki")
    jobs = estate.jobs()
    assert [(j["kind"], j["target"], j["status"]) for j in jobs] == [
        ("backup", "notes", "ok"),
        ("backup", "wiki", "ok"),
    ]
    for job, result in zip(jobs, results, strict=True):
        assert (job["trigger"], job["actor"], job["scheduled_at"]) == ("manual", ACTOR, None)
        assert job["job"] == f"backup:{result['database']}"
        assert job["snapshot"] == result["snapshot"]
        assert job["bytes"] == result["added_bytes"] > 0
        (recorded,) = job["details"]["results"]
        for key in ("size", "stored_size", "added_bytes", "duration_seconds"):
            assert recorded[key] == result[key]
        assert recorded["stored_size"] > 0
    # the second backup of unchanged data adds (almost) nothing, and is recorded as such
    again = estate.json("backup", "notes")[0]
    newest = estate.jobs()[-1]
    assert newest["bytes"] == again["added_bytes"] < results[0]["added_bytes"]


def test_failed_backup_is_recorded_as_failed_with_one_line(estate: Estate) -> None:
    estate.run("backup", "notes", "gone", code=1)
    ok, failed = estate.jobs()
    assert (ok["target"], ok["status"]) == ("notes", "ok")
    assert (failed["target"], failed["status"], failed["actor"]) == ("gone", "failed", ACTOR)
    assert failed["error"] and "\n" not in failed["error"]
    assert "gone.db" in failed["error"]
    assert failed["details"]["results"][0]["ok"] is False


def test_restore_verify_copy_forget_prune_are_recorded(estate: Estate) -> None:
    estate.run("backup", "notes")
    estate.run("verify", "notes:latest")
    estate.run("restore", "notes:latest", "--to", str(estate.root / "restored.db"))
    estate.run("copy", "--from", "local", "--to", "offsite", "--database", "notes")
    estate.run("forget", "notes", "--keep-last", "1")
    estate.run("forget", "notes", "--keep-last", "1", "--dry-run")  # changes nothing: not recorded
    estate.run("prune", "local")
    estate.run("restore", "nosuch:latest", "--to", str(estate.root / "x.db"), code=2)
    jobs = estate.jobs()
    assert [(j["kind"], j["target"], j["status"]) for j in jobs] == [
        ("backup", "notes", "ok"),
        ("verify", "notes", "ok"),
        ("restore", "notes", "ok"),
        ("copy", "notes", "ok"),
        ("forget", "notes", "ok"),
        ("prune", "local", "ok"),
        ("restore", "nosuch", "failed"),
    ]
    assert all((j["trigger"], j["actor"]) == ("manual", ACTOR) for j in jobs)
    backup, verify, restore, copy, forget, prune, bad = jobs
    assert verify["snapshot"] == backup["snapshot"] == restore["snapshot"]
    assert restore["bytes"] > 0
    assert copy["details"]["destination"] == "offsite" and copy["details"]["copied"] == 1
    assert forget["details"]["groups"][0]["kept"] == 1
    assert "nosuch" in bad["error"]


def test_unwritable_catalog_warns_and_keeps_the_outcome(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the catalog's directory should be\n")
    db = tmp_path / "notes.db"
    create_sample_database(db, notes=20)
    estate = Estate(
        tmp_path,
        {"notes": {"engine": "sqlite", "path": str(db), "repository": "local"}},
        serve={"catalog": str(blocker / "catalog.db")},
    )
    proc = estate.run("backup", "notes")
    assert "snapshot" in proc.stdout
    assert "warning: this backup of notes was not recorded in the job catalog" in proc.stderr
    assert str(blocker / "catalog.db") in proc.stderr
    assert len(estate.json("snapshots", "notes")) == 1


def test_cli_backup_of_postgresql_is_recorded(
    pg_server: PgServer, pg_databases: Any, tmp_path: Path
) -> None:
    name = pg_databases("recorded")
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with pg_server.connect(name) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g")
    config = pg_server.config(name)
    estate = Estate(
        tmp_path,
        {
            "pg": {
                "engine": "postgresql",
                "url": config.url,
                "password_env": PG_PASSWORD_ENV,
                "repository": "local",
            }
        },
    )
    (result,) = estate.json("backup", "pg")
    (job,) = estate.jobs()
    assert (job["kind"], job["target"], job["status"], job["actor"]) == (
        "backup", "pg", "ok", ACTOR,
    )  # fmt: skip
    assert job["snapshot"] == result["snapshot"]
    assert job["details"]["results"][0]["stored_size"] == result["stored_size"] > 0
    assert job["bytes"] == result["added_bytes"] > 0
