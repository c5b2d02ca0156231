"""The job catalog: runs through their states, queries, crash recovery,
alert state, the schema version, and one serve per catalog."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbfleet.catalog import SCHEMA_VERSION, Catalog, default_path, exclusive, record_manual_run
from dbfleet.errors import OperationError, UsageError

T0 = datetime(2024, 1, 1, 2, 0, tzinfo=UTC)


def add(cat: Catalog, job: str = "backup:notes", **extra: object) -> int:
    kind, target = job.split(":")
    values: dict[str, object] = {
        "job": job,
        "kind": kind,
        "target": target,
        "database": None if kind == "prune" else target,
        "trigger": "schedule",
        "scheduled_at": T0,
    }
    values.update(extra)
    return cat.add_run(**values)  # type: ignore[arg-type]


def test_a_run_from_queued_to_finished(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.db") as cat:
        run_id = add(cat)
        assert cat.get(run_id).status == "queued" and cat.get(run_id).started_at is None
        cat.mark_started(run_id, T0 + timedelta(seconds=3))
        assert cat.get(run_id).status == "running"
        cat.finish_run(
            run_id,
            status="ok",
            finished_at=T0 + timedelta(seconds=10),
            duration_seconds=7.0004,
            bytes=1234,
            snapshot="ab" * 32,
            details={"results": [{"database": "notes"}]},
        )
        run = cat.get(run_id)
    assert run.as_dict() == {
        "id": run_id,
        "job": "backup:notes",
        "kind": "backup",
        "target": "notes",
        "database": "notes",
        "trigger": "schedule",
        "scheduled_at": "2024-01-01T02:00:00+00:00",
        "started_at": "2024-01-01T02:00:03+00:00",
        "finished_at": "2024-01-01T02:00:10+00:00",
        "duration_seconds": 7.0,
        "status": "ok",
        "attempt": 1,
        "will_retry": False,
        "bytes": 1234,
        "snapshot": "ab" * 32,
        "error": None,
        "details": {"results": [{"database": "notes"}]},
        "actor": None,
        "progress": None,
    }
    with Catalog(tmp_path / "c.db") as cat, pytest.raises(ValueError):
        cat.finish_run(run_id, status="great", finished_at=T0, duration_seconds=0)


def test_queries_newest_first_with_filters(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.db") as cat:
        for job in ("backup:notes", "verify:notes", "backup:wiki", "prune:local", "backup:pg/app"):
            run_id = add(cat, job)
            cat.finish_run(
                run_id,
                status="failed" if job == "backup:wiki" else "ok",
                finished_at=T0,
                duration_seconds=1,
            )
        assert [r.job for r in cat.runs(limit=2)] == ["backup:pg/app", "prune:local"]
        assert [r.job for r in cat.runs(database="notes")] == ["verify:notes", "backup:notes"]
        assert [r.job for r in cat.runs(database="pg")] == ["backup:pg/app"]
        assert [r.job for r in cat.runs(database="local")] == ["prune:local"]
        assert [r.job for r in cat.runs(kind="backup", status="failed")] == ["backup:wiki"]
        assert len(cat.runs(limit=None)) == 5
        assert set(cat.last_runs()) == {
            "backup:notes",
            "verify:notes",
            "backup:wiki",
            "prune:local",
            "backup:pg/app",
        }


def test_history_for_the_scheduler(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.db") as cat:
        first = add(cat, scheduled_at=T0)
        cat.finish_run(first, status="failed", finished_at=T0, duration_seconds=1, will_retry=True)
        retry = add(cat, scheduled_at=T0, trigger="retry", attempt=2)
        assert cat.last_runs()["backup:notes"].id == retry
        cat.record_run(
            job="backup:notes",
            kind="backup",
            target="notes",
            database="notes",
            trigger="schedule",
            scheduled_at=T0 + timedelta(days=1),
            started_at=T0 + timedelta(days=1),
            status="skipped",
            error="not started: a previous run is still queued",
        )
        assert cat.last_scheduled() == {"backup:notes": T0 + timedelta(days=1)}
        assert cat.get(first).will_retry


def test_unfinished_runs_of_a_dead_serve_become_aborted(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.db") as cat:
        queued = add(cat, "backup:a")
        running = add(cat, "backup:b")
        cat.mark_started(running, T0)
        done = add(cat, "backup:c")
        cat.finish_run(done, status="ok", finished_at=T0, duration_seconds=1)
        assert cat.mark_interrupted(T0 + timedelta(hours=1), "serve died") == 2
        assert [cat.get(i).status for i in (queued, running, done)] == ["aborted", "aborted", "ok"]
        assert cat.get(running).error == "serve died"


def test_alerts_and_meta_persist(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Catalog(path) as cat:
        assert cat.alert("job:backup:notes") is None and cat.last_tick is None
        cat.set_alert("job:backup:notes", "failing", T0, T0, {"run": 3})
        cat.set_alert("freshness:notes", "fresh", T0, None)
        cat.set_last_tick(T0 + timedelta(seconds=30))
    with Catalog(path) as cat:
        alert = cat.alert("job:backup:notes")
        assert alert is not None
        assert (alert.state, alert.since, alert.notified_at, alert.details) == (
            "failing",
            T0,
            T0,
            {"run": 3},
        )
        cat.set_alert("job:backup:notes", "ok", T0 + timedelta(hours=1), T0 + timedelta(hours=1))
        assert [a.key for a in cat.alerts()] == ["freshness:notes", "job:backup:notes"]
        assert cat.alert("job:backup:notes").state == "ok"  # type: ignore[union-attr]
        assert cat.last_tick == T0 + timedelta(seconds=30)


def test_schema_version_and_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with pytest.raises(UsageError, match="no job catalog"):
        Catalog(path, create=False)
    assert not path.exists()
    with Catalog(path) as cat:
        assert cat.schema_version == SCHEMA_VERSION == 2
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(UsageError, match="upgrade dbfleet"):
        Catalog(path)
    old = tmp_path / "old.db"
    sqlite3.connect(old).close()  # an empty database: schema version 0
    with pytest.raises(UsageError, match="needs an upgrade"):
        Catalog(old, create=False)
    with Catalog(old) as cat:
        assert cat.schema_version == SCHEMA_VERSION


def test_version_1_catalog_upgrades_keeping_its_runs(tmp_path: Path) -> None:
    """A catalog written by the previous release (schema 1) gains ``actor``,
    ``progress`` and ``health_samples``; its runs are kept, with no actor."""
    from dbfleet.catalog import MIGRATIONS

    path = tmp_path / "v1.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(MIGRATIONS[0])
        conn.execute(
            "INSERT INTO runs (job, kind, target, database, trigger, status) "
            "VALUES ('backup:notes', 'backup', 'notes', 'notes', 'schedule', 'ok')"
        )
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    with Catalog(path) as cat:
        assert cat.schema_version == 2
        (run,) = cat.runs()
        assert (run.job, run.status, run.actor, run.progress) == ("backup:notes", "ok", None, None)
        new = add(cat)
        cat.set_progress(new, {"stage": "dump", "bytes": 1024})
        assert cat.get(new).progress == {"stage": "dump", "bytes": 1024}
        count = cat._db.execute("SELECT count(*) FROM health_samples").fetchone()[0]
        assert count == 0


def test_readers_see_runs_while_serve_writes(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Catalog(path) as writer, Catalog(path, create=False) as reader:
        run_id = add(writer)
        assert reader.get(run_id).status == "queued"
        writer.mark_started(run_id, T0)
        assert reader.runs()[0].status == "running"


def test_one_serve_per_catalog(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with exclusive(path):
            entered.set()
            release.wait(10)

    # flock locks belong to the open file, so a second open in this process conflicts too
    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert entered.wait(10)
        with pytest.raises(OperationError, match="in use by pid"), exclusive(path):
            pass
    finally:
        release.set()
        thread.join()
    with exclusive(path):
        pass


def test_default_path_is_next_to_the_inventory() -> None:
    assert default_path(Path("/etc/dbfleet/prod.yaml")) == Path("/etc/dbfleet/prod.catalog.db")


def test_manual_runs_are_recorded_beside_scheduled_ones(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Catalog(path) as serve_side:
        scheduled = add(serve_side)
        run_id = record_manual_run(
            path,
            kind="backup",
            target="notes",
            database="notes",
            started_at=T0,
            duration_seconds=2.5,
            ok=True,
            bytes=10,
            snapshot="cd" * 32,
        )
        run = serve_side.get(run_id)
        assert (run.trigger, run.status, run.scheduled_at, run.finished_at) == (
            "manual",
            "ok",
            None,
            "2024-01-01T02:00:02+00:00",
        )
        assert serve_side.last_scheduled() == {"backup:notes": T0}
        assert serve_side.get(scheduled).status == "queued"
