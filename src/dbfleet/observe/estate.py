"""The estate read model shared by the dashboard pages, the JSON API and
the exports: per database, is it within its RPO and RTO, and the proof.

Plain functions over ``(inventory, scheduling, catalog, repositories, now)``
plus :class:`Estate`, which holds the caches a long-running server keeps
(snapshot manifests, the freshness index) and the clock.

Compliance ``status`` of a row, worst first (the sort order of the page):

``stale``    the newest recovery point is older than the RPO, or there is none;
``error``    its repository could not be read: nothing is concluded;
``failing``  the last drill did not pass, or the database is down;
``warning``  never drilled, drill RTO unknown, or archiving lags behind the RPO;
``ok``       everything above is fine (also with no RPO set: ``rpo_state``
             says ``no-rpo`` and nothing is judged).

The recovery point is the newest restorable moment
(:func:`dbfleet.observe.recovery.recovery_window`: the newest snapshot,
carried further by an unbroken WAL/binlog archive). A ``copy_to``
repository whose newest copy is older than the RPO makes the row stale too
(``stale_copies``, as ``dbfleet freshness`` judges it). ``within_rpo_30d``
is computed from every restorable snapshot's time by
:func:`dbfleet.observe.rpo.within_rpo` over the last 30 days, or since
dbfleet first backed the database up (its first snapshot or backup run: a database
added yesterday is judged on one day, ``within_rpo_since``). The change log
is not counted there, so for a database with PITR archiving it is a lower
bound.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbfleet.catalog import Catalog, Run
from dbfleet.cli.drill import drill_status
from dbfleet.config import Inventory
from dbfleet.engines.base import HealthSample
from dbfleet.errors import DbfleetError
from dbfleet.freshness import SnapshotIndex, check_freshness
from dbfleet.observe.evidence import DrillEvidence, drill_evidence
from dbfleet.observe.forecast import HISTORY, forecast
from dbfleet.observe.points import recovery_into, snapshots_of
from dbfleet.observe.snapshots import (
    RepositorySource,
    SnapshotInfo,
    SnapshotTimes,
    first_runs,
    latest_samples,
)
from dbfleet.schedule.config import Scheduling

STATUS_ORDER = ("stale", "error", "failing", "warning", "ok")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ComplianceRow:
    """One database's compliance (the ``/api/v1/compliance`` object and one
    line of ``compliance.csv``). Ages are seconds at ``now``; times ISO 8601."""

    database: str
    engine: str
    repository: str | None
    status: str = "ok"
    problems: list[str] = field(default_factory=list)
    rpo_seconds: float | None = None
    rpo_state: str = "error"
    recovery_point: str | None = None
    recovery_point_age_seconds: float | None = None
    recovery_window_start: str | None = None
    recovery_log: str | None = None
    stale_copies: list[str] = field(default_factory=list)
    repository_error: str | None = None
    within_rpo_30d: float | None = None
    within_rpo_since: str | None = None
    breach_seconds_30d: float | None = None
    snapshots_30d: int = 0
    rto_seconds: float | None = None
    drill_result: str = "never"
    last_drill: str | None = None
    drill_age_seconds: float | None = None
    drill_rto_seconds: float | None = None
    drill_within_rto: bool | None = None
    archive_lag_seconds: float | None = None
    archive_pending_segments: float | None = None
    health: str = "unknown"
    health_error: str | None = None
    health_taken_at: str | None = None

    @property
    def stale(self) -> bool:
        return self.status == "stale"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


COMPLIANCE_COLUMNS = [
    f for f in ComplianceRow.__dataclass_fields__ if f not in ("problems", "stale_copies")
] + ["stale_copies", "problems"]


def _age(now: datetime, text: str | None) -> float | None:
    if not text:
        return None
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round((now - when).total_seconds(), 3)


def _archive(row: ComplianceRow, sample: HealthSample, now: datetime) -> None:
    archive = sample.archive or {}
    row.archive_lag_seconds = _age(now, archive.get("last_archived_at"))
    pending = archive.get("pending_segments")
    row.archive_pending_segments = float(pending) if pending is not None else None


def _judge(row: ComplianceRow) -> None:
    """``status`` and ``problems`` from the fields (see the module doc)."""
    problems, worst = [], "ok"

    def flag(status: str, text: str) -> None:
        nonlocal worst
        problems.append(text)
        if STATUS_ORDER.index(status) < STATUS_ORDER.index(worst):
            worst = status

    if row.rpo_state == "stale" and row.recovery_point is None:
        flag("stale", "never backed up")
    elif (
        row.rpo_state == "stale"
        and row.stale_copies
        and (row.rpo_seconds is None or (row.recovery_point_age_seconds or 0) <= row.rpo_seconds)
    ):
        flag("stale", "copy older than the RPO in " + ", ".join(row.stale_copies))
    elif row.rpo_state == "stale":
        flag("stale", "RPO exceeded")
    elif row.rpo_state == "error":
        flag("error", "repository unreadable")
    if row.drill_result == "never":
        flag("warning", "never drilled")
    elif row.drill_result != "pass":
        flag("failing", f"last drill {row.drill_result.replace('_', ' ')}")
    if row.health == "down":
        flag("failing", "database down")
    lag, rpo = row.archive_lag_seconds, row.rpo_seconds
    if (
        lag is not None
        and rpo is not None
        and lag > rpo
        and (row.archive_pending_segments or 0) > 0
    ):
        flag("warning", "archiving lags behind the RPO")
    row.status, row.problems = worst, problems


def _sort_key(row: ComplianceRow) -> tuple[Any, ...]:
    return (
        STATUS_ORDER.index(row.status),
        row.within_rpo_30d if row.within_rpo_30d is not None else 2.0,
        -(row.recovery_point_age_seconds or float("inf")),
        row.database,
    )


def compliance_rows(
    inventory: Inventory,
    scheduling: Scheduling,
    catalog: Catalog | None,
    repositories: RepositorySource,
    now: datetime,
    *,
    health: Mapping[str, HealthSample] | None = None,
    index: SnapshotIndex | None = None,
    times: SnapshotTimes | None = None,
    databases: list[str] | None = None,
) -> list[ComplianceRow]:
    """One row per inventory database (or per ``databases``), worst first."""
    names = databases if databases is not None else list(inventory.databases)
    times = times or SnapshotTimes()
    times.new_pass()
    health = health or {}
    fresh = {
        f.database: f
        for f in check_freshness(
            inventory, scheduling, repositories, now=now, databases=names, index=index
        )
    }
    first = first_runs(catalog.path) if catalog is not None else {}
    drills: dict[str, Any] = {}
    for status in drill_status(inventory, catalog, names):
        # A server entry has one status per drilled member: the worst speaks for it.
        key = status.entry
        if key not in drills or (drills[key].result == "pass" and status.result != "pass"):
            drills[key] = status
    rows = []
    for name in names:
        db = inventory.database(name)
        item = fresh[name]
        rpo = scheduling.database(name).rpo or db.rpo
        rto = scheduling.database(name).rto or db.rto
        row = ComplianceRow(database=name, engine=db.engine, repository=db.repository)
        row.rpo_seconds = rpo.total_seconds() if rpo else None
        row.rto_seconds = rto.total_seconds() if rto else None
        recovery_into(row, inventory, repositories, times, item, rpo, now, first.get(name))
        drill = drills.get(name)
        if drill is not None:
            row.drill_result, row.last_drill = drill.result, drill.last_drill
            row.drill_age_seconds = _age(now, drill.last_drill)
            row.drill_rto_seconds = drill.rto_seconds
            row.drill_within_rto = drill.within_objective
        sample = health.get(name)
        if sample is not None:
            row.health = "up" if sample.up else "down"
            row.health_error = sample.error
            row.health_taken_at = sample.taken_at.isoformat()
            _archive(row, sample, now)
        _judge(row)
        rows.append(row)
    return sorted(rows, key=_sort_key)


@dataclass
class DatabaseDetail:
    """Everything the database page shows; ``snapshots`` newest first."""

    row: ComplianceRow
    snapshots: list[SnapshotInfo]
    snapshots_error: str | None
    drills: list[DrillEvidence]
    jobs: list[Run]
    health: HealthSample | None
    forecast: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "compliance": self.row.as_dict(),
            "snapshots": [s.as_dict() for s in self.snapshots],
            "snapshots_error": self.snapshots_error,
            "drills": [d.as_dict() for d in self.drills],
            "jobs": [j.as_dict() for j in self.jobs],
            "health": asdict(self.health) if self.health is not None else None,
            "forecast": self.forecast,
        }


def database_detail(
    inventory: Inventory,
    scheduling: Scheduling,
    catalog: Catalog | None,
    repositories: RepositorySource,
    now: datetime,
    name: str,
    *,
    health: Mapping[str, HealthSample] | None = None,
    index: SnapshotIndex | None = None,
    times: SnapshotTimes | None = None,
    limit: int = 60,
) -> DatabaseDetail:
    """The database page of ``name`` (raises ``UsageError`` for a name the
    inventory does not have): its newest ``limit`` snapshots, drills and jobs."""
    inventory.database(name)
    times = times or SnapshotTimes()
    row = compliance_rows(
        inventory, scheduling, catalog, repositories, now,
        health=health, index=index, times=times, databases=[name],
    )[0]  # fmt: skip
    snapshots: list[SnapshotInfo] = []
    error = None
    try:
        snapshots = snapshots_of(inventory, repositories, times, name)[::-1][:limit]
    except DbfleetError as exc:
        error = str(exc)
    jobs = catalog.runs(database=name, limit=limit) if catalog is not None else []
    predicted = size_forecast(inventory, catalog, name, now, row) if catalog is not None else None
    return DatabaseDetail(
        row=row,
        snapshots=snapshots,
        snapshots_error=error,
        drills=drill_evidence(catalog, name, limit=limit),
        jobs=jobs,
        health=(health or {}).get(name),
        forecast=predicted,
    )


def size_forecast(
    inventory: Inventory, catalog: Catalog, name: str, now: datetime, row: ComplianceRow
) -> dict[str, Any] | None:
    """:func:`dbfleet.observe.forecast.forecast` of ``name``'s size history:
    when it reaches ``capacity_bytes``, and when the last drill's RTO, grown
    in proportion to the size, would exceed ``rto`` (the drill's size is the
    newest health sample taken before the drill). ``None`` without enough
    history."""
    points = list(catalog.size_history(name, now - HISTORY))
    drill_size = None
    if row.last_drill is not None and points:
        drilled = datetime.fromisoformat(row.last_drill)
        before = [size for taken, size in points if taken <= drilled]
        drill_size = before[-1] if before else points[0][1]
    capacity = inventory.database(name).capacity_bytes
    result = forecast(
        points,
        capacity_bytes=float(capacity) if capacity else None,
        rto_seconds=row.rto_seconds,
        drill_rto_seconds=row.drill_rto_seconds,
        drill_size_bytes=drill_size,
    )
    return result.as_dict() if result is not None else None


class Estate:
    """The read model of one running server: inventory, catalog path,
    repositories, clock, and the caches that make a page view cheap.
    ``health`` returns the newest sample per database (the health monitor's
    ``latest``); without it, the newest sample stored in the catalog is shown."""

    def __init__(
        self,
        inventory: Inventory,
        scheduling: Scheduling,
        catalog_path: Path,
        repositories: RepositorySource,
        *,
        clock: Clock = utc_now,
        health: Callable[[], Mapping[str, HealthSample]] | None = None,
    ) -> None:
        self.inventory, self.scheduling = inventory, scheduling
        self.catalog_path, self.repositories = catalog_path, repositories
        self.clock, self._health = clock, health
        self.index, self.times = SnapshotIndex(), SnapshotTimes()
        self._lock = threading.Lock()  # SnapshotIndex is not thread-safe

    def health(self) -> Mapping[str, HealthSample]:
        return self._health() if self._health is not None else latest_samples(self.catalog_path)

    def catalog(self) -> Catalog | None:
        """A fresh read connection (``None`` before the first job ran)."""
        return Catalog(self.catalog_path, create=False) if self.catalog_path.exists() else None

    def compliance(self) -> list[ComplianceRow]:
        catalog = self.catalog()
        try:
            with self._lock:
                return compliance_rows(
                    self.inventory, self.scheduling, catalog, self.repositories, self.clock(),
                    health=self.health(), index=self.index, times=self.times,
                )  # fmt: skip
        finally:
            if catalog is not None:
                catalog.close()

    def database(self, name: str) -> DatabaseDetail:
        catalog = self.catalog()
        try:
            with self._lock:
                return database_detail(
                    self.inventory, self.scheduling, catalog, self.repositories, self.clock(),
                    name, health=self.health(), index=self.index, times=self.times,
                )  # fmt: skip
        finally:
            if catalog is not None:
                catalog.close()

    def drills(self, database: str | None = None) -> list[DrillEvidence]:
        catalog = self.catalog()
        try:
            return drill_evidence(catalog, database)
        finally:
            if catalog is not None:
                catalog.close()

    def jobs(self, limit: int = 50) -> list[Run]:
        """Running and queued jobs first (oldest first), then the newest finished."""
        catalog = self.catalog()
        if catalog is None:
            return []
        with catalog:
            active = [r for s in ("running", "queued") for r in catalog.runs(status=s, limit=None)]
            recent = [r for r in catalog.runs(limit=limit) if r.status not in ("running", "queued")]
        return sorted(active, key=lambda r: r.id) + recent
