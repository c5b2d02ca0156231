"""Restore drills on real SQLite databases and a real file:// repository:
pass, fingerprint mismatch, RTO over its objective, unsupported (no scratch
targets, no fingerprint), failures that do not stop ``--all``, a scratch
target that is another inventory database, the catalog record, alerts to a
real HTTP receiver, and ``dbfleet drills``. The commands run as subprocesses,
as a user runs them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_notify import Receiver, receiver  # noqa: F401 - the fixture

from dbfleet.catalog import Catalog
from dbfleet.cli.drill import drill_status
from dbfleet.config import load_inventory
from dbfleet.engines.base import Capabilities
from dbfleet.engines.sqlite import SQLiteEngine
from dbfleet.operations.backup import backup_many
from dbfleet.operations.common import Repositories
from dbfleet.operations.demo import create_sample_database
from dbfleet.operations.drill import DrillResult, drill_job, drill_targets, exit_code, record
from dbfleet.operations.repository import init_repository
from dbfleet.repo import Snapshot
from dbfleet.schedule.config import JOB_KINDS

PASSPHRASE = "drill-Passphrase-51c2e0-never-printed"
FAST_KDF = {"n": 2**10, "r": 8, "p": 1}


ENTRY = "dbfleet"  # python -m dbfleet


class Estate:
    """notes.db (rto 30m) and wiki.db, an inventory, a repository, a catalog."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "dbfleet.yaml"
        self.catalog = root / "dbfleet.catalog.db"
        self.notes, self.wiki = root / "notes.db", root / "wiki.db"
        create_sample_database(self.notes, notes=1500)
        create_sample_database(self.wiki, notes=300, seed=3)
        self.write()
        os.environ["DBFLEET_TEST_DRILL_PW"] = PASSPHRASE
        init_repository(load_inventory(self.config), "local", kdf=FAST_KDF)

    def write(self, top: dict[str, Any] | None = None, **per_db: dict[str, Any]) -> None:
        databases: dict[str, dict[str, Any]] = {
            "notes": {"engine": "sqlite", "path": str(self.notes), "rto": "30m"},
            "wiki": {"engine": "sqlite", "path": str(self.wiki)},
        }
        for name, extra in per_db.items():
            databases[name].update(extra)
        document = {
            "repositories": {
                "local": {
                    "url": f"file://{self.root / 'repo'}",
                    "passphrase_env": "DBFLEET_TEST_DRILL_PW",
                }
            },
            **(top or {}),
            "databases": databases,
        }
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))

    def repos(self) -> Repositories:
        return Repositories(load_inventory(self.config))

    def backup(self, *names: str) -> None:
        assert all(r.ok for r in backup_many(self.repos(), list(names)))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBFLEET_")}
        env.update(COLUMNS="200", DBFLEET_TEST_DRILL_PW=PASSPHRASE)
        proc = subprocess.run(
            [sys.executable, "-m", ENTRY, "--config", str(self.config), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        for stream in (proc.stdout, proc.stderr):
            assert PASSPHRASE not in stream
            assert "Traceback" not in stream, proc.stderr
        return proc

    def json(self, *args: str, code: int = 0) -> Any:
        proc = self.run(*args, "--json")
        assert proc.returncode == code, proc.stderr
        return json.loads(proc.stdout)

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if "dbfleet-drill" in p.name)

    def save_variant(self, database: str, **changes: Any) -> Snapshot:
        """A manifest over the latest snapshot's streams with ``changes``
        (the repository's own API: as if the backup had recorded them)."""
        repo = self.repos().for_database(database)
        latest = repo.find_snapshot(f"{database}:latest")
        variant = latest.model_copy(update={"id": "", **changes})
        repo.save_snapshot(variant)
        return variant


@pytest.fixture
def estate(tmp_path: Path) -> Estate:
    return Estate(tmp_path)


def fingerprint(path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT count(*), sum(length(body)) FROM notes").fetchall()


def test_a_drill_passes_measures_rto_cleans_up_and_is_recorded(estate: Estate) -> None:
    estate.backup("notes")
    before = fingerprint(estate.notes)
    repos = estate.repos()
    (result,) = drill_targets(repos, ["notes"])["notes"]
    assert result.result == "pass" and result.ok, result.reason
    assert result.snapshot == repos.for_database("notes").find_snapshot("notes:latest").id
    assert result.scratch is not None and "dbfleet-drill_" in result.scratch
    assert result.restore_seconds is not None and result.fingerprint_seconds is not None
    assert result.rto_seconds == pytest.approx(
        result.restore_seconds + result.fingerprint_seconds, abs=0.002
    )
    assert result.rto_seconds is not None and 0 < result.rto_seconds <= result.total_seconds
    assert result.rto_objective_seconds == 1800 and result.within_objective is True
    assert result.tables_compared == 3 and result.bytes > 0 and not result.differences
    assert estate.leftovers() == [] and fingerprint(estate.notes) == before
    assert exit_code([result]) == 0

    with Catalog(estate.catalog) as cat:
        run = record(cat, "notes", [result], datetime.fromisoformat(result.started_at))
        assert (run.job, run.kind, run.trigger) == ("drill:notes", "drill", "manual")
        assert run.status == "ok"
        assert run.snapshot == result.snapshot and run.bytes == result.bytes
        (row,) = drill_status(load_inventory(estate.config), cat, ["notes"])
    assert (row.result, row.rto_seconds, row.within_objective, row.run_id) == (
        "pass", result.rto_seconds, True, run.id,
    )  # fmt: skip
    assert row.rto_objective == "30m" and row.snapshot == result.snapshot


def test_cli_all_continues_past_failures_and_drills_reports(estate: Estate) -> None:
    estate.backup("notes")  # wiki: never backed up
    results = estate.json("drill", "--all", code=1)
    assert [(r["database"], r["result"]) for r in results] == [
        ("notes", "pass"), ("wiki", "failed"),
    ]  # fmt: skip
    assert "no snapshot of 'wiki'" in results[1]["reason"]
    assert results[1]["error_type"] == "SnapshotNotFoundError"
    keys = {
        "database", "entry", "engine", "result", "ok", "snapshot", "snapshot_time", "scratch",
        "started_at", "rto_seconds", "restore_seconds", "fingerprint_seconds", "cleanup_seconds",
        "total_seconds", "rto_objective_seconds", "within_objective", "bytes", "tables_compared",
        "differences", "caveats", "reason", "error_type", "run_id",
    }  # fmt: skip
    assert set(results[0]) == keys and results[0]["run_id"] != results[1]["run_id"]

    rows = estate.json("drills", code=1)
    assert [(r["database"], r["result"], r["ok"]) for r in rows] == [
        ("notes", "pass", True), ("wiki", "failed", False),
    ]  # fmt: skip
    assert rows[0]["rto_seconds"] == results[0]["rto_seconds"]
    assert rows[0]["rto_objective_seconds"] == 1800 and rows[0]["within_objective"] is True
    assert rows[1]["rto_objective"] == "-" and rows[1]["within_objective"] is None

    jobs = json.loads(
        subprocess.run(
            [sys.executable, "-m", "dbfleet", "--config", str(estate.config), "jobs", "--json",
             "--kind", "drill"],
            capture_output=True, text=True, check=True,
            env={**os.environ, "DBFLEET_TEST_DRILL_PW": PASSPHRASE},
        ).stdout
    )  # fmt: skip
    assert sorted((j["job"], j["status"], j["trigger"]) for j in jobs) == [
        ("drill:notes", "ok", "manual"), ("drill:wiki", "failed", "manual"),
    ]  # fmt: skip
    assert jobs[0]["details"]["drills"][0]["database"] in ("notes", "wiki")

    estate.backup("wiki")
    assert estate.run("drill", "wiki").returncode == 0
    table = estate.run("drills")
    assert table.returncode == 0, table.stderr
    assert "notes" in table.stdout and "30m" in table.stdout and "FAILED" not in table.stdout


def test_mismatch_exits_3_and_alerts_then_recovers(
    estate: Estate,
    receiver: Receiver,  # noqa: F811 - the fixture
) -> None:
    estate.write({"notifications": [{"type": "webhook", "url": f"{receiver.url}/hook"}]})
    estate.backup("notes")
    latest = estate.repos().for_database("notes").find_snapshot("notes:latest")
    assert latest.fingerprint is not None
    tables = dict(latest.fingerprint["tables"])
    tables["notes"] = {**tables["notes"], "rows": tables["notes"]["rows"] + 1}
    bad = estate.save_variant(
        "notes",
        fingerprint={**latest.fingerprint, "tables": tables},
        finished=latest.finished - timedelta(seconds=1),  # not the latest
    )

    proc = estate.run("drill", "notes", "--snapshot", bad.id[:12])
    assert proc.returncode == 3, proc.stderr
    assert "MISMATCH" in proc.stderr and "notes: rows" in proc.stderr
    assert estate.leftovers() == []
    (event,) = [r.body for r in receiver.requests]
    assert event["event"] == "job_failed" and event["database"] == "notes"
    assert event["job"]["job"] == "drill:notes" and event["job"]["snapshot"] == bad.id
    assert "restored data differs" in event["summary"]

    again = estate.json("drill", "notes", "--snapshot", bad.id, code=3)
    assert again[0]["result"] == "mismatch" and again[0]["differences"]
    assert len(receiver.requests) == 1  # still failing: no repeat before alert_repeat

    assert estate.run("drill", "notes").returncode == 0
    assert [r.body["event"] for r in receiver.requests] == ["job_failed", "job_recovered"]
    (row,) = estate.json("drills", "notes")
    assert row["result"] == "pass" and row["snapshot"] == latest.id


def test_a_corrupt_pack_is_an_integrity_failure_exit_3(estate: Estate) -> None:
    """Corruption is what exit 3 means (README): a drill that meets it says
    `corrupt`, not `failed`, and exits 3 like verify and restore do."""
    estate.backup("notes")
    (pack,) = [p for p in (estate.root / "repo" / "data").rglob("*") if p.is_file()]
    content = bytearray(pack.read_bytes())
    content[200] ^= 0xFF
    pack.write_bytes(bytes(content))

    (result,) = estate.json("drill", "notes", code=3)
    assert (result["result"], result["ok"], result["error_type"]) == (
        "corrupt", False, "IntegrityError",
    )  # fmt: skip
    assert "authentication failed" in result["reason"] and estate.leftovers() == []
    human = estate.run("drill", "notes")
    assert human.returncode == 3 and "notes: CORRUPT" in human.stderr
    assert estate.run("verify", "notes:latest").returncode == 3  # the same verdict

    (row,) = estate.json("drills", "notes", code=3)
    assert row["result"] == "corrupt" and row["status"] == "failed"
    results = estate.json("drill", "--all", code=3)  # wiki: never backed up
    assert [(r["database"], r["result"]) for r in results] == [
        ("notes", "corrupt"), ("wiki", "failed"),
    ]  # fmt: skip
    assert exit_code([a_result("failed")]) == 1


def a_result(result: str, error_type: str | None = None) -> DrillResult:
    return DrillResult("db", "db", "sqlite", result=result, error_type=error_type)


def test_exit_codes_of_several_drills() -> None:
    ok, failed = a_result("pass"), a_result("failed", "EngineError")
    assert exit_code([ok]) == 0 and exit_code([ok, failed]) == 1
    assert exit_code([failed, a_result("mismatch")]) == 3
    assert exit_code([failed, a_result("corrupt", "IntegrityError")]) == 3
    assert exit_code([ok, a_result("failed", "WrongPassphraseError")]) == 3
    assert exit_code([ok, a_result("failed", "LockedError")]) == 3


def test_rto_over_the_objective_fails_the_drill(estate: Estate) -> None:
    estate.write(notes={"rto": "1ms"})
    estate.backup("notes")
    (result,) = estate.json("drill", "notes", code=1)
    assert result["result"] == "rto_exceeded" and result["differences"] == []
    assert result["within_objective"] is False and result["rto_objective_seconds"] == 0.001
    assert "over the RTO" in result["reason"] and result["error_type"] == "RTOExceeded"
    estate.write(notes={"rto": "1h"})  # the report judges against today's objective
    (row,) = estate.json("drills", "notes", code=1)
    assert (row["result"], row["within_objective"], row["rto_objective"]) == (
        "rto_exceeded", True, "1h",
    )  # fmt: skip


def test_unsupported_is_never_a_pass(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> None:
    estate.backup("notes", "wiki")
    bare = estate.save_variant("wiki", fingerprint=None)
    (result,) = drill_targets(estate.repos(), ["wiki"], snapshot=bare.id)["wiki"]
    assert result.result == "unsupported" and not result.ok
    assert "no fingerprint" in str(result.reason) and exit_code([result]) == 1

    monkeypatch.setattr(SQLiteEngine, "capabilities", Capabilities(scratch_targets=False))
    (result,) = drill_targets(estate.repos(), ["notes"])["notes"]
    assert result.result == "unsupported" and result.rto_seconds is None
    assert "sqlite has no scratch targets" in str(result.reason)
    assert result.scratch is None and estate.leftovers() == []
    job = drill_job(estate.repos(), "notes")
    assert job["ok"] is False and job["error_type"] == "Unsupported"
    assert job["error"].startswith("unsupported: engine sqlite")


def test_scratch_that_is_another_inventory_database_is_refused(estate: Estate) -> None:
    estate.write(wiki={"scratch": "notes.db"})  # a file name next to wiki.db: notes' file
    estate.backup("notes", "wiki")
    before = fingerprint(estate.notes)
    results = estate.json("drill", "--all", code=1)
    assert [r["result"] for r in results] == ["pass", "failed"]
    assert "is inventory database 'notes'; refusing to drop it" in results[1]["reason"]
    assert fingerprint(estate.notes) == before

    estate.write(wiki={"scratch": "wiki-scratch"})  # a dedicated name next to the source
    (result,) = estate.json("drill", "wiki")
    assert result["scratch"] == str(estate.root / "wiki-scratch.db")
    assert not (estate.root / "wiki-scratch.db").exists()


def test_scheduler_job_result_shape(estate: Estate) -> None:
    estate.backup("notes")
    job = drill_job(estate.repos(), "notes")
    assert set(job) == {"ok", "bytes", "snapshot", "error", "error_type", "details"}
    assert job["ok"] is True and job["error"] is None and job["bytes"] > 0
    (item,) = job["details"]["drills"]
    assert item["result"] == "pass" and job["snapshot"] == item["snapshot"]


def test_usage_errors_and_no_catalog(estate: Estate) -> None:
    for args in (["drill"], ["drill", "--all", "notes"], ["drill", "nope"],
                 ["drill", "notes", "wiki", "--snapshot", "abcd"]):  # fmt: skip
        proc = estate.run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("dbfleet: error: "), proc.stderr
    assert not estate.catalog.exists()
    rows = estate.json("drills")
    assert [(r["database"], r["result"], r["last_drill"]) for r in rows] == [
        ("notes", "never", None), ("wiki", "never", None),
    ]  # fmt: skip

    estate.backup("notes", "wiki")
    wiki = estate.repos().for_database("wiki").find_snapshot("wiki:latest")
    proc = estate.run("drill", "notes", "--snapshot", wiki.id)
    assert proc.returncode == 2 and "is of 'wiki', not 'notes'" in proc.stderr


def test_a_scheduled_drill_runs_under_serve_and_is_reported(estate: Estate) -> None:
    assert "drill" in JOB_KINDS
    estate.write(
        {"schedule": {"drill": "0 6 * * 6", "backup": "off", "verify": "off"}},
        wiki={"schedule": {"drill": "off"}},
    )
    estate.backup("notes")
    env = {**os.environ, "DBFLEET_TEST_DRILL_PW": PASSPHRASE}
    argv = [sys.executable, "-m", "dbfleet", "--config", str(estate.config)]
    saturday = "2024-01-06T06:00:10+00:00"
    proc = subprocess.run(
        [*argv, "serve", "--once", "--now", saturday],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "drill:notes ok" in proc.stderr and "drill:wiki" not in proc.stderr
    (row,) = estate.json("drills", "notes")
    assert (row["result"], row["trigger"], row["status"]) == ("pass", "schedule", "ok")
    assert row["within_objective"] is True and row["rto_seconds"] > 0
