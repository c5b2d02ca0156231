"""The estate read model on a real catalog and a real file:// repository
written by real backups of SQLite databases (and manifests re-saved at
chosen times through the repository's own API, for known series)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sqlite3
from contextlib import closing
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from test_drill import Estate as Kit

from dbfleet.catalog import Catalog
from dbfleet.config import load_inventory
from dbfleet.engines.base import HealthSample
from dbfleet.errors import UsageError
from dbfleet.observe.estate import COMPLIANCE_COLUMNS, Estate, size_forecast
from dbfleet.observe.evidence import DRILL_COLUMNS, to_csv, to_json
from dbfleet.operations.drill import drill_targets, record
from dbfleet.operations.repository import init_repository
from dbfleet.schedule.inventory import load


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    k = Kit(tmp_path)
    k.write(notes={"rpo": "1h"}, wiki={"rpo": "26h"})
    return k


def estate(kit: Kit, now: datetime | None = None) -> Estate:
    inventory, scheduling = load(kit.config)
    return Estate(
        inventory, scheduling, kit.catalog, kit.repos(), clock=lambda: now or datetime.now(UTC)
    )


def drill(kit: Kit, name: str) -> None:
    results = drill_targets(kit.repos(), [name])[name]
    with Catalog(kit.catalog) as cat:
        record(cat, name, results, datetime.fromisoformat(results[0].started_at))


def store_sample(kit: Kit, sample: HealthSample) -> None:
    """A sample row as the health monitor stores it (the catalog schema 2 table)."""
    Catalog(kit.catalog).close()
    with closing(sqlite3.connect(kit.catalog)) as db, db:
        db.execute(
            "INSERT INTO health_samples (database, taken_at, up, size_bytes, sample) "
            "VALUES (?, ?, ?, ?, ?)",
            (sample.database, sample.taken_at.isoformat(), int(sample.up), sample.size_bytes,
             json.dumps(asdict(sample), default=str)),
        )  # fmt: skip


def test_never_backed_up_is_stale_and_first(kit: Kit) -> None:
    kit.backup("notes")
    drill(kit, "notes")
    rows = estate(kit).compliance()
    assert [r.database for r in rows] == ["wiki", "notes"]
    wiki, notes = rows
    assert (wiki.status, wiki.rpo_state, wiki.recovery_point) == ("stale", "stale", None)
    assert wiki.problems[0] == "never backed up" and wiki.within_rpo_30d == 0.0
    assert wiki.drill_result == "never"
    assert (notes.status, notes.rpo_state, notes.problems) == ("ok", "fresh", [])
    assert notes.drill_result == "pass" and notes.drill_within_rto is True
    assert notes.drill_rto_seconds is not None and 0 < notes.drill_rto_seconds < 60
    assert notes.rto_seconds == 1800 and notes.rpo_seconds == 3600
    assert notes.drill_age_seconds is not None and 0 <= notes.drill_age_seconds < 120
    assert notes.health == "unknown" and notes.snapshots_30d == 1


def test_share_within_rpo_from_a_known_series(kit: Kit) -> None:
    kit.backup("notes")
    latest = kit.repos().for_database("notes").find_snapshot("notes:latest")
    now = latest.finished + timedelta(hours=3)  # RPO 1h exceeded by 2h
    for days in (20, 10):  # two more snapshots, 20 and 10 days before now
        at = now - timedelta(days=days)
        kit.save_variant("notes", started=at - timedelta(seconds=5), finished=at)
    old = now - timedelta(days=45)  # before the window: counts for nothing
    kit.save_variant("notes", started=old, finished=old)
    (row,) = [r for r in estate(kit, now).compliance() if r.database == "notes"]
    assert row.status == "stale" and row.problems[0] == "RPO exceeded"
    assert row.recovery_point_age_seconds == pytest.approx(3 * 3600, abs=1)
    assert row.snapshots_30d == 3
    covered = 3 * 3600  # one hour after each of the three snapshots
    assert row.within_rpo_30d == pytest.approx(covered / (30 * 86400), abs=1e-6)
    assert row.breach_seconds_30d == pytest.approx(30 * 86400 - covered, abs=0.01)


def test_health_down_and_archive_lag(kit: Kit) -> None:
    kit.backup("notes", "wiki")
    now = datetime.now(UTC)
    store_sample(kit, HealthSample("notes", "sqlite", now, False, 0.01, error="unable to open"))
    archive = {"last_archived_at": (now - timedelta(hours=30)).isoformat(), "pending_segments": 4}
    store_sample(kit, HealthSample("wiki", "sqlite", now, True, 0.01, archive=archive))
    rows = {r.database: r for r in estate(kit, now).compliance()}
    assert rows["notes"].health == "down" and rows["notes"].status == "failing"
    assert "database down" in rows["notes"].problems
    assert rows["notes"].health_error == "unable to open"
    assert rows["wiki"].health == "up"
    assert rows["wiki"].archive_lag_seconds == pytest.approx(30 * 3600, abs=1)
    assert rows["wiki"].archive_pending_segments == 4
    assert "archiving lags behind the RPO" in rows["wiki"].problems


def test_a_failed_drill_is_failing_and_sorted_before_ok(kit: Kit) -> None:
    kit.backup("notes", "wiki")
    drill(kit, "notes")
    latest = kit.repos().for_database("wiki").find_snapshot("wiki:latest")
    assert latest.fingerprint is not None
    tables = dict(latest.fingerprint["tables"])
    tables["notes"] = {**tables["notes"], "rows": tables["notes"]["rows"] + 1}
    kit.save_variant(  # newer than the real one, with a row count the data does not have
        "wiki",
        fingerprint={**latest.fingerprint, "tables": tables},
        finished=latest.finished + timedelta(seconds=1),
    )
    drill(kit, "wiki")
    rows = estate(kit).compliance()
    assert [(r.database, r.status) for r in rows] == [("wiki", "failing"), ("notes", "ok")]
    assert rows[0].drill_result == "mismatch"
    assert rows[0].problems == ["last drill mismatch"]


def test_database_detail_and_evidence(kit: Kit) -> None:
    kit.backup("notes")
    kit.backup("notes")
    drill(kit, "notes")
    drill(kit, "wiki")  # never backed up: a failed drill run
    view = estate(kit)
    detail = view.database("notes")
    assert len(detail.snapshots) == 2 and detail.snapshots_error is None
    assert detail.snapshots[0].time >= detail.snapshots[1].time
    newest = detail.snapshots[0]
    assert newest.size > 0 and newest.duration_seconds >= 0
    assert detail.snapshots[1].added_bytes > 0
    (evidence,) = detail.drills
    assert evidence.result == "pass" and evidence.fingerprint == "match"
    assert evidence.snapshot == newest.id and evidence.tables_compared == 3
    assert evidence.restored_to is not None and "dbfleet-drill_" in evidence.restored_to
    assert evidence.restored_bytes > 0 and evidence.rto_objective_seconds == 1800
    assert [j.kind for j in detail.jobs] == ["drill"]
    wiki = view.database("wiki")
    assert wiki.snapshots == [] and wiki.jobs[0].status == "failed"
    assert wiki.jobs[0].error and "no snapshot" in wiki.jobs[0].error
    assert wiki.drills[0].fingerprint == "not compared"
    with pytest.raises(UsageError):
        view.database("nope")
    json.dumps(detail.as_dict(), default=str)  # the API body serializes


def test_exports_round_trip(kit: Kit) -> None:
    kit.backup("notes")
    drill(kit, "notes")
    drill(kit, "wiki")
    view = estate(kit)
    rows = [r.as_dict() for r in view.compliance()]
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows, COMPLIANCE_COLUMNS))))
    assert [p["database"] for p in parsed] == ["wiki", "notes"]
    assert parsed[0]["status"] == "stale" and parsed[0]["recovery_point"] == ""
    assert json.loads(parsed[0]["problems"]) == ["never backed up", "last drill failed"]
    drills = [d.as_dict() for d in view.drills()]
    parsed = list(csv.DictReader(io.StringIO(to_csv(drills, DRILL_COLUMNS))))
    assert [(p["database"], p["result"]) for p in parsed] == [("wiki", "failed"), ("notes", "pass")]
    assert parsed[1]["fingerprint"] == "match" and parsed[1]["within_objective"] == "true"
    body = json.loads(to_json(drills, generated_at="2026-01-01T00:00:00+00:00"))
    assert body["rows"][1]["restored_to"] == drills[1]["restored_to"]


def test_csv_neutralizes_formulas() -> None:
    text = to_csv([{"a": "=HYPERLINK(1)", "b": -3, "c": None}], ["a", "b", "c"])
    assert text == "a,b,c\r\n'=HYPERLINK(1),-3,\r\n"


def test_no_catalog_yet(kit: Kit) -> None:
    assert not kit.catalog.exists()
    view = estate(kit)
    assert {r.database for r in view.compliance()} == set(load_inventory(kit.config).databases)
    assert view.jobs() == [] and view.drills() == []


def test_a_copy_older_than_the_rpo_makes_the_row_stale(kit: Kit) -> None:
    """notes gains an off-site copy_to after its backup: the copy is missing."""
    kit.backup("notes")
    document = yaml.safe_load(kit.config.read_text())
    document["repositories"]["offsite"] = {
        "url": f"file://{kit.root / 'offsite'}",
        "passphrase_env": "DBFLEET_TEST_DRILL_PW",
    }
    for name in ("notes", "wiki"):
        document["databases"][name]["repository"] = "local"
    document["databases"]["notes"]["copy_to"] = ["offsite"]
    kit.config.write_text(yaml.safe_dump(document, sort_keys=False))
    init_repository(load_inventory(kit.config), "offsite", kdf={"n": 2**10, "r": 8, "p": 1})
    (row,) = [r for r in estate(kit).compliance() if r.database == "notes"]
    assert row.rpo_state == "stale" and row.stale_copies == ["offsite"]
    assert row.recovery_point is not None and row.recovery_point_age_seconds is not None
    assert row.recovery_point_age_seconds < 3600
    assert row.problems[0] == "copy older than the RPO in offsite"
    assert row.recovery_window_start == row.recovery_point  # one snapshot


def test_share_counts_from_when_dbfleet_first_saw_the_database(kit: Kit) -> None:
    """A database first backed up 2 hours ago (rpo 1h) and again 30 minutes
    ago is judged on those 2 hours: 1h + 30m covered, 30m not."""
    kit.backup("notes")
    latest = kit.repos().for_database("notes").find_snapshot("notes:latest")
    now = latest.finished + timedelta(minutes=30)
    first = now - timedelta(hours=2)
    kit.save_variant("notes", started=first, finished=first)
    (row,) = [r for r in estate(kit, now).compliance() if r.database == "notes"]
    assert row.within_rpo_since == first.isoformat()
    assert row.within_rpo_30d == pytest.approx(0.75, abs=1e-6)
    assert row.breach_seconds_30d == pytest.approx(1800, abs=0.01)


def test_forecast_from_the_size_history(kit: Kit) -> None:
    """Growing 1 MiB a day from 10 MiB, capacity 20 MiB: reached in 10 days
    after the first sample; the drill (at 12 MiB) scales to the RTO too."""
    kit.write(notes={"rpo": "1h", "capacity_bytes": 20 * 2**20})
    kit.backup("notes")
    drill(kit, "notes")
    now = datetime.now(UTC)
    start = now - timedelta(days=2)
    for day in range(3):  # 10, 11, 12 MiB; the drill comes after the last one
        at = start + timedelta(days=day) - timedelta(minutes=1)
        store_sample(kit, HealthSample("notes", "sqlite", at, True, 0.01,
                                       size_bytes=(10 + day) * 2**20))  # fmt: skip
    detail = estate(kit, now).database("notes")
    assert detail.forecast is not None
    assert detail.forecast["bytes_per_day"] == pytest.approx(2**20)
    reached = datetime.fromisoformat(detail.forecast["capacity_reached_at"])
    assert abs(reached - (start - timedelta(minutes=1) + timedelta(days=10))) < timedelta(minutes=1)
    # the real drill took well under a second: 1800 s lies beyond the horizon
    assert detail.forecast["rto_seconds"] == 1800 and detail.forecast["rto_exceeded_at"] is None
    # a drill of 600 s at 12 MiB reaches 1800 s at 36 MiB: 24 days after the last sample
    row = dataclasses.replace(detail.row, drill_rto_seconds=600.0, last_drill=now.isoformat())
    with Catalog(kit.catalog) as cat:
        scaled = size_forecast(load_inventory(kit.config), cat, "notes", now, row)
    assert scaled is not None
    exceeded = datetime.fromisoformat(scaled["rto_exceeded_at"])
    last = start + timedelta(days=2) - timedelta(minutes=1)
    assert abs(exceeded - (last + timedelta(days=24))) < timedelta(minutes=1)
    assert estate(kit, now).database("wiki").forecast is None  # no history
