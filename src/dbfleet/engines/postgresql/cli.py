"""basebackup, wal-push, wal-fetch, wal-list, restore-pitr: PostgreSQL PITR
commands, and ``restore --to-datadir`` as the engine's point-in-time
capability (:data:`POINT_IN_TIME`). The registry adds these commands to
``dbfleet``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dbfleet import output
from dbfleet.cli.context import state
from dbfleet.config import Inventory
from dbfleet.engines.base import PointInTimeRequest, PointInTimeResult
from dbfleet.engines.postgresql import basebackup as pg_base
from dbfleet.engines.postgresql import pitr as pg_restore
from dbfleet.engines.postgresql import wal as pg_wal
from dbfleet.errors import UsageError
from dbfleet.operations.common import Repositories

FETCH_FAILED = 126
"""wal-fetch's exit status for failures: above 125, so PostgreSQL aborts recovery."""

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="NAME",
        help="Inventory entry of the cluster (default: the only PostgreSQL entry).",
    ),
]


def cluster_name(inventory: Inventory, name: str | None) -> str:
    if name is not None:
        pg_base.cluster_config(inventory, name)
        return name
    names = sorted(n for n, db in inventory.databases.items() if db.engine == "postgresql")
    if len(names) != 1:
        raise UsageError(
            "name the cluster with --db",
            hint=f"PostgreSQL entries: {', '.join(names) or 'none'}",
        )
    return names[0]


def basebackup(
    ctx: typer.Context,
    database: Annotated[str, typer.Argument(metavar="DATABASE", help="Cluster entry.")],
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Tag the snapshot.", metavar="TAG")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Physical base backup of a PostgreSQL cluster (pg_basebackup, streamed).

    The WAL it needs comes from the archive: the server must run with
    archive_mode = on and archive_command = 'dbfleet wal-push --db NAME %p'.
    """
    st = state(ctx)
    config = pg_base.cluster_config(st.inventory(), database)
    snapshot = pg_base.take_base_backup(
        st.repos().for_database(database), database, config, tags=tag
    )
    summary = {**snapshot.summary(), "kind": pg_base.KIND}
    if json_output:
        output.emit_json(summary)
        return
    point = snapshot.consistency_point or {}
    output.stdout.print(
        f"{database}: base backup {snapshot.short_id} {output.human_bytes(snapshot.size)} "
        f"read, {output.human_bytes(snapshot.added_bytes)} added; WAL {point.get('start_lsn')}"
        f" .. {point.get('stop_lsn')} (timeline {point.get('timeline')})"
    )


def wal_push(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(metavar="PATH", help="%p: the file to archive.")],
    db: DbOpt = None,
    ahead: Annotated[
        int,
        typer.Option(
            "--ahead",
            min=0,
            metavar="N",
            help="Also push up to N other files waiting in archive_status (marks them done).",
        ),
    ] = pg_wal.DEFAULT_AHEAD,
    workers: Annotated[
        int, typer.Option("--workers", min=1, metavar="N", help="Parallel pushes.")
    ] = pg_wal.DEFAULT_WORKERS,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say what was pushed.")] = False,
) -> None:
    """archive_command: archive one WAL file (idempotent; never overwrites).

    Exit 0 when the file is archived, also when identical content already
    was; non-zero when it could not be, or the archive holds different
    content under the name (then nothing is overwritten).
    """
    st = state(ctx)
    name = cluster_name(st.inventory(), db)
    result = pg_wal.push(st.repos().for_database(name), name, path, ahead=ahead, workers=workers)
    if verbose:
        what = "stored" if result.stored else "already archived"
        extra = f"; also {len(result.ahead)} waiting" if result.ahead else ""
        output.stderr.print(f"{result.file}: {what} in {result.seconds:.2f}s{extra}")


def wal_fetch(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="%f: the WAL file name.")],
    path: Annotated[Path, typer.Argument(metavar="PATH", help="%p: where to write it.")],
    db: DbOpt = None,
    prefetch: Annotated[
        int,
        typer.Option(
            "--prefetch",
            min=0,
            metavar="N",
            help=f"Also fetch the next N segments into pg_wal/{pg_wal.PREFETCH_DIR}/.",
        ),
    ] = 0,
) -> None:
    """restore_command: write an archived WAL file to PATH.

    Exit 1 without a message when the file is not archived (PostgreSQL asks
    for files that may not exist: timeline history, the end of the archive).
    Any other failure exits 126, which PostgreSQL treats as fatal: recovery
    stops instead of taking the failure for the end of the archive.
    """
    try:
        st = state(ctx)
        name = cluster_name(st.inventory(), db)
        size = pg_wal.fetch(st.repos().for_database(name), name, file, path, prefetch=prefetch)
    except Exception as exc:  # noqa: BLE001 - every failure must stop recovery
        sys.stderr.write(f"dbfleet: error: wal-fetch {file}: {exc}\n")
        raise typer.Exit(FETCH_FAILED) from None
    if size is None:
        raise typer.Exit(1)


def wal_list(
    ctx: typer.Context,
    database: Annotated[str | None, typer.Argument(metavar="DATABASE")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Summarise a cluster's WAL archive and base backups."""
    st = state(ctx)
    name = cluster_name(st.inventory(), database)
    repo = st.repos().for_database(name)
    objects = pg_wal.list_wal(repo, name)
    segments = [o for o in objects if o.position is not None]
    stored = sum(o.size for o in objects)
    first = segments[0].file if segments else None
    last = segments[-1].file if segments else None
    backups = [pg_base.describe(s) for s in pg_base.base_backups(repo, name)]
    if json_output:
        output.emit_json(
            {
                "database": name,
                "files": len(objects),
                "stored_bytes": stored,
                "first": first,
                "last": last,
                "history": [o.file for o in objects if o.position is None],
                "base_backups": backups,
            }
        )
        return
    output.stdout.print(
        f"{name}: {len(objects)} WAL files ({output.human_bytes(stored)} stored), "
        f"{first or '-'} .. {last or '-'}"
    )
    for b in backups:
        output.stdout.print(
            f"  base backup {str(b['snapshot'])[:8]}  {b['time'][:19]}  "
            f"{b['start_lsn']} .. {b['stop_lsn']}"
        )


AcceptGapOpt = Annotated[
    bool,
    typer.Option(
        "--accept-wal-gap",
        help="With --latest: recover up to a hole in the WAL archive instead of refusing.",
    ),
]


def restore_pitr(
    ctx: typer.Context,
    database: Annotated[str, typer.Argument(metavar="DATABASE", help="Cluster entry.")],
    to_datadir: Annotated[
        Path, typer.Option("--to-datadir", metavar="DIR", help="New or empty data directory.")
    ],
    time: Annotated[
        str | None,
        typer.Option(
            "--time", metavar="TIME", help="Recover to this time, e.g. '2026-11-20 14:03:00+00'."
        ),
    ] = None,  # fmt: skip
    lsn: Annotated[
        str | None, typer.Option("--lsn", metavar="LSN", help="Recover to this WAL position.")
    ] = None,
    latest: Annotated[
        bool, typer.Option("--latest", help="Recover everything that was archived.")
    ] = False,
    start: Annotated[
        bool, typer.Option("--start", help="Start a server and wait until it has recovered.")
    ] = False,
    port: Annotated[int | None, typer.Option("--port", metavar="PORT")] = None,
    owner: Annotated[
        str | None,
        typer.Option("--owner", metavar="USER", help="OS user of the files (root: postgres)."),
    ] = None,
    keep_archiving: Annotated[
        bool,
        typer.Option(
            "--keep-archiving",
            help="Leave archive_mode as backed up (only when this copy replaces the cluster).",
        ),
    ] = False,
    accept_wal_gap: AcceptGapOpt = False,
    json_output: JsonOpt = False,
) -> None:
    """Restore a PostgreSQL cluster to a point in time into a data directory."""
    st = state(ctx)
    result = restore_pitr_command(
        st.inventory(), st.repos(), database, to_datadir,
        pg_restore.RecoveryTarget.of(time, lsn, latest),
        start=start, port=port, owner=owner, keep_archiving=keep_archiving,
        accept_wal_gap=accept_wal_gap,
    )  # fmt: skip
    render(result, json_output)


def restore_pitr_command(
    inventory: Inventory,
    repos: Repositories,
    database: str,
    datadir: Path,
    target: pg_restore.RecoveryTarget,
    *,
    start: bool = False,
    port: int | None = None,
    owner: str | None = None,
    keep_archiving: bool = False,
    accept_wal_gap: bool = False,
) -> pg_restore.PitrResult:
    """The shared path of ``restore-pitr`` and ``restore --to-datadir``."""
    pg_base.cluster_config(inventory, database)
    if inventory.source is None:
        raise UsageError("a point-in-time restore needs an inventory file (for restore_command)")
    return pg_restore.restore_to_datadir(
        repos.for_database(database), database, target, datadir,
        inventory=inventory.source, start=start, port=port, owner=owner,
        keep_archiving=keep_archiving, accept_wal_gap=accept_wal_gap,
    )  # fmt: skip


def render(result: pg_restore.PitrResult, json_output: bool) -> None:
    if json_output:
        output.emit_json(result.as_dict())
        return
    output.stdout.print(
        f"{result.database}: base backup {result.base_snapshot[:8]} laid out in "
        f"{result.datadir} ({output.human_bytes(result.bytes)}, {result.extract_seconds:.1f}s); "
        f"target {result.target}"
    )
    if result.wal_gap_after:
        output.stderr.print(
            f"warning: the WAL archive has a hole after {result.wal_gap_after}: "
            "recovery cannot go past it"
        )
    if result.started:
        output.stdout.print(
            f"server on port {result.port} recovered in {result.recovery_seconds:.1f}s: "
            f"{result.stop}; redo done at {result.redo_done_lsn}, last transaction "
            f"{result.last_transaction_time}, timeline {result.timeline}"
        )
    else:
        output.stdout.print("start it with: pg_ctl -D " + result.datadir + " start")


COMMANDS: dict[str, Callable[..., Any]] = {
    "basebackup": basebackup,
    "wal-push": wal_push,
    "wal-fetch": wal_fetch,
    "wal-list": wal_list,
    "restore-pitr": restore_pitr,
}


def register(app: typer.Typer) -> None:
    present = {c.name for c in app.registered_commands}
    for name, fn in COMMANDS.items():
        if name not in present:
            app.command(name)(fn)


class PostgreSQLPointInTime:
    """``restore ENTRY --to-datadir DIR --time/--lsn/--latest``: the
    :class:`~dbfleet.engines.base.PointInTime` capability of PostgreSQL."""

    def restore_to_point(
        self, inventory: Inventory, repos: Repositories, request: PointInTimeRequest
    ) -> pg_restore.PitrResult:
        if request.datadir is None:
            raise UsageError(
                "a PostgreSQL point-in-time restore recovers the whole cluster: "
                "give --to-datadir DIR with --time, --lsn or --latest"
            )
        if request.target or request.to or request.tables or request.clean:
            raise UsageError(
                "--to-datadir restores a whole cluster: "
                "--target, --to, --table, --clean and --globals do not apply"
            )
        if request.include_globals:
            raise UsageError("--to-datadir restores a whole cluster: --globals does not apply")
        return restore_pitr_command(
            inventory, repos, request.database, request.datadir,
            pg_restore.RecoveryTarget.of(request.time, request.position, request.latest),
            start=request.start, port=request.port, accept_wal_gap=request.accept_gap,
        )  # fmt: skip

    def render(self, result: PointInTimeResult) -> None:
        assert isinstance(result, pg_restore.PitrResult)
        render(result, json_output=False)


POINT_IN_TIME = PostgreSQLPointInTime()
