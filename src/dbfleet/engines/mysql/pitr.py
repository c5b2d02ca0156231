"""MySQL/MariaDB point-in-time recovery (see docs/pitr-mysql.md).

The newest dump that finished by the target time is restored by the MySQL
engine; then the captured binlog files from the dump's file and position on
(a run without gaps in the file numbers) stream from the repository through
``mariadb-binlog -`` (stdin: no temporary file) into one client session,
with ``--database=<source> --rewrite-db=<source>-><target>``. dbfleet frames
the events itself and stops before the first one stamped at or after the
target (``--stop-datetime``'s rule, on UTC epoch seconds); the tool's closing
``ROLLBACK`` undoes a transaction cut in the middle. The source's GTID
settings are dropped from the SQL, so the replay runs as new transactions.
A target database the restore created is dropped again if the replay fails.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from dbfleet.engines._shared.process import ToolEnv, restore_process
from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.mysql import MySQLEngine
from dbfleet.engines.mysql.binlog import (
    STREAM,
    binlog_owner,
    dumps_of,
    file_name,
    file_number,
    is_binlog,
)
from dbfleet.engines.mysql.binlog_events import HEADER, MAGIC, split_events
from dbfleet.engines.mysql.binlog_events import KIND as BINLOG_KIND
from dbfleet.engines.mysql.binlog_tool import BATCH, binlog_tool, filtered, tool_output
from dbfleet.engines.mysql.server import Tool
from dbfleet.engines.registry import engine_for
from dbfleet.errors import EngineError, SnapshotNotFoundError, UsageError
from dbfleet.operations.common import Repositories, SnapshotSource
from dbfleet.operations.restore import describe, resolve_target
from dbfleet.repo import Snapshot, iter_stream

log = logging.getLogger(__name__)


def parse_target_time(text: str) -> datetime | None:
    """An ISO 8601 time with a UTC offset, or ``latest`` (``None``)."""
    if text.strip().lower() == "latest":
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"invalid time {text!r}", hint="e.g. 2026-11-25T16:42:07Z, or 'latest'"
        ) from None
    if when.tzinfo is None:
        raise UsageError(
            f"time {text!r} has no UTC offset",
            hint="add Z or +HH:MM: binlog times are compared in UTC",
        )
    return when.astimezone(UTC)


# -- the plan -------------------------------------------------------------


@dataclass
class Plan:
    dump: Snapshot
    binlogs: list[Snapshot]
    target_time: datetime | None
    covered_until: datetime | None
    """The latest event time in the run (the replay can stop at a target up to it)."""

    @property
    def source_db(self) -> str:
        return str(self.dump.options.get("database") or "")

    @property
    def start(self) -> tuple[str, int]:
        point = self.dump.consistency_point or {}
        return str(point["binlog_file"]), int(point["binlog_position"])

    def summary(self) -> dict[str, Any]:
        return {
            "dump": self.dump.id, "dump_time": self.dump.finished.isoformat(),
            "start": f"{self.start[0]}:{self.start[1]}",
            "binlog_files": [str(s.options.get("file")) for s in self.binlogs],
            "target_time": self.target_time.isoformat() if self.target_time else None,
            "covered_until": self.covered_until.isoformat() if self.covered_until else None,
        }  # fmt: skip


def _when(snapshot: Snapshot, key: str) -> datetime:
    return datetime.fromisoformat(str(snapshot.options[key]))


def plan_recovery(repos: Repositories, name: str, target_time: datetime | None) -> Plan:
    """Which dump and which captured binlog files recover ``name`` to the time."""
    snapshots = repos.for_database(name).list_snapshots()
    dumps = [
        s for s in snapshots
        if s.database == name and not is_binlog(s) and s.engine == "mysql"
        and s.stream("dump") is not None and (s.consistency_point or {}).get("binlog_file")
        and (target_time is None or s.finished <= target_time)
    ]  # fmt: skip
    if not dumps:
        when = f" that finished by {target_time.isoformat()}" if target_time else ""
        raise SnapshotNotFoundError(
            f"no dump of {name!r} with a binlog position{when}",
            hint="back up with the binary log on (the dump records its position)",
        )
    dump = dumps[-1]
    owner = binlog_owner(repos.inventory, name)
    binlogs = binlog_run(snapshots, owner, dump)
    # Event times need not grow (sessions may SET TIMESTAMP): the replay stops
    # at the first event stamped at or after the target, which exists only if
    # some captured event is that late.
    covered = max(_when(s, "max_event_time") for s in binlogs)
    hole = missing_after(snapshots, owner, binlogs)
    if hole and (target_time is None or target_time > covered):
        raise SnapshotNotFoundError(
            f"binlog {hole} is not in the repository, but later files of the server are "
            f"(purged before it was captured?): the binlogs after dump {dump.short_id} of "
            f"{name!r} reach {covered.isoformat()} (through {binlogs[-1].options.get('file')})",
            hint="restore to a time up to then, or from a dump taken after the hole",
        )
    if target_time is not None and target_time > covered:
        raise UsageError(
            f"the binlogs captured for {name!r} reach {covered.isoformat()} "
            f"(through {binlogs[-1].options.get('file')}); the target {target_time.isoformat()} "
            "is later",
            hint="capture the newest binlogs (binlog-ship --flush), or choose an earlier time",
        )
    return Plan(dump, binlogs, target_time, covered)


def binlog_run(snapshots: list[Snapshot], owner: str, dump: Snapshot) -> list[Snapshot]:
    """The dump's binlog file and the captured files that follow it without a
    gap in their numbers (same server id). Where a name was captured more
    than once (numbering restarted by RESET MASTER), the copy created nearest
    in time to its predecessor is taken."""
    point = dump.consistency_point or {}
    server_id = point.get("server_id")
    by_number: dict[int, list[Snapshot]] = {}
    for s in snapshots:
        same_server = server_id is None or s.options.get("server_id") == server_id
        if s.database == owner and is_binlog(s) and same_server:
            by_number.setdefault(file_number(str(s.options["file"])), []).append(s)
    number = file_number(str(point["binlog_file"]))
    if number not in by_number:
        raise SnapshotNotFoundError(
            f"binlog {point['binlog_file']} (where dump {dump.short_id} starts) is not in the "
            "repository",
            hint="capture binlogs with 'dbfleet binlog-ship' (--flush to include the newest)",
        )
    previous = dump.started
    run: list[Snapshot] = []
    while number in by_number:
        run.append(min(by_number[number], key=lambda s: abs(_when(s, "created") - previous)))
        previous = _when(run[-1], "created")
        number += 1
    return run


def missing_after(snapshots: list[Snapshot], owner: str, run: list[Snapshot]) -> str | None:
    """The file after ``run`` (see :func:`binlog_run`) when files the same
    server wrote later are captured: a hole, not the end of what was captured.
    None when the run is the newest, or the numbering restarted after it
    (a later file numbered no higher: ``RESET MASTER``)."""
    last = run[-1]
    number, created = file_number(str(last.options["file"])), _when(last, "created")
    later = [
        file_number(str(s.options["file"])) for s in snapshots
        if s.database == owner and is_binlog(s) and s.id not in {r.id for r in run}
        and s.options.get("server_id") == last.options.get("server_id")
        and _when(s, "created") >= created
    ]  # fmt: skip
    if not later or min(later) <= number:
        return None
    return file_name(str(last.options["file"]), number + 1)


def obsolete_binlogs(snapshots: list[Snapshot], owner: str) -> list[Snapshot]:
    """For retention: binlog snapshots of ``owner`` that no remaining dump's
    run (:func:`binlog_run`) uses, captured before the newest dump started
    (later ones wait for the next dump); none while there is no dump."""
    dumps = dumps_of(snapshots, owner)
    if not dumps:
        return []
    needed: set[str] = set()
    for dump in dumps:
        with contextlib.suppress(SnapshotNotFoundError):
            needed.update(s.id for s in binlog_run(snapshots, owner, dump))
    newest = max(d.started for d in dumps)
    return [
        s for s in snapshots
        if s.database == owner and is_binlog(s) and s.id not in needed and s.started < newest
    ]  # fmt: skip


class BinlogChain:
    """Binlog captures as :class:`~dbfleet.engines.base.ChainedSnapshots`."""

    kind = BINLOG_KIND

    def obsolete(self, remaining: list[Snapshot], database: str) -> list[Snapshot]:
        return obsolete_binlogs(remaining, database)


BINLOG_CHAIN = BinlogChain()


# -- replay ---------------------------------------------------------------


@dataclass
class Progress:
    files: list[str] = field(default_factory=list)
    events: int = 0
    bytes: int = 0
    last_event: int | None = None
    stopped: bool = False
    """The target time was reached."""


def cut_binlog(
    blocks: Iterable[bytes], *, start: int, stop: int | None, progress: Progress
) -> Iterator[bytes]:
    """Magic, format description, then the events from file offset ``start``
    up to (not including) the first event stamped at or after ``stop``.

    A ``start`` at or inside the format description (4, where replication
    starts a file) means the first event after it: the dump's file starts at
    the dump's position, every later file right after its format description."""
    out = [MAGIC]
    size = offset = len(MAGIC)
    started = False
    for index, event in enumerate(split_events(blocks)):
        at, offset = offset, offset + len(event)
        if index == 0:
            start = max(start, offset)
        else:
            if at < start:
                continue
            if at > start and not started:
                raise EngineError(f"binlog position {start} is not at an event boundary")
            started = True
            when = HEADER.unpack_from(event)[0]
            if stop is not None and when >= stop:
                progress.stopped = True
                break
            progress.events += 1
            progress.bytes += len(event)
            progress.last_event = when
        out.append(event)
        size += len(event)
        if size >= BATCH:
            yield b"".join(out)
            out, size = [], 0
    if not started and not progress.stopped and start > offset:
        raise EngineError(f"binlog position {start} is past the end of the file ({offset} bytes)")
    if out:
        yield b"".join(out)


def replay(repos: Repositories, plan: Plan, engine: MySQLEngine, progress: Progress) -> None:
    """Feed the plan's binlogs through the binlog tool into ``engine``'s database."""
    repo = repos.for_database(plan.dump.database)
    start_file, position = plan.start
    stop = int(plan.target_time.timestamp()) if plan.target_time else None
    source, target = plan.source_db, engine.location.dbname
    if not source:
        raise EngineError(f"dump {plan.dump.short_id} does not name its source database")
    path, flavor = binlog_tool(engine.config)
    tool_args = [path, "--no-defaults", f"--database={source}"]
    if target != source:
        tool_args.append(f"--rewrite-db={source}->{target}")
    if flavor == "mysql":
        tool_args.append("--skip-gtids")
    tool_args.append("-")

    def sql(env: ToolEnv) -> Iterator[bytes]:
        for index, snapshot in enumerate(plan.binlogs):
            if stop is not None and index > 0 and _when(snapshot, "created").timestamp() >= stop:
                progress.stopped = True
                return
            progress.files.append(str(snapshot.options["file"]))
            events = cut_binlog(
                iter_stream(repo, snapshot, STREAM),
                start=position if index == 0 else len(MAGIC),
                stop=stop,
                progress=progress,
            )
            yield from filtered(tool_output(tool_args, events, {**env, "TZ": "UTC"}))
            if progress.stopped:
                return

    with engine._option_file() as (optfile, env):
        argv = [engine._tool("client").path, f"--defaults-extra-file={optfile}",
                *Tool.CLIENT_ARGS, f"--database={target}"]  # fmt: skip
        try:
            restore_process(argv, sql(env), env)
        except EngineError as exc:
            exc.hint = exc.hint or _replay_hint(exc.message)
            raise
    log.info("replayed %d binlog events from %s:%d", progress.events, start_file, position)


def _replay_hint(message: str) -> str | None:
    if "gone away" in message or "max_allowed_packet" in message:
        return (
            "the tool replays each statement's row events as one BINLOG statement, which "
            "can exceed the server's max_allowed_packet: raise it for the restore"
        )
    if "BINLOG" in message and ("ERROR 1227" in message or "ERROR 1044" in message):
        return "replaying binlogs needs BINLOG REPLAY (MariaDB) or BINLOG_ADMIN (MySQL), or SUPER"
    return None


# -- the operation ----------------------------------------------------------


@dataclass
class PitrResult:
    database: str
    target: str
    dump_snapshot: str
    dump_time: str
    target_time: str | None
    recovered_until: str
    """The time stamp of the last binlog event read (or the dump's time)."""
    binlog_files: list[str]
    binlog_events: int
    binlog_bytes: int
    restore_seconds: float
    replay_seconds: float
    duration_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def restore_to_time(
    repos: Repositories,
    name: str,
    when: datetime | str | None,
    *,
    target: str | None = None,
    to: str | None = None,
    password_env: str | None = None,
    clean: bool = False,
) -> PitrResult:
    """Restore ``name`` as it was at ``when`` (``None``/``latest``: as far as
    captured) into ``target``/``to`` (see :func:`resolve_target`)."""
    target_time = parse_target_time(when) if isinstance(when, str) else when
    if target_time is not None:
        target_time = target_time.astimezone(UTC)
    plan = plan_recovery(repos, name, target_time)
    config = resolve_target(repos, plan.dump, target=target, to=to, password_env=password_env)
    engine = engine_for(config)
    if not isinstance(engine, MySQLEngine):
        raise UsageError(f"point-in-time recovery of MySQL needs a mysql target, not {engine.name}")
    existed = _database_exists(engine)
    began = time.monotonic()
    engine.restore(SnapshotSource(repos.for_database(name), plan.dump), RestoreOptions(clean=clean))
    restored = time.monotonic()
    progress = Progress()
    try:
        replay(repos, plan, engine, progress)
    except BaseException:
        if not existed:
            try:
                engine.drop()
            except Exception as exc:  # keep the replay's own error
                log.warning("could not drop %s after the failed replay: %s", describe(config), exc)
        raise
    done = time.monotonic()
    last = progress.last_event
    until = datetime.fromtimestamp(last, UTC) if last else plan.dump.finished
    return PitrResult(
        database=name,
        target=describe(config),
        dump_snapshot=plan.dump.id,
        dump_time=plan.dump.finished.isoformat(),
        target_time=target_time.isoformat() if target_time else None,
        recovered_until=until.isoformat(),
        binlog_files=progress.files,
        binlog_events=progress.events,
        binlog_bytes=progress.bytes,
        restore_seconds=round(restored - began, 3),
        replay_seconds=round(done - restored, 3),
        duration_seconds=round(done - began, 3),
    )


def _database_exists(engine: MySQLEngine) -> bool:
    with engine._connect(database=False) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (engine.location.dbname,),
        )
        return cur.fetchone() is not None
