"""backup, snapshots, restore, verify, health."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from dbfleet import output
from dbfleet.cli.context import state
from dbfleet.cli.recording import Recorder, fill_backup
from dbfleet.config import Inventory
from dbfleet.engines.base import HealthSample, PointInTimeRequest
from dbfleet.engines.names import is_database
from dbfleet.engines.registry import engine_for, health_sampler, point_in_time, require_database
from dbfleet.errors import EXIT_FAILED, EXIT_INTEGRITY, UsageError
from dbfleet.operations.backup import backup_many
from dbfleet.operations.restore import restore_snapshot, verify_snapshot

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def backup(
    ctx: typer.Context,
    databases: Annotated[
        list[str] | None,
        typer.Argument(help="Inventory databases to back up.", metavar="DATABASE..."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Back up every inventory database.")] = False,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Tag the snapshots.", metavar="TAG")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Back up databases into their repositories.

    The dump streams through chunking, compression and encryption straight
    into the repository. A dump tool that fails fails the backup, and no
    snapshot is recorded. With several databases, each is attempted; the exit
    code is 1 if any failed.

    Redis: the default logical mode is not a point-in-time copy (each batch of
    keys is atomic; keys changed during the scan may or may not be included);
    `options.mode: rdb` takes a point-in-time copy of the whole instance.
    """
    st = state(ctx)
    inventory = st.inventory()
    if all_ and databases:
        raise UsageError("give database names or --all, not both")
    # --all: every database; a connection pool entry (pgbouncer) holds no data
    data_entries = [n for n, db in inventory.databases.items() if is_database(db.engine)]
    names = data_entries if all_ else list(dict.fromkeys(databases or []))
    for name in names:
        require_database(name, inventory.database(name))
    if all_ and not names:
        where = inventory.source or "the inventory"
        raise UsageError(f"--all: {where} has no databases to back up")
    if not names:
        raise UsageError("name the databases to back up, or pass --all")
    if any(not t.strip() for t in tag or []):
        raise UsageError("--tag must not be empty")
    for name in names:
        inventory.database(name)
    recorder = Recorder(st, "backup")
    results = []
    with output.backup_progress(output.interactive(json_output)) as progress_for:
        for name in names:
            with recorder.run(name, name) as run:
                mine = backup_many(st.repos(), [name], tags=tag, progress_for=progress_for)
                results += mine
                fill_backup(run, mine)
    if json_output:
        output.emit_json([r.as_dict() for r in results])
    else:
        for r in results:
            if r.ok:
                output.stdout.print(
                    f"{r.database}: snapshot {r.snapshot[:8] if r.snapshot else ''} "
                    f"{output.human_bytes(r.size)} read, {output.human_bytes(r.added_bytes)} "
                    f"added, {r.duration_seconds:.1f}s"
                )
            else:
                output.stderr.print(f"{r.database}: FAILED: {r.error}")
    if not all(r.ok for r in results):
        raise typer.Exit(EXIT_FAILED)


def snapshots(
    ctx: typer.Context,
    database: Annotated[
        str | None, typer.Argument(help="Only this database.", metavar="DATABASE")
    ] = None,
    repository: Annotated[
        str | None, typer.Option("--repo", help="Only this repository.", metavar="NAME")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """List snapshots, oldest first."""
    st = state(ctx)
    inventory = st.inventory()
    if database:
        inventory.database(database)
    names = [repository] if repository else list(inventory.repositories)
    if database and not repository:
        names = [str(inventory.database(database).repository)]
    server_entry = database is not None and inventory.database(database).all_databases
    found = []
    for name in names:
        for snap in st.repos().get(name).list_snapshots(None if server_entry else database):
            if server_entry and not snap.database.startswith(f"{database}/"):
                continue
            found.append({**snap.summary(), "repository": name})
    found.sort(key=lambda s: str(s["time"]))
    if json_output:
        output.emit_json(found)
        return
    output.table(
        ["ID", "Time", "Database", "Engine", "Size", "Added", "Repository"],
        [
            (
                s["short_id"],
                str(s["time"])[:19].replace("T", " "),
                s["database"],
                s["engine"],
                output.human_bytes(int(s["size"])),
                output.human_bytes(int(s["added_bytes"])),
                s["repository"],
            )
            for s in found
        ],
    )


def restore(
    ctx: typer.Context,
    snapshot: Annotated[
        str,
        typer.Argument(
            help="Snapshot: <id>, <database>:latest, <database>:<id>.", metavar="SNAPSHOT"
        ),
    ],
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="NAME",
            help="Inventory database to restore into, or a new database name on the "
            "source's server (SQLite: a file name next to the source, or an absolute path).",
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", metavar="URL", help="Connection URL (or SQLite path) to restore into."
        ),
    ] = None,
    password_env: Annotated[
        str | None,
        typer.Option(
            "--password-env",
            metavar="VAR",
            help="With --to: environment variable with the password.",
        ),
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table",
            metavar="TABLE",
            help="Restore only this table (repeatable), e.g. public.orders; "
            "Redis: a key pattern such as 'user:*'.",
        ),
    ] = None,
    clean: Annotated[
        bool,
        typer.Option(
            "--clean",
            help="Drop the objects the backup contains before recreating them "
            "(other objects stay). Without it, restoring over existing objects fails "
            "and changes nothing.",
        ),
    ] = False,
    include_globals: Annotated[
        bool, typer.Option("--globals", help="PostgreSQL: also restore roles and tablespaces.")
    ] = False,
    to_datadir: Annotated[
        Path | None,
        typer.Option(
            "--to-datadir",
            metavar="DIR",
            help="PostgreSQL point-in-time restore: the whole cluster into a new data "
            "directory, from a base backup and the WAL archive (with --time, --lsn or --latest; "
            "SNAPSHOT is the cluster's inventory name).",
        ),
    ] = None,
    time: Annotated[
        str | None,
        typer.Option(
            "--time", metavar="TIME", help="With --to-datadir: e.g. '2026-11-20 14:03:00+00'."
        ),
    ] = None,
    lsn: Annotated[
        str | None, typer.Option("--lsn", metavar="LSN", help="With --to-datadir: a WAL position.")
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="With --to-datadir: all archived WAL.")
    ] = False,
    start: Annotated[
        bool,
        typer.Option("--start", help="With --to-datadir: start a server, wait for recovery."),
    ] = False,
    port: Annotated[
        int | None, typer.Option("--port", metavar="PORT", help="With --to-datadir --start.")
    ] = None,
    accept_wal_gap: Annotated[
        bool,
        typer.Option(
            "--accept-wal-gap",
            help="With --to-datadir --latest: recover up to a hole in the WAL archive.",
        ),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Restore a snapshot into a database (never over the source unless named).

    With --to-datadir (PostgreSQL): restore the cluster to a point in time
    into a new data directory (see docs/pitr-postgresql.md).
    """
    st = state(ctx)
    _refuse_pools(st.inventory(), snapshot, target)
    if to_datadir or time or lsn or latest or start or port is not None:
        name = snapshot.partition(":")[0]
        pitr = point_in_time(st.inventory().database(name).engine)
        request = PointInTimeRequest(
            name, time=time, position=lsn, latest=latest, target=target, to=to,
            password_env=password_env, clean=clean, tables=tuple(table or ()),
            include_globals=include_globals, datadir=to_datadir, start=start, port=port,
            accept_gap=accept_wal_gap,
        )  # fmt: skip
        with Recorder(st, "restore").run(name, name) as run:
            recovered = pitr.restore_to_point(st.inventory(), st.repos(), request)
            run.details = {"point_in_time": recovered.as_dict()}
        if json_output:
            output.emit_json(recovered.as_dict())
        else:
            pitr.render(recovered)
        return
    with (
        Recorder(st, "restore").run(snapshot.partition(":")[0]) as run,
        output.byte_progress(output.interactive(json_output), "restore", None) as advance,
    ):
        result = restore_snapshot(
            st.repos(),
            snapshot,
            target=target,
            to=to,
            password_env=password_env,
            tables=tuple(table or ()),
            clean=clean,
            include_globals=include_globals,
            on_bytes=advance,
            on_total=advance.total,
        )
        run.target = run.database = result.database
        run.bytes, run.snapshot = result.bytes, result.snapshot
        run.details = {"into": result.target, "tables": result.tables}
    if json_output:
        output.emit_json(result.as_dict())
    else:
        what = f" (tables: {', '.join(result.tables)})" if result.tables else ""
        output.stdout.print(
            f"restored snapshot {result.snapshot[:8]} of {result.database} into "
            f"{result.target}{what}: {output.human_bytes(result.bytes)} in "
            f"{result.duration_seconds:.1f}s"
        )


def verify(
    ctx: typer.Context,
    snapshot: Annotated[
        str, typer.Argument(help="Snapshot: <id>, <database>:latest, ...", metavar="SNAPSHOT")
    ],
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the scratch database for inspection.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Restore into a scratch target and compare data fingerprints.

    The scratch target is the database's `scratch:` from the inventory, or a
    temporary database next to the source, dropped afterwards. Exit code 3
    when the restored data differs from what was backed up. Redis RDB
    snapshots are loaded into a throw-away local redis-server.
    """
    st = state(ctx)
    _refuse_pools(st.inventory(), snapshot)
    with (
        Recorder(st, "verify").run(snapshot.partition(":")[0]) as run,
        output.byte_progress(output.interactive(json_output), "verify", None) as advance,
    ):
        result = verify_snapshot(
            st.repos(), snapshot, keep=keep, on_bytes=advance, on_total=advance.total
        )
        run.target = run.database = result.database
        run.snapshot, run.ok = result.snapshot, result.ok
        run.details = {"verified": [result.as_dict()]}
        if not result.ok:
            run.error = "restored data differs from the backup: " + "; ".join(
                result.differences[:3]
            )
    if json_output:
        output.emit_json(result.as_dict())
    elif result.ok:
        output.stdout.print(
            f"snapshot {result.snapshot[:8]} of {result.database}: OK, "
            f"{result.tables_compared} tables match; restore took {result.restore_seconds:.1f}s"
        )
    else:
        output.stderr.print(f"snapshot {result.snapshot[:8]} of {result.database}: MISMATCH")
        for line in result.differences:
            output.stderr.print(f"  {line}")
    if not result.ok:
        raise typer.Exit(EXIT_INTEGRITY)


def _refuse_pools(inventory: Inventory, *names: str | None) -> None:
    """A connection pool entry named as a snapshot's database or a target
    is refused up front (exit 2), not searched for snapshots."""
    for name in names:
        head = (name or "").partition(":")[0]
        if head in inventory.databases:
            require_database(head, inventory.databases[head])


def health(
    ctx: typer.Context,
    databases: Annotated[
        list[str] | None, typer.Argument(help="Databases (default: all).", metavar="DATABASE...")
    ] = None,
    sample: Annotated[
        bool,
        typer.Option(
            "--sample",
            help="Take a health sample instead (what serve's health monitor records: "
            "connections, cache, locks, lag, size; docs/health.md).",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="With --sample: seconds per sample.")
    ] = 10.0,
    json_output: JsonOpt = False,
) -> None:
    """Check that databases are reachable; show version, size and key indicators.
    A connection pool entry (engine pgbouncer) is always sampled. Exit 1 when
    one is not reachable."""
    inventory = state(ctx).inventory()
    names = databases or list(inventory.databases)
    configs = {name: inventory.database(name) for name in names}
    if sample or not all(is_database(c.engine) for c in configs.values()):
        samples = [health_sampler(n, c).sample(timeout) for n, c in configs.items()]
        if sample or json_output:
            _show_samples(samples, json_output)
            if not all(s.up for s in samples):
                raise typer.Exit(EXIT_FAILED)
            return
    results = []
    for name, config in configs.items():
        if is_database(config.engine):
            h = engine_for(config).health()
            results.append({"database": name, **h.__dict__})
        else:
            s = next(s for s in samples if s.database == name)
            details = {k: v for k, v in (s.pool or {}).items() if k != "per_pool"}
            results.append({"database": name, "ok": s.up, "version": s.version,
                            "size_bytes": None, "details": details, "error": s.error})  # fmt: skip
    if json_output:
        output.emit_json(results)
    else:
        output.table(
            ["Database", "OK", "Version", "Size", "Details / error"],
            [
                (
                    r["database"],
                    "yes" if r["ok"] else "NO",
                    r["version"],
                    output.human_bytes(r["size_bytes"]) if r["size_bytes"] is not None else "",
                    r["error"] or ", ".join(f"{k}={v}" for k, v in r["details"].items()),
                )
                for r in results
            ],
        )
    if not all(r["ok"] for r in results):
        raise typer.Exit(EXIT_FAILED)


def _show_samples(samples: list[HealthSample], json_output: bool) -> None:
    if json_output:
        output.emit_json([{**asdict(s), "taken_at": s.taken_at.isoformat()} for s in samples])
        return

    def num(value: float | None) -> str:
        return "" if value is None else f"{value:g}"

    output.table(
        ["Database", "Up", "Version", "Connections", "Lag", "Size", "Error"],
        [
            (
                s.database,
                "yes" if s.up else "NO",
                s.version or "",
                f"{num(s.connections)}/{num(s.connections_max)}" if s.connections else "",
                num(s.replication_lag_seconds),
                output.human_bytes(int(s.size_bytes)) if s.size_bytes is not None else "",
                s.error or "",
            )
            for s in samples
        ],
    )


def register(app: typer.Typer) -> None:
    app.command()(backup)
    app.command()(snapshots)
    app.command()(restore)
    app.command()(verify)
    app.command()(health)
