"""Orchestration: ``status``, ``plan``, ``up``, ``down``, ``validate``, ``baseline``.

``up`` in order: read every database's state and refuse drift; (unless
``--dry-run``) check the backup gate of each database that has pending
steps, take their leases (polled up to ``lock_timeout``), read the state
again under the lease (the run we waited for may have applied some), then
run the phases. In a phase the databases run in parallel (at most
``PARALLEL``); each is backed up first, then its steps run in version
order. When a step fails, that database is rolled back -- the engine's
transaction undoes the failed step (or records how far it got, where DDL is
not transactional), and the steps this run applied to it before are
reverted through their ``down`` sections, newest first -- the other
databases of the phase finish, and no later phase runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dbfleet.engines.registry import migrations_for
from dbfleet.errors import DbfleetError, OperationError, UsageError
from dbfleet.migrate import lint
from dbfleet.migrate.lease import DEFAULT_LOCK_TIMEOUT, DEFAULT_TTL, Leases, holder_name
from dbfleet.migrate.model import Applied, Step, StepFailed
from dbfleet.migrate.plan import (
    DatabaseState,
    down_steps,
    inspect,
    new_plan_id,
    participants,
    phases,
    statements,
    up_steps,
)

if TYPE_CHECKING:
    from dbfleet.config import Inventory
    from dbfleet.engines.base import Migrations

PARALLEL = 4
BeforeChange = Callable[[str, str], str | None]
"""Called with (database, plan id) before a database is changed: takes the
pre-migration snapshot and returns its id."""


@dataclass
class StepReport:
    database: str
    version: int
    name: str
    direction: str
    statements: list[str]
    non_transactional: list[int]
    irreversible: bool
    warnings: list[str] = field(default_factory=list)
    status: str = "planned"
    """planned, applied, reverted, failed, skipped (a later phase after a
    failure), rolled-back (reverted by the failure of a later step), dry-run."""
    start: int = 0
    duration_seconds: float | None = None
    error: str | None = None


@dataclass
class RunReport:
    plan_id: str
    command: str
    phases: list[list[str]]
    steps: list[StepReport] = field(default_factory=list)
    snapshots: dict[str, str | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ok: bool = True
    error: str | None = None

    def as_dict(self, *, sql: bool = True) -> dict[str, Any]:
        """The ``plan --json`` contract: ``phases`` is a list of lists of
        ``{database, versions, steps}``."""
        by_db: dict[str, list[dict[str, Any]]] = {}
        for step in self.steps:
            item = asdict(step)
            if not sql:
                item.pop("statements")
            by_db.setdefault(step.database, []).append(item)
        return {
            "plan_id": self.plan_id,
            "command": self.command,
            "ok": self.ok,
            "error": self.error,
            "phases": [
                [
                    {
                        "database": db,
                        "versions": [s["version"] for s in by_db.get(db, [])],
                        "steps": by_db.get(db, []),
                        "snapshot": self.snapshots.get(db),
                    }
                    for db in phase
                ]
                for phase in self.phases
            ],  # fmt: skip
            "notes": list(self.notes),
        }


class Project:
    """The inventory's migrations, with one engine session per database."""

    def __init__(self, inventory: Inventory, applied_by: str = "") -> None:
        self.inventory = inventory
        self.variables: dict[str, Any] = dict(inventory.migrations.vars)
        self.applied_by = applied_by
        self._opened: dict[str, Migrations] = {}

    def migrations(self, name: str) -> Migrations:
        if name not in self._opened:
            self._opened[name] = migrations_for(self.inventory.databases[name])
        return self._opened[name]

    def state(self, name: str, *, with_lock: bool = False) -> DatabaseState:
        migrations = self.migrations(name)
        lock = migrations.holder() if with_lock else None
        return inspect(self.inventory, name, migrations, lock=lock)

    def close(self) -> None:
        for migrations in self._opened.values():
            with contextlib.suppress(DbfleetError):
                migrations.close()
        self._opened.clear()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def status(project: Project, names: list[str] | None = None) -> list[DatabaseState]:
    return [project.state(n, with_lock=True) for n in participants(project.inventory, names)]


def _report(project: Project, step: Step, *, with_lint: bool) -> StepReport:
    migrations = project.migrations(step.database)
    engine = project.inventory.databases[step.database].engine
    files = {f.version: f for f in project.state(step.database).files}
    item = files.get(step.version)
    warnings = []
    if with_lint:
        for index, statement in enumerate(step.statements):
            reason = lint.destructive(statement, engine)
            if reason:
                warnings.append(f"statement {index + 1} {reason}")
    return StepReport(
        database=step.database, version=step.version, name=step.name, direction=step.direction,
        statements=list(step.statements),
        non_transactional=[
            i for i, s in enumerate(step.statements)
            if migrations.transactional_ddl and migrations.non_transactional(s)
        ],
        irreversible=item is None or not item.reversible, warnings=warnings, start=step.start,
    )  # fmt: skip


def _squawk(project: Project, report: RunReport) -> None:
    """Add squawk's warnings to PostgreSQL up steps (once per migration)."""
    for step in report.steps:
        if project.inventory.databases[step.database].engine != "postgresql":
            continue
        try:
            found = lint.squawk(";\n".join(step.statements) + ";", assume_in_transaction=True)
        except (OSError, ValueError) as exc:
            report.notes.append(f"squawk lint skipped: {exc}")
            return
        step.warnings.extend(f"squawk {w}" for w in found)


def plan(
    project: Project, names: list[str] | None = None, *, to: int | None = None, squawk: bool = True
) -> tuple[RunReport, dict[str, list[Step]]]:
    """What ``up`` would run, with lint warnings; refuses drift (exit 1)."""
    chosen = participants(project.inventory, names)
    report = RunReport(new_plan_id(), "up", phases(project.inventory, chosen))
    steps: dict[str, list[Step]] = {}
    problems = []
    for name in chosen:
        state = project.state(name)
        problems += [f"{name}: {p}" for p in state.drift]
        steps[name] = up_steps(
            state, project.migrations(name), project.variables, project.applied_by, to
        )
        report.steps += [_report(project, s, with_lint=True) for s in steps[name]]
    if problems:
        raise OperationError(
            "drift: " + "; ".join(problems), hint="run 'dbfleet migrate validate' for the list"
        )
    if squawk:
        _squawk(project, report)
    return report, steps


def up(
    project: Project,
    names: list[str] | None = None,
    *,
    to: int | None = None,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ttl: float = DEFAULT_TTL,
    gate: Callable[[str], list[str]] | None = None,
    before_change: BeforeChange | None = None,
    force: bool = False,
) -> RunReport:
    report, steps = plan(project, names, to=to, squawk=False)
    pending = [name for name, items in steps.items() if items]
    if dry_run:
        return _dry_run(project, report, steps)
    for name in pending:
        problems = gate(name) if gate else []
        if problems and not force:
            raise OperationError("; ".join(problems), hint="--force migrates anyway (recorded)")
        report.notes += [f"forced past: {p}" for p in problems]
    if not pending:
        return report
    leases = {name: project.migrations(name) for name in pending}
    with Leases(leases, holder_name(report.plan_id), ttl=ttl, lock_timeout=lock_timeout) as held:
        if held.waited_seconds > 1:
            report.notes.append(f"waited {held.waited_seconds:.1f}s for the leases")
        fresh, steps = plan(project, pending, to=to, squawk=False)  # state under the lease
        report.steps = fresh.steps
        by_key = {(s.database, s.version): s for s in report.steps}
        failed = False
        for phase in report.phases:
            runnable = [n for n in phase if steps.get(n)]
            if failed:
                for name in runnable:
                    for step in steps[name]:
                        by_key[(name, step.version)].status = "skipped"
                continue

            def one(name: str) -> str | None:
                return _migrate(project, name, steps[name], by_key, held, before_change, report)

            with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(runnable)))) as pool:
                errors = [e for e in pool.map(one, runnable) if e]
            if errors:
                failed, report.ok, report.error = True, False, "; ".join(errors)
    return report


def _migrate(
    project: Project,
    name: str,
    steps: list[Step],
    by_key: dict[tuple[str, int], StepReport],
    leases: Leases,
    before_change: BeforeChange | None,
    report: RunReport,
) -> str | None:
    """Run one database's steps; on failure roll it back. The error or ``None``."""
    migrations = project.migrations(name)
    try:
        leases.check(name)
        report.snapshots[name] = before_change(name, report.plan_id) if before_change else None
    except DbfleetError as exc:
        for step in steps:
            by_key[(name, step.version)].status = "skipped"
        return str(exc)
    done: list[Step] = []
    for step in steps:
        item = by_key[(name, step.version)]
        began = time.monotonic()
        try:
            leases.check(name)
            migrations.apply(step)
        except DbfleetError as exc:
            item.status, item.error = "failed", str(exc)
            item.duration_seconds = round(time.monotonic() - began, 3)
            if isinstance(exc, StepFailed) and exc.done > 0:
                # statements of the failed step stay in effect (no transactional
                # DDL): reverting the earlier steps under it would leave a mix;
                # the database stays at the recorded point, where up resumes
                return f"{exc}; {name} kept at that point: fix the file and run up to resume"
            rollback = _revert(project, name, done, by_key)
            return f"{exc}{rollback}"
        item.status, item.duration_seconds = "applied", round(time.monotonic() - began, 3)
        done.append(step)
    return None


def _revert(
    project: Project, name: str, done: list[Step], by_key: dict[tuple[str, int], StepReport]
) -> str:
    """Revert the steps this run applied to ``name``, newest first; a note
    for the error message."""
    if not done:
        return ""
    migrations = project.migrations(name)
    files = {f.version: f for f in project.state(name).files}
    for step in reversed(done):
        item = files.get(step.version)
        if item is None or not item.reversible:
            return (f"; {name} keeps version {step.version} (irreversible: no down section; "
                    "restore the pre-migration snapshot to undo it)")  # fmt: skip
        down = Step(
            database=name, version=step.version, name=step.name, checksum=step.checksum,
            direction="down", statements=statements(migrations, item, "down", project.variables),
            applied_by=step.applied_by,
        )  # fmt: skip
        try:
            migrations.apply(down)
        except DbfleetError as exc:
            return f"; reverting {name} version {step.version} failed too: {exc}"
        by_key[(name, step.version)].status = "rolled-back"
    return f"; {name} rolled back to where it was ({len(done)} step(s) reverted)"


def _dry_run(project: Project, report: RunReport, steps: dict[str, list[Step]]) -> RunReport:
    """Print-only, plus (PostgreSQL, SQLite) each database's steps run in one
    transaction that is rolled back."""
    by_key = {(s.database, s.version): s for s in report.steps}
    for name, items in steps.items():
        migrations = project.migrations(name)
        for step in items:
            by_key[(name, step.version)].status = "dry-run"
        if not items or not migrations.transactional_ddl:
            continue
        try:
            skipped = migrations.trial(items)
        except StepFailed as exc:
            by_key[(name, exc.version)].status, by_key[(name, exc.version)].error = (
                "failed",
                str(exc),
            )
            report.ok, report.error = False, str(exc)
            continue
        for version, index in skipped:
            report.notes.append(f"{name} {version}: statement {index + 1} cannot run in a "
                                "transaction; the dry run did not execute it")  # fmt: skip
    return report


def down(
    project: Project, name: str, to: int, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ttl: float = DEFAULT_TTL, before_change: BeforeChange | None = None,
) -> RunReport:  # fmt: skip
    """Revert ``name`` to version ``to`` (every step needs a ``down``)."""
    report = RunReport(new_plan_id(), "down", [[name]])
    migrations = project.migrations(name)
    with Leases({name: migrations}, holder_name(report.plan_id), ttl=ttl,
                lock_timeout=lock_timeout):  # fmt: skip
        state = project.state(name)
        steps = down_steps(state, migrations, project.variables, project.applied_by, to)
        report.steps = [_report(project, s, with_lint=False) for s in steps]
        if steps and before_change:
            report.snapshots[name] = before_change(name, report.plan_id)
        for step, item in zip(steps, report.steps, strict=True):
            began = time.monotonic()
            try:
                migrations.apply(step)
            except DbfleetError as exc:
                item.status, item.error, report.ok, report.error = (
                    "failed",
                    str(exc),
                    False,
                    str(exc),
                )
                break
            item.status, item.duration_seconds = "reverted", round(time.monotonic() - began, 3)
    return report


def validate(project: Project, names: list[str] | None = None) -> list[DatabaseState]:
    """Every participating database's state; drift makes ``validate`` exit 1."""
    return [project.state(n) for n in participants(project.inventory, names)]


def baseline(project: Project, name: str, version: int, *, lock_timeout: float) -> Applied:
    """Adopt an existing database at ``version``: files up to it count as
    applied (and are never run); later ones are pending."""
    participants(project.inventory, [name])
    migrations = project.migrations(name)
    with Leases({name: migrations}, holder_name(new_plan_id()), lock_timeout=lock_timeout):
        state = project.state(name)
        if state.history:
            raise UsageError(
                f"{name}: has a migration history already (current {state.current}); "
                "baseline adopts a database that has none"
            )
        item = next((f for f in state.files if f.version == version), None)
        row = Applied(
            version=version, name=item.name if item else "baseline",
            checksum=item.checksum if item else "", applied_at=_now(), duration_seconds=0.0,
            applied_by=project.applied_by, statements_done=0, status="baseline",
        )  # fmt: skip
        migrations.record(row)
    return row


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
