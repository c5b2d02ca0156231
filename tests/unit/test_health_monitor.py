"""HealthMonitor end to end on real SQLite databases, a real catalog and a
real local webhook receiver: samples stored, alerts notified once when
crossed and once when cleared, checks, config errors, retention."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_notify import Receiver, receiver

from dbfleet.catalog import Catalog
from dbfleet.config import parse_inventory
from dbfleet.engines.base import HealthSample
from dbfleet.errors import ConfigError
from dbfleet.notify import Notifier, build_channels
from dbfleet.observe.checks import http_status
from dbfleet.observe.health import HealthMonitor, cache_hit_ratio, database_checks

__all__ = ["receiver"]

CAPACITY = 256 * 1024


def _db(path: Path, rows: int = 0) -> Path:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE IF NOT EXISTS blobs (b BLOB)")
        conn.executemany("INSERT INTO blobs VALUES (?)", [(b"x" * 4000,)] * rows)
    return path


def _shrink(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM blobs")
        conn.commit()
        conn.execute("VACUUM")


def _inventory(tmp_path: Path, url: str | None, **health: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "repositories": {"main": {"url": f"file://{tmp_path}/repo"}},
        "databases": {
            "first": {"engine": "sqlite", "path": str(_db(tmp_path / "first.db")),
                      "capacity_bytes": CAPACITY},
            "middle": {"engine": "sqlite", "path": str(_db(tmp_path / "middle.db"))},
            "last": {"engine": "sqlite", "path": str(tmp_path / "missing.db")},
        },
        "health": {"interval": "1s", "timeout": "1s", "alerts": {"free_ratio": 0.5}, **health},
    }  # fmt: skip
    if url:
        document["notifications"] = [{"type": "webhook", "url": url + "/hook"}]
    return document


def _monitor(tmp_path: Path, url: str | None = None) -> tuple[HealthMonitor, Notifier]:
    inventory = parse_inventory(_inventory(tmp_path, url), tmp_path / "inv.yaml")
    scheduling = inventory.scheduling()
    notifier = Notifier(build_channels(scheduling.notifications))
    monitor = HealthMonitor(inventory, scheduling, tmp_path / "catalog.db", notifier)
    return monitor, notifier


def test_free_ratio_alerts_once_when_crossed_and_once_when_cleared(
    tmp_path: Path, receiver: Receiver
) -> None:
    monitor, notifier = _monitor(tmp_path, receiver.url)
    monitor.run_round()  # 8 KiB of 256 KiB: free
    _db(tmp_path / "first.db", rows=50)  # ~200 KiB: free ratio ~0.2 < 0.5
    monitor.run_round()
    monitor.run_round()  # still crossed: no second notification
    _shrink(tmp_path / "first.db")
    monitor.run_round()
    monitor.run_round()  # still clear: nothing more
    notifier.close(timeout=10)
    events = [(r.body["event"], r.body["database"]) for r in receiver.requests]
    assert events == [("health_alert", "first"), ("health_cleared", "first")]
    crossed = receiver.requests[0].body["health"]
    assert crossed["alert"] == "free_ratio" and crossed["threshold"] == 0.5
    assert 0 < crossed["observed"] < 0.5
    with Catalog(tmp_path / "catalog.db") as catalog:
        history = catalog.health_history("first")
        assert len(history) == 5 and all(s.up for s in history)
        sizes = [s.size_bytes or 0 for s in history]
        assert sizes[0] < sizes[1] and sizes[3] < sizes[2]
        assert catalog.alert("health:free_ratio:first").state == "ok"  # type: ignore[union-attr]
        last = catalog.health_history("last")
        assert [s.up for s in last] == [False] * 5
        assert last[0].error and "does not exist" in last[0].error


def test_a_restart_does_not_repeat_an_alert(tmp_path: Path, receiver: Receiver) -> None:
    _db(tmp_path / "first.db")
    monitor, notifier = _monitor(tmp_path, receiver.url)
    _db(tmp_path / "first.db", rows=50)
    monitor.run_round()
    notifier.close(timeout=10)
    again, notifier = _monitor(tmp_path, receiver.url)  # a new serve, same catalog
    again.run_round()
    notifier.close(timeout=10)
    assert [r.body["event"] for r in receiver.requests] == ["health_alert"]


def test_the_thread_samples_every_interval_and_latest_has_every_database(
    tmp_path: Path,
) -> None:
    monitor, notifier = _monitor(tmp_path)
    monitor.start()
    deadline = time.monotonic() + 10
    while monitor.rounds < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    monitor.stop()
    notifier.close()
    assert monitor.rounds >= 2
    latest = monitor.latest()
    assert set(latest) == {"first", "middle", "last"}
    assert latest["first"].up and latest["middle"].up and not latest["last"].up
    assert http_status(monitor.checks("first")) == 200
    assert http_status(monitor.checks("last")) == 503


def _sample(**values: Any) -> HealthSample:
    base: dict[str, Any] = {"database": "db", "engine": "postgresql",
                            "taken_at": datetime(2026, 1, 1, tzinfo=UTC), "up": True,
                            "probe_seconds": 0.01}  # fmt: skip
    return HealthSample(**(base | values))


def test_cache_hit_ratio_over_the_interval() -> None:
    before = _sample(cache_hits_total=1000, cache_misses_total=100)
    assert cache_hit_ratio(before, _sample(cache_hits_total=1900, cache_misses_total=200)) == 0.9
    assert cache_hit_ratio(None, before) is None
    # a restart resets the counters: no reading, not a 0% ratio
    assert cache_hit_ratio(before, _sample(cache_hits_total=5, cache_misses_total=1)) is None
    # an idle interval: too few lookups to say anything
    assert cache_hit_ratio(before, _sample(cache_hits_total=1010, cache_misses_total=101)) is None
    assert cache_hit_ratio(before, _sample(cache_hits_total=None)) is None


def test_database_checks(tmp_path: Path) -> None:
    scheduling = parse_inventory(_inventory(tmp_path, None)).scheduling()
    assert [c.status for c in database_checks("first", None, scheduling)] == ["warn"]
    down = database_checks("first", _sample(up=False, error="refused"), scheduling)
    assert [(c.name, c.status, c.observed) for c in down] == [("reachable", "fail", "refused")]
    busy = _sample(connections=90, connections_max=100, size_bytes=CAPACITY * 0.9)
    checks = {c.name: c for c in database_checks("first", busy, scheduling)}
    assert checks["connections_ratio"].status == "warn"  # the default 0.8
    assert checks["connections_ratio"].threshold == 0.8
    assert checks["free_ratio"].status == "warn" and checks["free_ratio"].threshold == 0.5
    assert "replication_lag" not in checks  # not a replica
    full = _sample(connections=100, connections_max=100, size_bytes=CAPACITY)
    assert {c.name: c.status for c in database_checks("first", full, scheduling)} == {
        "reachable": "pass", "connections_ratio": "fail", "free_ratio": "fail"}  # fmt: skip
    replica = _sample(is_replica=True, replication_lag_seconds=None)
    (lag,) = [c for c in database_checks("middle", replica, scheduling) if c.name != "reachable"]
    assert (lag.name, lag.status) == ("replication_lag", "fail")
    fine = _sample(is_replica=True, replication_lag_seconds=2.0, connections=1,
                   connections_max=100)  # fmt: skip
    assert http_status(database_checks("middle", fine, scheduling), strict=True) == 200


@pytest.mark.parametrize(
    ("health", "message"),
    [
        ({"interval": "10s", "timeout": "1m"}, "must not be longer than interval"),
        ({"alerts": {"connections_ratio": 80}}, "health.alerts.connections_ratio"),
        ({"alerts": {"replication_lag": "soon"}}, "invalid duration"),
        ({"alerts": {"cache_hit"}}, "health.alerts"),
        ({"parallel": 0}, "health.parallel"),
    ],
)
def test_config_errors_say_what_to_fix(tmp_path: Path, health: Any, message: str) -> None:
    document = _inventory(tmp_path, None)
    document["health"] = health
    with pytest.raises(ConfigError, match=message):
        parse_inventory(document, tmp_path / "inv.yaml")


def test_capacity_bytes_takes_units(tmp_path: Path) -> None:
    document = _inventory(tmp_path, None)
    document["databases"]["first"]["capacity_bytes"] = "2GiB"
    scheduling = parse_inventory(document).scheduling()
    assert scheduling.database("first").capacity_bytes == 2 * 1024**3
    document["databases"]["first"]["capacity_bytes"] = "lots"
    with pytest.raises(ConfigError, match="databases.first.capacity_bytes"):
        parse_inventory(document)


def test_retention_keeps_a_week_then_one_per_day(tmp_path: Path) -> None:
    now = datetime(2026, 6, 30, 12, tzinfo=UTC)
    with Catalog(tmp_path / "catalog.db") as catalog:
        # every 6 hours for 30 days, two databases
        for hours in range(0, 30 * 24, 6):
            for name in ("a", "b"):
                when = now - timedelta(hours=hours)
                catalog.add_health_sample(_sample(database=name, size_bytes=hours, taken_at=when))
        before = len(catalog.health_history("a"))
        removed = catalog.prune_health_samples(now)
        kept = catalog.health_history("a")
        week = [s for s in kept if s.taken_at >= now - timedelta(days=7)]
        old = [s for s in kept if s.taken_at < now - timedelta(days=7)]
        assert len(week) == 7 * 4 + 1  # every sample of the last 7 days, both ends
        days = {s.taken_at.date() for s in old}
        assert len(old) == len(days)  # one per day before
        # the last sample of each day is the one kept (18:00, or the cut-off day's last)
        assert all(s.taken_at.hour in (18, 6) for s in old)
        assert removed == 2 * (before - len(kept))
        assert catalog.prune_health_samples(now) == 0  # idempotent
        assert [t for t, _ in catalog.size_history("a")] == [s.taken_at for s in kept]


def test_health_sample_json_from_the_cli(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    import yaml

    inventory = tmp_path / "inv.yaml"
    inventory.write_text(yaml.safe_dump(_inventory(tmp_path, None)))
    proc = subprocess.run(
        [sys.executable, "-m", "dbfleet", "--config", str(inventory), "health", "--sample",
         "--json"], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # "last" has no file
    samples = {s["database"]: s for s in json.loads(proc.stdout)}
    assert sorted(samples) == ["first", "last", "middle"]  # every entry, once
    assert samples["first"]["up"] and samples["first"]["size_bytes"] > 0
    assert samples["first"]["extra"]["page_count"] >= 1
    assert not samples["last"]["up"] and "does not exist" in samples["last"]["error"]
    assert datetime.fromisoformat(samples["middle"]["taken_at"]).tzinfo is not None
