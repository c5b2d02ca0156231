"""binlog-ship, binlog-stream, restore-pitr-mysql: MySQL/MariaDB PITR
commands, and ``restore --time`` as the engine's point-in-time capability
(:data:`POINT_IN_TIME`). The registry adds these commands to ``dbfleet``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from dbfleet import output
from dbfleet.cli.context import state
from dbfleet.config import Inventory
from dbfleet.engines.base import PointInTimeRequest, PointInTimeResult
from dbfleet.engines.mysql.binlog import CaptureResult, capture_binlogs, stream_binlogs
from dbfleet.engines.mysql.pitr import (
    PitrResult,
    parse_target_time,
    plan_recovery,
    restore_to_time,
)
from dbfleet.errors import UsageError
from dbfleet.operations.common import Repositories

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
DatabaseArg = Annotated[
    str,
    typer.Argument(
        metavar="DATABASE",
        help="Inventory entry (mysql). Binlogs of a server entry cover all its databases.",
    ),
]
BinlogDirOpt = Annotated[
    str | None,
    typer.Option(
        "--binlog-dir",
        metavar="DIR",
        help="Ship the files from the server's binlog directory (with its .index file) "
        "instead of reading them over the replication protocol.",
    ),
]


def _file_line(entry: dict[str, Any]) -> str:
    return (
        f"  {entry['file']}: {output.human_bytes(int(entry['size']))}, {entry['events']} events, "
        f"{str(entry['first_event_time'])[:19]} .. {str(entry['last_event_time'])[:19]} "
        f"-> snapshot {str(entry['snapshot'])[:8]}"
    )


def _print_capture(result: CaptureResult) -> None:
    if result.note:
        output.say(f"{result.database}: {result.note}")
        return
    for entry in result.captured:
        output.stdout.print(_file_line(entry))
    output.stdout.print(
        f"{result.database}: captured {len(result.captured)} binlog file(s), "
        f"{output.human_bytes(result.bytes)} ({result.source}); {result.skipped} already there; "
        f"still open: {result.active}"
        if result.captured
        else f"{result.database}: nothing new ({result.skipped} closed files already captured; "
        f"still open: {result.active})"
    )


def binlog_ship(
    ctx: typer.Context,
    database: DatabaseArg,
    binlog_dir: BinlogDirOpt = None,
    flush: Annotated[
        bool,
        typer.Option(
            "--flush",
            help="FLUSH BINARY LOGS first, so that every change until now is captured "
            "(needs RELOAD / BINLOG ADMIN).",
        ),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="FILE",
            help="First binlog file to consider (default: the oldest dump's binlog file).",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Capture closed MySQL/MariaDB binlog files into the repository.

    Files already captured are skipped, so this may run as often as wanted
    (e.g. from cron); the file still being written is left for next time
    unless --flush closes it first.
    """
    result = capture_binlogs(
        state(ctx).repos(), database, binlog_dir=binlog_dir, flush=flush, since=since
    )
    if json_output:
        output.emit_json(result.as_dict())
    else:
        _print_capture(result)


def binlog_stream(
    ctx: typer.Context,
    database: DatabaseArg,
    binlog_dir: BinlogDirOpt = None,
    interval: Annotated[
        float, typer.Option("--interval", metavar="SECONDS", help="Seconds between rounds.")
    ] = 60.0,
    flush_every: Annotated[
        float | None,
        typer.Option(
            "--flush-every",
            metavar="SECONDS",
            help="Rotate the server's binlog this often, bounding how long a change waits "
            "to be captured (the recovery point objective).",
        ),
    ] = None,
    rounds: Annotated[
        int,
        typer.Option("--rounds", metavar="N", help="Stop after N rounds (0: run until stopped)."),
    ] = 0,
    json_output: JsonOpt = False,
) -> None:
    """Keep capturing binlog files as the server closes them.

    A failed round (server restarting, repository locked) is reported and
    retried at the next one.
    """

    def show(result: CaptureResult) -> None:
        if json_output:
            output.emit_json(result.as_dict())
        elif result.captured or result.note:
            _print_capture(result)

    def failed(exc: Exception) -> None:
        output.stderr.print(f"{database}: capture failed, retrying: {exc}")

    total = stream_binlogs(
        state(ctx).repos(), database, binlog_dir=binlog_dir, interval=interval,
        flush_every=flush_every, rounds=rounds, on_result=show, on_error=failed,
    )  # fmt: skip
    if not json_output:
        output.stdout.print(
            f"{database}: captured {total} binlog file(s)" if total else f"{database}: nothing new"
        )


def restore_pitr_mysql(
    ctx: typer.Context,
    database: DatabaseArg,
    time: Annotated[
        str,
        typer.Option(
            "--time",
            metavar="TIME",
            help="ISO 8601 with a UTC offset (2026-11-25T16:42:07Z, ...+02:00), or 'latest' "
            "(everything captured).",
        ),
    ],
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="NAME",
            help="Inventory database, or a new database name on the source's server.",
        ),
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", metavar="URL", help="Connection URL to restore into.")
    ] = None,
    password_env: Annotated[
        str | None,
        typer.Option(
            "--password-env", metavar="VAR", help="With --to: variable holding the password."
        ),
    ] = None,
    clean: Annotated[
        bool,
        typer.Option("--clean", help="Replace the dump's objects in an existing database."),
    ] = False,
    plan_only: Annotated[
        bool,
        typer.Option("--plan", help="Only show which dump and binlog files would be used."),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Restore a MySQL/MariaDB database as it was at a point in time.

    Loads the newest dump that finished by then and replays the captured
    binlogs from the dump's binlog position up to the time (events stamped
    in the target's own second are not applied: binlog times have
    one-second resolution).
    """
    repos = state(ctx).repos()
    if plan_only:
        plan = plan_recovery(repos, database, parse_target_time(time))
        if json_output:
            output.emit_json(plan.summary())
            return
        summary = plan.summary()
        output.stdout.print(
            f"dump {plan.dump.short_id} of {summary['dump_time'][:19]}, binlog from "
            f"{summary['start']} through {', '.join(summary['binlog_files'])}; "
            f"captured until {str(summary['covered_until'])[:19]}"
        )
        return
    result = restore_to_time(
        repos, database, time, target=target, to=to, password_env=password_env, clean=clean
    )
    if json_output:
        output.emit_json(result.as_dict())
    else:
        print_restore(result)


def print_restore(r: PitrResult) -> None:
    """The one-line summary of a point-in-time restore (also for ``restore --time``)."""
    output.stdout.print(
        f"restored {r.database} into {r.target} as of "
        f"{r.target_time or 'latest'}: dump {r.dump_snapshot[:8]} ({r.restore_seconds:.1f}s), "
        f"then {r.binlog_events} binlog events from {len(r.binlog_files)} file(s) "
        f"({r.replay_seconds:.1f}s); last event {r.recovered_until[:19]}"
    )


COMMANDS: dict[str, Callable[..., None]] = {
    "binlog-ship": binlog_ship,
    "binlog-stream": binlog_stream,
    "restore-pitr-mysql": restore_pitr_mysql,
}


def register(app: typer.Typer) -> None:
    present = {c.name for c in app.registered_commands}
    for name, fn in COMMANDS.items():
        if name not in present:
            app.command(name)(fn)


class MySQLPointInTime:
    """``restore ENTRY --time T --target/--to``: the
    :class:`~dbfleet.engines.base.PointInTime` capability of MySQL/MariaDB."""

    def restore_to_point(
        self, inventory: Inventory, repos: Repositories, request: PointInTimeRequest
    ) -> PitrResult:
        if request.tables or request.include_globals:
            raise UsageError("--time restores a whole database: no --table or --globals")
        if request.position or request.datadir or request.start or request.port is not None:
            raise UsageError(
                "--lsn, --to-datadir, --start and --port are PostgreSQL's; "
                "MySQL/MariaDB take --time (or --latest) with --target or --to"
            )
        return restore_to_time(
            repos, request.database, None if request.latest else request.time,
            target=request.target, to=request.to, password_env=request.password_env,
            clean=request.clean,
        )  # fmt: skip

    def render(self, result: PointInTimeResult) -> None:
        assert isinstance(result, PitrResult)
        print_restore(result)


POINT_IN_TIME = MySQLPointInTime()
