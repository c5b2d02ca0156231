"""``dbfleet serve``, ``jobs`` and ``freshness`` driven as a user drives them:
subprocesses against a temporary inventory, real SQLite databases and
file:// repositories, a real HTTP receiver for notifications.

``serve --once --now TIME`` runs one scheduling pass with the scheduler's
clock set to TIME, so schedules are tested without waiting for them; the
SIGTERM test runs the real loop and stops it in the middle of a real backup.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_cli import PASSPHRASE
from test_cli import dbfleet as plain_dbfleet
from test_notify import Receiver, receiver  # noqa: F401 - the fixture

from dbfleet.operations.demo import create_sample_database
from dbfleet.schedule.config import DATABASE_KEYS, INVENTORY_KEYS

SCHEDULING_KEYS = set(INVENTORY_KEYS)


ENTRY = "dbfleet"  # python -m dbfleet


def argv(*args: str | Path, config: Path | None = None) -> list[str]:
    out = [sys.executable, "-m", ENTRY]
    if config is not None:
        out += ["--config", str(config)]
    return out + [str(a) for a in args]


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DBFLEET_")}
    full["COLUMNS"] = "200"
    full["DBFLEET_PASSPHRASE"] = PASSPHRASE
    full.update(extra or {})
    return full


def run(
    *args: str | Path, config: Path | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv(*args, config=config),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env(extra_env),
        timeout=180,
        check=False,
    )
    for stream in (proc.stdout, proc.stderr):
        assert PASSPHRASE not in stream, f"passphrase leaked by {args}"
        assert "Traceback" not in stream, proc.stderr
    return proc


class Estate:
    """A directory with SQLite databases, a repository and two inventories:
    ``dbfleet.yaml`` (with the scheduling keys) and ``plain.yaml`` (without
    them, for the other commands until the inventory model knows the keys)."""

    def __init__(self, root: Path, databases: dict[str, Path]) -> None:
        self.root = root
        self.config = root / "dbfleet.yaml"
        self.plain = root / "plain.yaml"
        self.databases = databases
        self.catalog = root / "dbfleet.catalog.db"
        self.write()
        init = plain_dbfleet("repo", "init", config=self.plain)
        assert init.returncode == 0, init.stderr

    def write(
        self,
        top: dict[str, Any] | None = None,
        per_database: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        databases: dict[str, dict[str, Any]] = {
            name: {
                "engine": "sqlite",
                "path": str(path),
                "options": {"staging_dir": str(self.staging)},
            }
            for name, path in self.databases.items()
        }
        for name, extra in (per_database or {}).items():
            databases[name].update(extra)
        document: dict[str, Any] = {
            "repositories": {"local": {"url": f"file://{self.root / 'repo'}"}},
            **(top or {}),
            "databases": databases,
        }
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))
        plain = {k: v for k, v in document.items() if k not in SCHEDULING_KEYS}
        plain["databases"] = {
            name: {k: v for k, v in entry.items() if k not in DATABASE_KEYS}
            for name, entry in databases.items()
        }
        self.plain.write_text(yaml.safe_dump(plain, sort_keys=False))

    @property
    def staging(self) -> Path:
        path = self.root / "staging"
        path.mkdir(exist_ok=True)
        return path

    def serve_once(self, now: datetime, *extra: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run("serve", "--once", "--now", now.isoformat(), *extra, config=self.config, **kw)

    def jobs(self, *extra: str) -> list[dict[str, Any]]:
        proc = run("jobs", "--json", "--limit", "100", *extra, config=self.config)
        assert proc.returncode == 0, proc.stderr
        runs: list[dict[str, Any]] = json.loads(proc.stdout)
        return runs[::-1]  # oldest first

    def snapshots(self) -> list[dict[str, Any]]:
        proc = plain_dbfleet("snapshots", "--json", config=self.plain)
        assert proc.returncode == 0, proc.stderr
        found: list[dict[str, Any]] = json.loads(proc.stdout)
        return found


@pytest.fixture
def estate(tmp_path: Path) -> Estate:
    notes, wiki = tmp_path / "notes.db", tmp_path / "wiki.db"
    create_sample_database(notes, notes=2000)
    create_sample_database(wiki, notes=500, seed=3)
    return Estate(tmp_path, {"notes": notes, "wiki": wiki})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_once_runs_what_is_due_and_jobs_shows_it(estate: Estate) -> None:
    estate.write(
        {"schedule": {"backup": "0 2 * * *", "verify": "30 2 * * *"}, "serve": {"concurrency": 1}},
        {"notes": {"rpo": "26h"}},
    )
    first = estate.serve_once(at("2024-01-01T02:00:10"))
    assert first.returncode == 0, first.stderr
    assert "backup:notes started" in first.stderr and "backup:wiki ok" in first.stderr
    runs = estate.jobs()
    assert [(r["job"], r["status"], r["trigger"], r["attempt"]) for r in runs] == [
        ("backup:notes", "ok", "schedule", 1),
        ("backup:wiki", "ok", "schedule", 1),
    ]
    notes = runs[0]
    assert notes["scheduled_at"] == "2024-01-01T02:00:00+00:00"
    assert notes["bytes"] > 0 and notes["duration_seconds"] > 0 and notes["error"] is None
    assert notes["details"]["results"][0]["database"] == "notes"
    snapshots = {s["database"]: s for s in estate.snapshots()}
    assert notes["snapshot"] == snapshots["notes"]["id"]
    assert notes["bytes"] == snapshots["notes"]["added_bytes"]
    # concurrency 1: the second backup started after the first finished
    assert runs[1]["started_at"] >= runs[0]["finished_at"]

    again = estate.serve_once(at("2024-01-01T02:00:20"))
    assert again.returncode == 0, again.stderr
    assert len(estate.jobs()) == 2  # the same fire time never runs twice

    verify = estate.serve_once(at("2024-01-01T02:30:05"))
    assert verify.returncode == 0, verify.stderr
    runs = estate.jobs("--kind", "verify", "--database", "notes")
    assert [(r["job"], r["status"]) for r in runs] == [("verify:notes", "ok")]
    assert runs[0]["snapshot"] == snapshots["notes"]["id"] and runs[0]["bytes"] > 0

    table = run("jobs", config=estate.config)
    assert table.returncode == 0, table.stderr
    assert "verify:notes" in table.stdout and "backup:wiki" in table.stdout
    assert " ok " in table.stdout


def test_missed_runs_run_once_or_are_skipped(estate: Estate) -> None:
    estate.write({"schedule": {"backup": "0 2 * * *"}}, {"wiki": {"schedule": {"backup": "off"}}})
    assert estate.serve_once(at("2024-01-01T02:00:05")).returncode == 0
    # "down" for three days: one catch-up run, not three
    proc = estate.serve_once(at("2024-01-04T10:00:00"))
    assert proc.returncode == 0, proc.stderr
    runs = estate.jobs()
    assert [(r["job"], r["trigger"], r["scheduled_at"], r["status"]) for r in runs] == [
        ("backup:notes", "schedule", "2024-01-01T02:00:00+00:00", "ok"),
        ("backup:notes", "catch-up", "2024-01-04T02:00:00+00:00", "ok"),
    ]
    estate.write(
        {"schedule": {"backup": "0 2 * * *"}, "serve": {"missed_runs": "skip"}},
        {"wiki": {"schedule": {"backup": "off"}}},
    )
    proc = estate.serve_once(at("2024-01-07T10:00:00"))
    assert proc.returncode == 0, proc.stderr
    last = estate.jobs()[-1]
    assert (last["status"], last["scheduled_at"]) == ("skipped", "2024-01-07T02:00:00+00:00")
    assert last["error"] == "missed 3 scheduled run(s); missed_runs: skip"
    assert len(estate.snapshots()) == 2


def test_failure_retry_recovery_and_freshness_notifications(
    estate: Estate,
    receiver: Receiver,  # noqa: F811 - the fixture
) -> None:
    # a daily schedule at the current minute, so snapshot ages are real ages
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    daily = f"{now.minute} {now.hour} * * *"
    missing = estate.databases["notes"]
    missing.rename(estate.root / "notes.moved")
    token_file = estate.root / "token"
    token_file.write_text("hook-token-7d1c\n")
    notifications = [
        {
            "type": "webhook",
            "name": "hook",
            "url": receiver.url + "/hook",
            "bearer_token_file": str(token_file),
        },
        {
            "type": "slack",
            "name": "chat",
            "url_env": "TEST_CHAT_URL",
            "events": ["job_failed", "job_recovered"],
        },
    ]
    top = {
        "schedule": {"backup": daily},
        "serve": {"retries": 1, "backoff": "1s"},
        "notifications": notifications,
    }
    per_db: dict[str, dict[str, Any]] = {
        "notes": {"rpo": "26h"},
        "wiki": {"schedule": {"backup": "off"}},
    }
    estate.write(top, per_db)
    chat = {"TEST_CHAT_URL": receiver.url + "/chat/secret-c0ffee"}

    failed = estate.serve_once(now + timedelta(seconds=5), extra_env=chat)
    assert failed.returncode == 1, failed.stderr
    assert "secret-c0ffee" not in failed.stderr and "hook-token-7d1c" not in failed.stderr
    runs = estate.jobs()
    assert [(r["trigger"], r["attempt"], r["status"], r["will_retry"]) for r in runs] == [
        ("schedule", 1, "failed", True),
        ("retry", 2, "failed", False),
    ]
    assert "does not exist" in runs[1]["error"]
    hook = [r.body for r in receiver.requests if r.path == "/hook"]
    assert [(b["event"], b["database"]) for b in hook] == [
        ("job_failed", "notes"),
        ("database_stale", "notes"),
    ]
    assert hook[0]["job"]["id"] == runs[1]["id"] and hook[0]["job"]["attempt"] == 2
    assert hook[1]["summary"] == "notes: no snapshot at all (RPO 1d2h)"
    chat_texts = [r.body["text"] for r in receiver.requests if r.path.startswith("/chat")]
    assert (
        len(chat_texts) == 1
        and "FAILED: backup of notes failed after 2 attempt(s)" in (chat_texts[0])
    )
    assert all(
        r.headers["Authorization"] == "Bearer hook-token-7d1c"
        for r in receiver.requests
        if r.path == "/hook"
    )

    (estate.root / "notes.moved").rename(missing)
    receiver.requests.clear()
    recovered = estate.serve_once(now + timedelta(days=1, seconds=5), extra_env=chat)
    assert recovered.returncode == 0, recovered.stderr
    hook = [r.body for r in receiver.requests if r.path == "/hook"]
    assert [b["event"] for b in hook] == ["job_recovered", "database_fresh"]
    assert hook[0]["summary"].startswith("backup of notes succeeded again (failing since ")
    assert hook[1]["freshness"]["state"] == "fresh"
    assert hook[1]["freshness"]["latest_snapshot"] == estate.snapshots()[0]["id"]
    assert [r.path for r in receiver.requests].count("/chat/secret-c0ffee") == 1

    fresh = run("freshness", "--json", config=estate.config)
    assert fresh.returncode == 0, fresh.stderr
    states = {f["database"]: f for f in json.loads(fresh.stdout)}
    assert states["notes"]["state"] == "fresh" and states["notes"]["rpo"] == "1d2h"
    assert states["wiki"]["state"] == "no-rpo" and states["wiki"]["rpo"] == "-"

    # three days on with backups switched off: stale again, once
    per_db["notes"]["schedule"] = {"backup": "off"}
    estate.write(top, per_db)
    receiver.requests.clear()
    for hours in (72, 73):
        proc = estate.serve_once(now + timedelta(hours=hours), extra_env=chat)
        assert proc.returncode == 0, proc.stderr
    hook = [r.body for r in receiver.requests if r.path == "/hook"]
    assert [b["event"] for b in hook] == ["database_stale"]
    assert (
        hook[0]["summary"].startswith("notes: latest snapshot is 2d")
        and "1d2h" in (hook[0]["summary"])
    )


def test_freshness_command_exit_code(estate: Estate) -> None:
    estate.write({}, {"notes": {"rpo": "1h"}})
    proc = run("freshness", config=estate.config)
    assert proc.returncode == 1, proc.stderr
    assert "STALE" in proc.stdout and "no-rpo" in proc.stdout
    assert plain_dbfleet("backup", "notes", config=estate.plain).returncode == 0
    proc = run("freshness", "notes", config=estate.config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fresh" in proc.stdout and "wiki" not in proc.stdout


# -- a real, slow backup: timeout and SIGTERM ----------------------------------------


@pytest.fixture(scope="module")
def big_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 160 MB of incompressible rows: a backup takes a few seconds."""
    path = tmp_path_factory.mktemp("big") / "big.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 160) "
            "INSERT INTO blobs (data) SELECT randomblob(1000000) FROM n"
        )
    return path


@pytest.fixture
def big_estate(tmp_path: Path, big_database: Path) -> Estate:
    return Estate(tmp_path, {"big": big_database})


def test_a_job_over_its_timeout_is_stopped(big_estate: Estate) -> None:
    big_estate.write(
        {"schedule": {"backup": "0 2 * * *"}, "serve": {"job_timeout": "1s", "retries": 0}}
    )
    proc = big_estate.serve_once(at("2024-01-01T02:00:05"))
    assert proc.returncode == 1, proc.stderr
    (only,) = big_estate.jobs()
    assert only["status"] == "timeout" and only["error"].startswith("timed out; stopped after")
    assert only["duration_seconds"] < 30
    assert big_estate.snapshots() == []
    assert list((big_estate.root / "repo" / "locks").iterdir()) == []
    assert list(big_estate.staging.iterdir()) == []


def _wait_for_status(catalog: Path, status: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if catalog.exists():
            with closing(sqlite3.connect(catalog, timeout=5)) as conn:
                conn.row_factory = sqlite3.Row
                try:
                    row = conn.execute("SELECT * FROM runs WHERE status = ?", (status,)).fetchone()
                except sqlite3.OperationalError:
                    row = None  # the schema is being created
            if row is not None:
                return dict(row)
        time.sleep(0.05)
    raise AssertionError(f"no run reached {status!r} within {timeout}s")


@pytest.fixture
def serve_process(big_estate: Estate) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_aborts_a_running_backup_without_a_partial_snapshot(
    big_estate: Estate, serve_process: list[subprocess.Popen[str]]
) -> None:
    big_estate.write({"schedule": {"backup": "0 2 * * *"}, "serve": {"shutdown_grace": "60s"}})
    start = at("2024-01-01T02:00:02")
    proc = subprocess.Popen(
        argv("serve", "--now", start.isoformat(), "--tick", "0.1", config=big_estate.config),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    serve_process.append(proc)
    running = _wait_for_status(big_estate.catalog, "running")
    assert running["job"] == "backup:big"
    deadline = time.monotonic() + 60
    while not any(big_estate.staging.iterdir()):  # the backup is copying the database
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and PASSPHRASE not in err
    assert "shutting down (abort): 1 running" in err

    (aborted,) = big_estate.jobs()
    assert aborted["status"] == "aborted"
    assert aborted["error"] == "stopped by SIGTERM before it finished"
    assert big_estate.snapshots() == []
    assert list((big_estate.root / "repo" / "locks").iterdir()) == []
    assert list(big_estate.staging.iterdir()) == []
    check = plain_dbfleet("repo", "check", config=big_estate.plain)
    assert check.returncode == 0, check.stderr

    # the next start runs the aborted backup once more (missed_runs: run-once)
    again = big_estate.serve_once(start + timedelta(seconds=30))
    assert again.returncode == 0, again.stderr
    runs = big_estate.jobs()
    assert [(r["trigger"], r["status"], r["scheduled_at"]) for r in runs] == [
        ("schedule", "aborted", "2024-01-01T02:00:00+00:00"),
        ("catch-up", "ok", "2024-01-01T02:00:00+00:00"),
    ]
    assert [s["id"] for s in big_estate.snapshots()] == [runs[1]["snapshot"]]


# -- the command line ----------------------------------------------------------------


def test_plan_help_and_errors(estate: Estate) -> None:
    estate.write(
        {"schedule": {"backup": "0 2 * * *", "prune": "0 4 * * 0", "timezone": "Europe/Berlin"}},
        {"wiki": {"schedule": {"backup": "*/30 * * * *", "timezone": "UTC"}}},
    )
    proc = run("serve", "--plan", "--json", "--now", "2024-01-01T00:00:00Z", config=estate.config)
    assert proc.returncode == 0, proc.stderr
    plan = {p["job"]: p for p in json.loads(proc.stdout)}
    assert sorted(plan) == ["backup:notes", "backup:wiki", "prune:local"]
    assert plan["backup:notes"]["next"][0] == "2024-01-01T01:00:00+00:00"  # 02:00 in Berlin
    assert plan["backup:wiki"]["next"][:2] == [
        "2024-01-01T00:30:00+00:00",
        "2024-01-01T01:00:00+00:00",
    ]
    assert plan["prune:local"]["explain"].startswith("At 04:00 on Sunday")

    help_text = run("serve", "--help").stdout
    assert "Missed runs" in help_text and "SIGTERM" in help_text

    estate.write({"schedule": {"backup": "0 25 * * *"}, "serve": {"retries": -1}})
    bad = run("serve", "--once", config=estate.config)
    assert bad.returncode == 2
    assert "schedule.backup: invalid cron expression '0 25 * * *'" in bad.stderr
    assert "serve.retries" in bad.stderr

    estate.write({"notifications": [{"type": "slack", "url_env": "UNSET_CHAT_URL"}]})
    missing = run("serve", "--once", config=estate.config)
    assert missing.returncode == 2
    assert "no URL in $UNSET_CHAT_URL" in missing.stderr

    estate.write({"schedule": {"backup": "0 2 * * *"}})
    locked = run("serve", "--once", config=estate.config, extra_env={"DBFLEET_PASSPHRASE": ""})
    assert locked.returncode == 2
    assert "no passphrase for repository local in the environment or a file" in locked.stderr

    none = run("jobs", "--json", "--catalog", estate.root / "nowhere.db")
    assert none.returncode == 0 and json.loads(none.stdout) == []


def test_sigterm_with_shutdown_finish_lets_the_backup_finish(
    big_estate: Estate, serve_process: list[subprocess.Popen[str]]
) -> None:
    big_estate.write(
        {
            "schedule": {"backup": "0 2 * * *"},
            "serve": {"shutdown": "finish", "shutdown_grace": "60s"},
        }
    )
    proc = subprocess.Popen(
        argv(
            "serve", "--now", "2024-01-01T02:00:02+00:00", "--tick", "0.1", config=big_estate.config
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    serve_process.append(proc)
    _wait_for_status(big_estate.catalog, "running")
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "shutting down (finish): 1 running" in err
    (finished,) = big_estate.jobs()
    assert finished["status"] == "ok"
    assert [s["id"] for s in big_estate.snapshots()] == [finished["snapshot"]]
