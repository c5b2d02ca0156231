"""``drill``: prove that a backup restores, and measure how long it takes (RTO).

A drill is a verify with a clock and a memory: the snapshot is restored into
a scratch target (the database's ``scratch:`` from the inventory, an
inventory database on another server, or an engine scratch location next to
the source), the restored data's fingerprint is compared with the one
recorded at backup time, the scratch target is dropped again, and the result
goes into the job catalog (kind ``drill``) where ``dbfleet drills`` reads it.

``rto_seconds`` is the time from the start of the restore to the end of the
fingerprint of the restored data: how long until the data is back *and
known to be right*. It is compared with the database's ``rto:`` objective.

Results: ``pass``; ``rto_exceeded`` (the data matches, the restore was too
slow); ``mismatch`` (the restored data differs from the backup); ``corrupt``
(the snapshot's data in the repository failed its integrity check: a damaged
or tampered pack, index or manifest); ``failed`` (the drill could not be
completed); ``unsupported`` (the engine has no scratch targets, or the
snapshot has no fingerprint to compare against: the drill says so and never
passes). ``mismatch``, ``corrupt`` and any other repository problem (wrong
passphrase, locked) exit 3, like ``verify`` and ``restore``; the rest 1.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dbfleet.catalog import Catalog, Run
from dbfleet.config import DatabaseConfig
from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints, incomparable
from dbfleet.engines.registry import engine_for
from dbfleet.errors import (
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_OK,
    DbfleetError,
    IntegrityError,
    RepositoryError,
    UsageError,
)
from dbfleet.notify import Channel, Event, deliver
from dbfleet.operations.common import (
    Repositories,
    SnapshotSource,
    matches_database,
    no_fingerprint_reason,
    snapshot_caveats,
)
from dbfleet.operations.restore import describe, source_config
from dbfleet.repo import Repository, Snapshot
from dbfleet.repo.lock import repository_lock
from dbfleet.schedule.config import format_span
from dbfleet.schedule.core import AlertState, alert_transition

KIND = "drill"
RESULTS = ("pass", "rto_exceeded", "mismatch", "incomparable", "corrupt", "failed", "unsupported")
INTEGRITY_RESULTS = ("mismatch", "corrupt")
"""Results that mean the backup cannot be trusted (exit 3)."""


def _repository_error_names() -> set[str]:
    found, todo = set(), [RepositoryError]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return found


def failure_result(exc: BaseException) -> str:
    """``corrupt`` when the repository's data failed its integrity check,
    else ``failed``."""
    return "corrupt" if isinstance(exc, IntegrityError) else "failed"


@dataclass
class DrillResult:
    """One snapshot drilled. The ``drill --json`` object (docs/drills.md)."""

    database: str
    entry: str
    engine: str
    result: str = "failed"
    snapshot: str | None = None
    snapshot_time: str | None = None
    scratch: str | None = None
    started_at: str = field(default_factory=lambda: _now_iso())
    rto_seconds: float | None = None
    restore_seconds: float | None = None
    fingerprint_seconds: float | None = None
    cleanup_seconds: float | None = None
    total_seconds: float = 0.0
    rto_objective_seconds: float | None = None
    within_objective: bool | None = None
    bytes: int = 0
    tables_compared: int = 0
    differences: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    """What the comparison cannot prove (see ``snapshot_caveats``)."""
    reason: str | None = None
    error_type: str | None = None
    run_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.result == "pass"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _r(seconds: float) -> float:
    return round(seconds, 3)


# -- one drill ---------------------------------------------------------------


def scratch_for(repos: Repositories, source: DatabaseConfig, label: str) -> DatabaseConfig:
    """Where a drill restores: ``scratch:`` (an inventory database, or a name
    on the source's server), else the engine's scratch location. Refuses any
    location that the inventory knows as a database of its own, other than
    the one ``scratch:`` names."""
    inventory = repos.inventory
    if source.scratch and source.scratch in inventory.databases:
        scratch = inventory.databases[source.scratch]
    elif source.scratch:
        scratch = engine_for(source).target(source.scratch)
    else:
        scratch = engine_for(source).scratch(label)
    where = describe(scratch)
    if where == describe(source):
        raise UsageError("the scratch target is the source database; refusing to overwrite it")
    for name, db in inventory.databases.items():
        if name != source.scratch and not db.all_databases and describe(db) == where:
            raise UsageError(
                f"the scratch target {where} is inventory database {name!r}; refusing to drop it",
                hint="name a dedicated scratch database in 'scratch:'",
            )
    if scratch.engine != source.engine:
        raise UsageError(f"scratch {source.scratch!r} is {scratch.engine}, not {source.engine}")
    return scratch


def drill_snapshot(
    repos: Repositories,
    repo: Repository,
    snapshot: Snapshot,
    *,
    on_bytes: Callable[[int], None] | None = None,
) -> DrillResult:
    """Drill one snapshot. Never raises for a failed drill: the result says
    what happened (``failed`` with ``reason`` and ``error_type``)."""
    began = time.monotonic()
    entry = repos.inventory.split_member(snapshot.database)[0]
    result = DrillResult(
        database=snapshot.database,
        entry=entry,
        engine=snapshot.engine,
        snapshot=snapshot.id,
        snapshot_time=snapshot.finished.isoformat(),
    )
    try:
        objective = repos.inventory.database(entry).rto
        result.rto_objective_seconds = objective.total_seconds() if objective else None
        _run(repos, repo, snapshot, result, on_bytes)
    except DbfleetError as exc:
        result.result, result.reason = failure_result(exc), str(exc)
        result.error_type = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - one broken engine must not stop the others
        result.result, result.error_type = "failed", type(exc).__name__
        result.reason = f"unexpected {type(exc).__name__}: {exc}"
    result.total_seconds = _r(time.monotonic() - began)
    return result


def _run(
    repos: Repositories,
    repo: Repository,
    snapshot: Snapshot,
    result: DrillResult,
    on_bytes: Callable[[int], None] | None,
) -> None:
    source = source_config(repos, snapshot)
    if not engine_for(source).capabilities.scratch_targets:
        result.result, result.error_type = "unsupported", "Unsupported"
        result.reason = f"engine {source.engine} has no scratch targets to restore a drill into"
        return
    if not snapshot.fingerprint:
        result.result, result.error_type = "unsupported", "Unsupported"
        result.reason = (
            f"snapshot {snapshot.short_id} has no fingerprint to compare against"
            + no_fingerprint_reason(snapshot)
        )
        return
    scratch = scratch_for(repos, source, f"drill_{secrets.token_hex(3)}")
    result.scratch = describe(scratch)
    engine = engine_for(scratch)

    def count(n: int) -> None:
        result.bytes += n
        if on_bytes:
            on_bytes(n)

    with repository_lock(repo.storage, exclusive=False, operation=f"drill {snapshot.database}"):
        engine.drop()
        try:
            start = time.monotonic()
            engine.restore(SnapshotSource(repo, snapshot, count), RestoreOptions(clean=True))
            restored = time.monotonic()
            actual = engine.fingerprint()
            done = time.monotonic()
        except BaseException:
            with contextlib.suppress(Exception):  # the drill's own error is the one to report
                engine.drop()
            raise
        engine.drop()  # a scratch target left behind fails the drill
        result.cleanup_seconds = _r(time.monotonic() - done)
    result.restore_seconds = _r(restored - start)
    result.fingerprint_seconds = _r(done - restored)
    result.rto_seconds = _r(done - start)
    result.tables_compared = len(snapshot.fingerprint.get("tables", {}))
    result.caveats = snapshot_caveats(snapshot)
    result.differences = compare_fingerprints(snapshot.fingerprint, actual)
    objective = result.rto_objective_seconds
    if objective is not None:
        result.within_objective = result.rto_seconds <= objective
    why_incomparable = incomparable(snapshot.fingerprint, actual, result.differences)
    if why_incomparable:
        result.result, result.error_type = "incomparable", "FingerprintFormatChanged"
        result.reason = why_incomparable
    elif result.differences:
        result.result, result.error_type = "mismatch", "FingerprintMismatchError"
        result.reason = "restored data differs from the backup: " + "; ".join(
            result.differences[:3]
        )
    elif result.within_objective is False:
        result.result, result.error_type = "rto_exceeded", "RTOExceeded"
        result.reason = (
            f"restore took {result.rto_seconds:.1f}s, over the RTO of {objective:g}s "
            f"({format_span(timedelta(seconds=objective or 0))})"
        )
    else:
        result.result = "pass"


# -- several -----------------------------------------------------------------


def _failed(repos: Repositories, name: str, exc: DbfleetError) -> DrillResult:
    entry = repos.inventory.split_member(name)[0]
    db = repos.inventory.databases.get(entry)
    return DrillResult(
        database=name,
        entry=entry,
        engine=db.engine if db else "?",
        result=failure_result(exc),
        reason=str(exc),
        error_type=type(exc).__name__,
    )


def _latest(repos: Repositories, name: str) -> list[tuple[Repository, Snapshot]]:
    """The latest snapshot of ``name``; of each member for a server entry."""
    db = repos.inventory.database(name)
    repo = repos.for_database(name)
    if not db.all_databases or repos.inventory.split_member(name)[1] is not None:
        return [(repo, repo.find_snapshot(f"{name}:latest"))]
    newest: dict[str, Snapshot] = {}
    for snap in repo.list_snapshots():  # oldest first
        if snap.database.startswith(f"{name}/"):
            newest[snap.database] = snap
    if not newest:
        raise UsageError(f"no snapshots of {name} to drill", hint=f"run 'dbfleet backup {name}'")
    return [(repo, newest[member]) for member in sorted(newest)]


def _given(repos: Repositories, name: str | None, selector: str) -> tuple[Repository, Snapshot]:
    if name is None or ":" in selector:
        repo, snapshot = repos.locate(selector)
    elif not re.fullmatch(r"[0-9a-fA-F]{4,64}", selector):
        raise UsageError(
            f"--snapshot {selector!r} is not a snapshot id",
            hint="give 4 or more hex digits of the id, or DATABASE:ID",
        )
    else:
        repo = repos.for_database(name)
        snapshot = repo.find_snapshot(selector)
    if name is not None and not matches_database(snapshot.database, [name]):
        raise UsageError(f"snapshot {snapshot.short_id} is of {snapshot.database!r}, not {name!r}")
    return repo, snapshot


def drill_targets(
    repos: Repositories,
    names: list[str],
    *,
    snapshot: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> dict[str, list[DrillResult]]:
    """Drill each target (an inventory database, a server entry's member, or
    a server entry: each member's latest snapshot), continuing past failures.
    With ``snapshot`` (an id, or ``db:id``), drill that one instead of the
    latest. Returns the results per target, in order."""
    if snapshot is not None and len(names) > 1:
        raise UsageError("--snapshot drills one snapshot: name at most one database")
    if snapshot is not None:
        repo, snap = _given(repos, names[0] if names else None, snapshot)
        return {names[0] if names else snap.database: [drill_snapshot(repos, repo, snap)]}
    out: dict[str, list[DrillResult]] = {}
    for name in names:
        try:
            located = _latest(repos, name)
        except DbfleetError as exc:
            out[name] = [_failed(repos, name, exc)]
            continue
        out[name] = [drill_snapshot(repos, r, s, on_bytes=on_bytes) for r, s in located]
    return out


def exit_code(results: list[DrillResult]) -> int:
    """3 when restored data differed, the repository's data was corrupt or the
    repository could not be used (wrong passphrase, locked: as every command
    exits for those), else 1 when anything did not pass, else 0."""
    repository_errors = _repository_error_names()
    if any(r.result in INTEGRITY_RESULTS or r.error_type in repository_errors for r in results):
        return EXIT_INTEGRITY
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def summarize(results: list[DrillResult]) -> dict[str, Any]:
    """The results of one target as a job result: the keys of the scheduler
    worker's ``JobResult`` (ok, bytes, snapshot, error, error_type, details)."""
    bad = [r for r in results if not r.ok]
    several = len({r.database for r in results}) > 1
    error = "; ".join(
        (f"{r.database}: " if several else "") + f"{r.result}: {r.reason}" for r in bad
    )
    return {
        "ok": bool(results) and not bad,
        "bytes": sum(r.bytes for r in results),
        "snapshot": results[0].snapshot if len(results) == 1 else None,
        "error": error or None,
        "error_type": next((r.error_type for r in bad), None),
        "details": {"drills": [r.as_dict() for r in results]},
    }


def drill_job(repos: Repositories, target: str) -> dict[str, Any]:
    """What the scheduler's ``drill`` job runs: drill ``target``'s latest
    snapshot(s); the worker records it, serve alerts on failure."""
    return summarize(drill_targets(repos, [target])[target])


# -- catalog and alerts ------------------------------------------------------


def record(
    catalog: Catalog,
    target: str,
    results: list[DrillResult],
    started_at: datetime,
    actor: str | None = None,
) -> Run:
    """Record the drills of one target as one manual ``drill:<target>`` run
    started by ``actor`` (``cli:<user>``, ``api:<token>``)."""
    summary = summarize(results)
    run_id = catalog.record_run(
        job=f"{KIND}:{target}",
        kind=KIND,
        target=target,
        database=target,
        trigger="manual",
        scheduled_at=None,
        started_at=started_at,
        status="ok" if summary["ok"] else "failed",
        duration_seconds=sum(r.total_seconds for r in results),
        bytes=summary["bytes"],
        snapshot=summary["snapshot"],
        error=summary["error"],
        details=summary["details"],
        actor=actor,
    )
    for r in results:
        r.run_id = run_id
    return catalog.get(run_id)


def alert(
    catalog: Catalog,
    channels: list[Channel],
    run: Run,
    *,
    now: datetime,
    repeat: timedelta | None,
) -> dict[str, str | None]:
    """The alert of ``drill:<target>``, with serve's rules (same key, so a
    scheduled and a manual drill share it): notify ``job_failed`` when it
    starts failing (and every ``repeat`` while it keeps failing),
    ``job_recovered`` on the first pass after. Returns ``{channel: error}``."""
    key = f"job:{run.job}"
    stored = catalog.alert(key)
    previous = AlertState(stored.state, stored.since, stored.notified_at) if stored else None
    state = "ok" if run.status == "ok" else "failing"
    new, action = alert_transition(previous, state, bad="failing", now=now, repeat=repeat)
    if new != previous:
        catalog.set_alert(key, new.state, new.since, new.notified_at, {"run": run.id})
    if action in ("raise", "remind"):
        summary = f"drill of {run.target} failed: {run.error}"
        event = Event("job_failed", summary, now, run.database, run.as_dict())
        event.reminder = action == "remind"
        return deliver(channels, event)
    if action == "clear" and previous is not None:
        since = previous.since.astimezone(UTC).isoformat(timespec="seconds")
        summary = f"drill of {run.target} passed again (failing since {since})"
        return deliver(channels, Event("job_recovered", summary, now, run.database, run.as_dict()))
    return {}
