"""``dbfleet migrate``: schema migrations across the estate (docs/migrations.md).

Thin: parses, calls :mod:`dbfleet.migrate.run`, renders. ``up``, ``down`` and
``baseline`` are recorded in the job catalog (kind ``migrate``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from dbfleet import output
from dbfleet.cli.context import State, resolve_catalog, state
from dbfleet.errors import EXIT_FAILED, DbfleetError, UsageError
from dbfleet.migrate import gate
from dbfleet.migrate.files import ENGINE_EXTENSION, discover, template
from dbfleet.migrate.lease import DEFAULT_LOCK_TIMEOUT, DEFAULT_TTL
from dbfleet.migrate.plan import database_directory
from dbfleet.migrate.run import Project, RunReport, baseline, down, plan, status, up, validate

app = typer.Typer(
    help="Schema migrations: one dependency-ordered plan across every database "
    "(see docs/migrations.md).",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
Databases = Annotated[
    list[str] | None,
    typer.Argument(
        help="Only these databases (default: every one with migrations).", metavar="DATABASE..."
    ),
]
ToOpt = Annotated[int | None, typer.Option("--to", help="Stop at this version.", metavar="V")]
LockTimeout = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        metavar="SECONDS",
        help="How long to wait for another run's migration lease before exit 1.",
    ),
]
LeaseTtl = Annotated[
    float,
    typer.Option(
        "--lease-ttl",
        metavar="SECONDS",
        help="Lifetime of a lease record (SQLite) unless renewed; a killed run's "
        "lease expires after it.",
    ),
]


def _project(st: State) -> Project:
    return Project(st.inventory(), gate.actor().removeprefix("cli:"))


def _catalog(st: State) -> Path | None:
    inventory = st.inventory()
    if inventory.source is None:
        return None
    return resolve_catalog(None, inventory.source, inventory.scheduling())


def _recorded(st: State, command: str, names: list[str], action: Any) -> Any:
    """Run ``action()`` and record it in the job catalog, failed or not."""
    started, began = datetime.now(UTC), time.monotonic()
    try:
        result = action()
    except DbfleetError as exc:
        gate.record(
            _catalog(st),
            command=command,
            databases=names,
            ok=False,
            started_at=started,
            duration_seconds=round(time.monotonic() - began, 3),
            error=str(exc),
            details={"error_type": type(exc).__name__},
        )
        raise
    details = result.as_dict(sql=False) if isinstance(result, RunReport) else {"row": result}
    ok = result.ok if isinstance(result, RunReport) else True
    error = result.error if isinstance(result, RunReport) else None
    gate.record(
        _catalog(st),
        command=command,
        databases=names,
        ok=ok,
        started_at=started,
        duration_seconds=round(time.monotonic() - began, 3),
        error=error,
        details=details,
    )
    return result


@app.command("new")
def new_cmd(
    ctx: typer.Context,
    database: Annotated[str, typer.Argument(help="Inventory database.", metavar="DATABASE")],
    name: Annotated[str, typer.Argument(help="What it does: add_email_index.", metavar="NAME")],
    python: Annotated[
        bool, typer.Option("--python", help="A .py file (up(ctx)/down(ctx)).")
    ] = False,
) -> None:
    """Create the next migration file of DATABASE, with its sections."""
    inventory = state(ctx).inventory()
    db = inventory.database(database)
    slug = "_".join(name.strip().split()).lower()
    if not slug or not all(c.isalnum() or c in "_-." for c in slug):
        raise UsageError(f"migration name {name!r}: use letters, digits, '_', '-', '.'")
    directory = database_directory(inventory, database)
    existing = discover(database, directory)
    if existing and existing[-1].version >= 10**10:  # timestamps stay timestamps
        version = max(int(f"{datetime.now(UTC):%Y%m%d%H%M%S}"), existing[-1].version + 1)
        text_version = str(version)
    else:
        version = existing[-1].version + 1 if existing else 1
        width = len(existing[-1].path.name.split("_", 1)[0]) if existing else 4
        text_version = str(version).zfill(width)
    extension = ".py" if python else ENGINE_EXTENSION[db.engine]
    path = directory / f"{text_version}_{slug}{extension}"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(template(extension), encoding="utf-8")
    output.stdout.print(str(path))


@app.command("status")
def status_cmd(
    ctx: typer.Context, databases: Databases = None, json_output: JsonOpt = False
) -> None:
    """Applied versions (checksum, when, by whom, how long), pending ones,
    drift and the lease holder, per database."""
    with _project(state(ctx)) as project:
        states = status(project, databases)
    if json_output:
        output.emit_json([s.as_dict() for s in states])
        return
    for s in states:
        lock = f", lease held by {s.lock}" if s.lock else ""
        output.stdout.print(
            f"{s.database} ({s.engine}): current {s.current or 'none'}, "
            f"{len(s.pending)} pending{lock}"
        )
        for row in s.history:
            output.stdout.print(
                f"  {row.version} {row.name} {row.status} {row.checksum[:12]} "
                f"{row.applied_at} by {row.applied_by} {row.duration_seconds:.2f}s"
                + (f" error: {row.error}" if row.error else "")
            )
        for item in s.pending:
            output.stdout.print(f"  {item.version} {item.name} pending")
        for problem in s.drift:
            output.stdout.print(f"  DRIFT: {problem}")


def _render(report: RunReport, *, sql: bool) -> None:
    for number, phase in enumerate(report.phases, 1):
        output.stdout.print(f"phase {number}: {', '.join(phase)}")
        for step in (s for s in report.steps if s.database in phase):
            flags = [
                f
                for f, on in (
                    ("irreversible", step.irreversible),
                    ("non-transactional", bool(step.non_transactional)),
                )
                if on
            ]
            took = f" {step.duration_seconds:.2f}s" if step.duration_seconds is not None else ""
            resume = f" (resumes at statement {step.start + 1})" if step.start else ""
            output.stdout.print(
                f"  {step.database} {step.version}_{step.name} {step.direction}: "
                f"{step.status}{took}{resume}" + (f" [{', '.join(flags)}]" if flags else "")
            )
            for warning in step.warnings:
                output.stdout.print(f"    warning: {warning}")
            if sql:
                for index, statement in enumerate(step.statements):
                    mark = " (outside a transaction)" if index in step.non_transactional else ""
                    output.stdout.print(f"    [{index + 1}]{mark} {statement}")
            if step.error:
                output.stdout.print(f"    error: {step.error}")
        snapshot = [
            f"{db}: {sid[:8]}" for db, sid in report.snapshots.items() if db in phase and sid
        ]
        if snapshot:
            output.stdout.print(f"  pre-migration snapshots: {', '.join(snapshot)}")
    for note in report.notes:
        output.stderr.print(f"note: {note}")
    if report.error:
        output.stderr.print(f"FAILED: {report.error}")


@app.command("plan")
def plan_cmd(
    ctx: typer.Context,
    databases: Databases = None,
    to: ToOpt = None,
    sql: Annotated[bool, typer.Option("--sql", help="Show every statement.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings are errors (exit 1).")] = False,
    json_output: JsonOpt = False,
) -> None:
    """The phases in order and what each step runs: irreversible and
    non-transactional steps, lint warnings (destructive statements; squawk
    for PostgreSQL). Changes nothing."""
    with _project(state(ctx)) as project:
        report, _steps = plan(project, databases, to=to)
    warnings = sum(len(s.warnings) for s in report.steps)
    if strict and warnings:
        report.ok, report.error = False, f"{warnings} lint warning(s) with --strict"
    if json_output:
        output.emit_json(report.as_dict(sql=sql))
    else:
        _render(report, sql=sql)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


@app.command("up")
def up_cmd(
    ctx: typer.Context,
    databases: Databases = None,
    to: ToOpt = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print what would run; PostgreSQL "
            "and SQLite also run it in a rolled-back transaction.",
        ),
    ] = False,
    lock_timeout: LockTimeout = DEFAULT_LOCK_TIMEOUT,
    lease_ttl: LeaseTtl = DEFAULT_TTL,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Migrate although the latest snapshot "
            "is older than the rpo or the last drill failed (recorded).",
        ),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Apply pending migrations, phase by phase, each database backed up first."""
    st = state(ctx)
    names = list(databases or [])

    def action() -> RunReport:
        repos, catalog = st.repos(), _catalog(st)
        with _project(st) as project:
            return up(
                project,
                names or None,
                to=to,
                dry_run=dry_run,
                lock_timeout=lock_timeout,
                ttl=lease_ttl,
                force=force,
                gate=lambda name: gate.check_gate(repos, catalog, name),
                before_change=lambda name, plan_id: gate.snapshot_before(repos, name, plan_id),
            )

    report = _recorded(st, "dry-run" if dry_run else "up", names, action)
    _finish(report, json_output)


def _finish(report: RunReport, json_output: bool) -> None:
    if json_output:
        output.emit_json(report.as_dict())
    else:
        _render(
            report, sql=report.command == "up" and any(s.status == "dry-run" for s in report.steps)
        )
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


@app.command("down")
def down_cmd(
    ctx: typer.Context,
    database: Annotated[str, typer.Argument(help="Inventory database.", metavar="DATABASE")],
    to: Annotated[int, typer.Option("--to", help="Revert every version above V.", metavar="V")],
    lock_timeout: LockTimeout = DEFAULT_LOCK_TIMEOUT,
    lease_ttl: LeaseTtl = DEFAULT_TTL,
    json_output: JsonOpt = False,
) -> None:
    """Revert DATABASE to version V through the down sections (backed up first)."""
    st = state(ctx)

    def action() -> RunReport:
        repos = st.repos()
        with _project(st) as project:
            return down(
                project,
                database,
                to,
                lock_timeout=lock_timeout,
                ttl=lease_ttl,
                before_change=lambda name, plan_id: gate.snapshot_before(repos, name, plan_id),
            )

    _finish(_recorded(st, "down", [database], action), json_output)


@app.command("validate")
def validate_cmd(
    ctx: typer.Context, databases: Databases = None, json_output: JsonOpt = False
) -> None:
    """Exit 1 on drift: an applied file changed or missing, a pending version
    older than the current one, an interrupted migration whose statements
    changed, an INVALID index."""
    with _project(state(ctx)) as project:
        states = validate(project, databases)
    problems = [f"{s.database}: {p}" for s in states for p in s.drift]
    if json_output:
        output.emit_json({"ok": not problems, "databases": [s.as_dict() for s in states]})
    else:
        for problem in problems:
            output.stdout.print(f"DRIFT {problem}")
        if not problems:
            output.stdout.print(f"ok: {len(states)} database(s), no drift")
    if problems:
        raise typer.Exit(EXIT_FAILED)


@app.command("baseline")
def baseline_cmd(
    ctx: typer.Context,
    database: Annotated[str, typer.Argument(help="Inventory database.", metavar="DATABASE")],
    version: Annotated[int, typer.Argument(help="The version it is at.", metavar="V")],
    lock_timeout: LockTimeout = DEFAULT_LOCK_TIMEOUT,
) -> None:
    """Adopt an existing database at version V: files up to V count as applied."""
    st = state(ctx)

    def action() -> dict[str, Any]:
        with _project(st) as project:
            return baseline(project, database, version, lock_timeout=lock_timeout).as_dict()

    row = _recorded(st, "baseline", [database], action)
    output.stdout.print(f"{database}: baseline at version {row['version']}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="migrate")
