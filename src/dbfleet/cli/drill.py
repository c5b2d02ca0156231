"""drill, drills: restore drills and their record (docs/drills.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from dbfleet import output
from dbfleet.catalog import Catalog, Run
from dbfleet.cli.context import resolve_catalog, state
from dbfleet.cli.recording import cli_actor
from dbfleet.config import Inventory, config_path
from dbfleet.engines.names import is_database
from dbfleet.engines.registry import require_database
from dbfleet.errors import EXIT_FAILED, EXIT_INTEGRITY, UsageError
from dbfleet.notify import Channel, build_channels, check_channels
from dbfleet.operations.common import Repositories
from dbfleet.operations.drill import (
    INTEGRITY_RESULTS,
    KIND,
    DrillResult,
    alert,
    drill_targets,
    exit_code,
    record,
)
from dbfleet.schedule.config import Scheduling, format_span
from dbfleet.schedule.inventory import load

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
CatalogOpt = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        metavar="FILE",
        help="Job catalog (default: serve.catalog, else <inventory>.catalog.db next to it).",
    ),
]


def _inventory(ctx: typer.Context, catalog: Path | None) -> tuple[Inventory, Scheduling, Path]:
    """The inventory, its scheduling settings and the job catalog's path."""
    inventory_path = config_path(state(ctx).config).resolve()
    inventory, scheduling = load(inventory_path)
    return inventory, scheduling, resolve_catalog(catalog, inventory_path, scheduling)


def _channels(configs: Any) -> list[Channel]:
    """The notification channels that have their secrets; a warning for the others."""
    usable = []
    for channel in build_channels(configs):
        problems = check_channels([channel])
        if problems:
            output.say(f"dbfleet: warning: not alerting via {channel.name}: {problems[0]}")
        else:
            usable.append(channel)
    return usable


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s"


def _print(r: DrillResult) -> None:
    what = f"{r.database}: {r.result.upper().replace('_', ' ')}"
    snap = f"snapshot {r.snapshot[:8]}" if r.snapshot else "no snapshot"
    objective = (
        f" (objective {format_span(timedelta(seconds=r.rto_objective_seconds))})"
        if r.rto_objective_seconds is not None
        else ""
    )
    if r.rto_seconds is not None:
        detail = (
            f"{snap}, RTO {_seconds(r.rto_seconds)}{objective}: restore "
            f"{_seconds(r.restore_seconds)} + fingerprint {_seconds(r.fingerprint_seconds)}, "
            f"{r.tables_compared} tables compared, {output.human_bytes(r.bytes)} restored"
        )
    else:
        detail = f"{snap}, not restored" if r.snapshot else ""
    console = output.stdout if r.ok else output.stderr
    console.print(f"{what}: {detail}".rstrip(": ") + ("" if r.ok else f"\n  {r.reason}"))
    for line in r.differences[3:]:
        output.stderr.print(f"  {line}")


def drill(
    ctx: typer.Context,
    databases: Annotated[
        list[str] | None,
        typer.Argument(help="Inventory databases to drill.", metavar="DATABASE..."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Drill every inventory database.")] = False,
    snapshot: Annotated[
        str | None,
        typer.Option("--snapshot", metavar="ID", help="Drill this snapshot instead of the latest."),
    ] = None,
    catalog: CatalogOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Restore drill: restore the latest (or --snapshot) snapshot into a
    scratch target, compare fingerprints, measure the RTO, clean up, record
    the result in the job catalog, and alert on failure.

    The scratch target is the database's `scratch:` (an inventory database,
    possibly on another server, or a database name on the same server), else
    a temporary database next to the source. A server entry drills each
    member's latest snapshot. The RTO (restore + fingerprint of the restored
    data) is compared with the database's `rto:`. An engine without scratch
    targets, or a snapshot without a fingerprint, is `unsupported`, never a
    pass.

    Exit code: 0 every drill passed; 3 restored data differed from a backup,
    or the backup's data in the repository is corrupt (or the repository
    could not be opened: wrong passphrase, locked); 1 any other drill did
    not pass (failed, RTO exceeded, unsupported).
    """
    inventory, scheduling, path = _inventory(ctx, catalog)
    if all_ and (databases or snapshot):
        raise UsageError("--all drills every database's latest snapshot: no names, no --snapshot")
    data_entries = [n for n, db in inventory.databases.items() if is_database(db.engine)]
    names = data_entries if all_ else list(dict.fromkeys(databases or []))
    if all_ and not names:
        raise UsageError(f"--all: {inventory.source or 'the inventory'} has no databases to drill")
    if not names and snapshot is None:
        raise UsageError("name the databases to drill, or pass --all")
    if snapshot is not None and len(names) > 1:
        raise UsageError("--snapshot drills one snapshot: name at most one database")
    for name in names:
        require_database(name, inventory.database(name))
    channels = _channels(scheduling.notifications)
    with Catalog(path) as cat:
        with output.byte_progress(output.interactive(json_output), "drill", None) as advance:
            drilled = drill_targets(
                Repositories(inventory), names, snapshot=snapshot, on_bytes=advance
            )
        for target, results in drilled.items():
            started = datetime.fromisoformat(results[0].started_at)
            run = record(cat, target, results, started, actor=cli_actor())
            alert(cat, channels, run, now=datetime.now(UTC), repeat=scheduling.serve.alert_repeat)
    everything = [r for results in drilled.values() for r in results]
    if json_output:
        output.emit_json([r.as_dict() for r in everything])
    else:
        for r in everything:
            _print(r)
    code = exit_code(everything)
    if code:
        raise typer.Exit(code)


# -- the drills report -------------------------------------------------------


@dataclass
class DrillStatus:
    """One database's last drill: the ``drills --json`` object (docs/drills.md)."""

    database: str
    entry: str
    engine: str
    result: str = "never"
    last_drill: str | None = None
    rto_seconds: float | None = None
    rto_objective_seconds: float | None = None
    rto_objective: str = "-"
    within_objective: bool | None = None
    snapshot: str | None = None
    run_id: int | None = None
    trigger: str | None = None
    status: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.result == "pass"}


Found = tuple[Run, dict[str, Any] | None]


def latest_drills(catalog: Catalog) -> dict[str, Found]:
    """Per drilled database, its newest finished drill run, with the drill's
    own entry in that run's details (``None`` when the run timed out, was
    aborted or failed before any drill started)."""
    latest: dict[str, Found] = {}
    for run in catalog.runs(kind=KIND, limit=None):
        if run.status not in ("ok", "failed", "timeout", "aborted"):
            continue
        drills = (run.details or {}).get("drills") or []
        for item in drills:
            latest.setdefault(str(item["database"]), (run, item))
        if not drills:
            latest.setdefault(run.target, (run, None))
    return latest


def _status(row: DrillStatus, objective: timedelta | None, found: Found | None) -> DrillStatus:
    if objective is not None:
        row.rto_objective_seconds = objective.total_seconds()
        row.rto_objective = format_span(objective)
    if found is None:
        return row
    run, item = found
    row.run_id, row.trigger, row.status = run.id, run.trigger, run.status
    if item is None:
        row.result = "pass" if run.status == "ok" else "failed"
        row.last_drill, row.snapshot, row.error = run.started_at, run.snapshot, run.error
    else:
        row.result, row.last_drill = str(item["result"]), item.get("started_at")
        row.rto_seconds, row.snapshot = item.get("rto_seconds"), item.get("snapshot")
        row.error = item.get("reason")
    if row.rto_seconds is not None and row.rto_objective_seconds is not None:
        row.within_objective = row.rto_seconds <= row.rto_objective_seconds
    return row


def drill_status(
    inventory: Inventory, catalog: Catalog | None, databases: list[str] | None = None
) -> list[DrillStatus]:
    """Each database's last drill, result and RTO against its objective (as
    the inventory says now). A server entry gets one row per drilled member
    (and its own row when its newest drill run failed before any member); a
    database never drilled gets result ``never``."""
    latest = latest_drills(catalog) if catalog is not None else {}
    rows: list[DrillStatus] = []
    for name in databases or [n for n, d in inventory.databases.items() if is_database(d.engine)]:
        entry, member = inventory.split_member(name)
        db = inventory.database(name)
        members = []
        if db.all_databases and member is None:
            members = sorted(k for k in latest if k.startswith(f"{name}/"))
        for key in members:
            rows.append(_status(DrillStatus(key, entry, db.engine), db.rto, latest[key]))
        newest_member = max((latest[m][0].id for m in members), default=-1)
        if not members or (name in latest and latest[name][0].id > newest_member):
            rows.append(_status(DrillStatus(name, entry, db.engine), db.rto, latest.get(name)))
    return rows


def drills(
    ctx: typer.Context,
    databases: Annotated[
        list[str] | None, typer.Argument(metavar="DATABASE...", help="Databases (default: all).")
    ] = None,
    catalog: CatalogOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Per database: the last drill, its result, and its RTO against the
    database's RTO objective (`rto:`), read from the job catalog. Exit code 3
    when the last drill of any database found a mismatch or corrupt data, else
    1 when one did not pass; never drilled is listed, not an error."""
    inventory, _scheduling, path = _inventory(ctx, catalog)
    for name in databases or []:
        inventory.database(name)
    if path.exists():
        with Catalog(path, create=False) as cat:
            rows = drill_status(inventory, cat, databases)
    else:
        rows = drill_status(inventory, None, databases)
    if json_output:
        output.emit_json([r.as_dict() for r in rows])
    else:
        output.table(
            ["Database", "Last drill", "Result", "RTO", "Objective", "Within", "Snapshot", "Error"],
            [
                (
                    r.database,
                    (r.last_drill or "never")[:16].replace("T", " "),
                    r.result.upper() if r.result not in ("pass", "never") else r.result,
                    _seconds(r.rto_seconds),
                    r.rto_objective,
                    {True: "yes", False: "NO", None: "-"}[r.within_objective],
                    (r.snapshot or "")[:8],
                    (r.error or "").splitlines()[0][:80] if r.error else "",
                )
                for r in rows
            ],
        )
    if any(r.result in INTEGRITY_RESULTS for r in rows):
        raise typer.Exit(EXIT_INTEGRITY)
    if any(r.result not in ("pass", "never") for r in rows):
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command()(drill)
    app.command()(drills)
