"""MySQL/MariaDB binary logs captured into the repository (see docs/pitr-mysql.md).

Each *closed* binlog file becomes one snapshot of the inventory entry
(``options.kind == "binlog"``) whose stream ``binlog`` holds the file's
exact bytes. Files are read over the **replication protocol**
(``COM_BINLOG_DUMP`` for one file, non-blocking; the server's artificial
events are left out, so the stream equals the file on the server's disk;
no temporary file) or **shipped** from the binlog directory (``binlog_dir``,
through its ``.index`` file). Every event is framed and checked on the way
(it must end where its header says), and the file's server id, creation
time and last event time are recorded.

The file being written is never captured (``flush`` rotates it first);
files already in the repository (same name and size) are skipped, and so
are files older than the oldest dump's binlog file, which no restore needs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import pymysql

from dbfleet.config import DatabaseConfig, Inventory
from dbfleet.engines.mysql.binlog_events import (
    HEADER,
    HEARTBEAT,
    KIND,
    MAGIC,
    ROTATE,
    STOP,
    EventReader,
    FileStats,
    split_events,
)
from dbfleet.engines.mysql.server import Location, connect_error
from dbfleet.errors import DbfleetError, EngineError, UsageError
from dbfleet.operations.common import Repositories
from dbfleet.operations.copy import already_copied, copy_snapshot
from dbfleet.repo import BackupWriter, Repository, Snapshot
from dbfleet.repo.lock import repository_lock
from dbfleet.secrets import secret_from

log = logging.getLogger(__name__)

ARTIFICIAL = 0x20
COM_BINLOG_DUMP = 0x12
DUMP_NON_BLOCK = 0x01
DUMP_ANNOTATE_ROWS = 0x02  # MariaDB: send Annotate_rows events too (else the file has gaps)
STREAM = "binlog"
MEDIA_TYPE = "application/x-mysql-binlog"
DUMP_SERVER_ID = 0  # like mariadb-binlog: a non-blocking dump, not a registered replica
_READ_SIZE = 1 << 20


def file_number(name: str) -> int:
    """``mariadb-bin.000042`` -> 42."""
    suffix = name.rpartition(".")[2]
    if not suffix.isdigit():
        raise EngineError(f"{name!r} is not a binary log file name (<base>.<number>)")
    return int(suffix)


def file_name(like: str, number: int) -> str:
    """The name of file ``number`` in the series of ``like`` (base and digits)."""
    base, _, suffix = like.rpartition(".")
    return f"{base}.{number:0{len(suffix)}d}"


def binlog_owner(inventory: Inventory, name: str) -> str:
    """The inventory entry whose binlogs serve ``name``: a server entry's
    binlog covers all its databases (``srv/app`` -> ``srv``)."""
    return inventory.split_member(name)[0]


def is_binlog(snapshot: Snapshot) -> bool:
    return snapshot.options.get("kind") == KIND


# -- sources ---------------------------------------------------------------


class BinlogSource(Protocol):
    name: str
    """``replication`` or ``directory`` (recorded in each snapshot)."""

    def files(self) -> list[tuple[str, int]]:
        """The server's binlog files with their sizes, oldest first; the
        last one is the file being written."""
        ...

    def events(self, file: str) -> Generator[bytes, None, None]:
        """The events of one (closed) file, in order."""
        ...


class _Server:
    """Connections to the server of an inventory entry (password never in argv)."""

    def __init__(self, config: DatabaseConfig) -> None:
        if config.engine != "mysql" or not config.url:
            raise UsageError(f"binlog capture needs a mysql entry, not {config.engine}")
        self.config = config
        self.location = Location.parse(config.url)
        self.timeout = int(config.options.get("connect_timeout", 10))

    def connect(self, **extra: Any) -> pymysql.connections.Connection[Any]:
        password = secret_from(self.config.password_env, self.config.password_file)
        args = self.location.pymysql_args(password=password, database=None, timeout=self.timeout)
        try:
            return pymysql.connect(**args, **extra)
        except pymysql.Error as exc:
            raise connect_error(exc, self.config, self.location, password, False) from None

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self.connect() as conn, conn.cursor() as cur:
            try:
                cur.execute(sql)
            except pymysql.Error as exc:
                raise EngineError(
                    f"MySQL {self.location.describe('')}: {sql}: {exc.args[-1]}",
                    hint=_privilege_hint(sql),
                ) from None
            return list(cur.fetchall())

    def flush(self) -> None:
        self.query("FLUSH BINARY LOGS")


def _privilege_hint(sql: str) -> str | None:
    if sql.startswith("FLUSH"):
        return "FLUSH BINARY LOGS needs RELOAD (MySQL) or BINLOG ADMIN / RELOAD (MariaDB)"
    if sql.startswith("SHOW BINARY"):
        return "listing binary logs needs BINLOG MONITOR (MariaDB) or REPLICATION CLIENT (MySQL)"
    return None


class ReplicationSource:
    """Binlog files read over the replication protocol (``COM_BINLOG_DUMP``)."""

    name = "replication"

    def __init__(self, server: _Server) -> None:
        self.server = server

    def files(self) -> list[tuple[str, int]]:
        rows = self.server.query("SHOW BINARY LOGS")
        if not rows:
            raise EngineError("the server has no binary log (log_bin is off)")
        return [(str(r[0]), int(r[1])) for r in rows]

    def events(self, file: str) -> Generator[bytes, None, None]:
        conn = self.server.connect(read_timeout=max(60, self.server.timeout))
        raw: Any = conn  # PyMySQL has no public API for the replication commands
        try:
            with conn.cursor() as cur:
                # events as the server wrote them, checksums included, and
                # MariaDB's GTID events as they are (not rewritten for old replicas)
                cur.execute("SET @master_binlog_checksum = @@global.binlog_checksum")
                cur.execute("SET @source_binlog_checksum = @@global.binlog_checksum")
                cur.execute("SET @mariadb_slave_capability = 4")
            flags = DUMP_NON_BLOCK
            if "mariadb" in str(raw.get_server_info()).lower():
                flags |= DUMP_ANNOTATE_ROWS
            request = struct.pack("<IHI", 4, flags, DUMP_SERVER_ID) + file.encode()
            raw._execute_command(COM_BINLOG_DUMP, request)
            started = False
            while True:
                data = raw._read_packet().get_all_data()
                if data[:1] == b"\xfe" and len(data) < 9:
                    return  # the end of the server's last binlog
                if data[:1] != b"\x00" or len(data) < 1 + HEADER.size:
                    raise EngineError(f"binlog {file}: unexpected replication packet")
                event = data[1:]
                _, kind, _, _, end, event_flags = HEADER.unpack_from(event)
                if kind == HEARTBEAT:
                    continue
                if event_flags & ARTIFICIAL or end == 0:
                    if kind == ROTATE and started:
                        return  # the server moved on to the next file
                    continue
                started = True
                yield event
                if kind in (ROTATE, STOP):
                    return
        except pymysql.Error as exc:
            hint = "reading binary logs needs REPLICATION SLAVE" if exc.args[0] == 1227 else None
            raise EngineError(f"binlog {file}: {exc.args[-1]}", hint=hint) from None
        finally:
            conn.close()


class DirectorySource:
    """Binlog files read from the server's binlog directory (``<base>.index``)."""

    name = "directory"

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def files(self) -> list[tuple[str, int]]:
        try:
            indexes = [n for n in os.listdir(self.directory) if n.endswith(".index")]
        except OSError as exc:
            raise UsageError(f"binlog directory {self.directory}: {exc.strerror}") from None
        if len(indexes) != 1:
            raise UsageError(
                f"binlog directory {self.directory}: expected one <base>.index file, "
                f"found {len(indexes)}"
            )
        with open(os.path.join(self.directory, indexes[0])) as f:
            names = [os.path.basename(line.strip()) for line in f if line.strip()]
        return [(n, self._size(n, indexes[0])) for n in names]

    def _size(self, file: str, index: str) -> int:
        try:
            return os.path.getsize(os.path.join(self.directory, file))
        except OSError as exc:
            raise EngineError(
                f"binlog directory {self.directory}: {file} is listed in {index} but cannot be "
                f"read ({exc.strerror})",
                hint="purge binlogs with PURGE BINARY LOGS, which keeps the index right",
            ) from None

    def events(self, file: str) -> Generator[bytes, None, None]:
        try:
            f = open(os.path.join(self.directory, file), "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise EngineError(f"binlog {file}: {exc.strerror} in {self.directory}") from None
        with f:
            yield from split_events(iter(lambda: f.read(_READ_SIZE), b""))


# -- capture ---------------------------------------------------------------


@dataclass
class CaptureResult:
    database: str
    source: str
    captured: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    """Closed files already in the repository."""
    active: str | None = None
    since: str | None = None
    bytes: int = 0
    note: str | None = None
    copies: dict[str, int] = field(default_factory=dict)
    """Binlog snapshots copied to each ``copy_to`` repository."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def captured_files(snapshots: list[Snapshot], owner: str) -> dict[tuple[str, int], Snapshot]:
    """Binlog files of ``owner`` among ``snapshots``, by (file name, size)."""
    return {
        (str(s.options.get("file")), int(s.options.get("size", 0))): s
        for s in snapshots
        if s.database == owner and is_binlog(s)
    }


def dumps_of(snapshots: list[Snapshot], owner: str) -> list[Snapshot]:
    """Dumps of ``owner`` (or of its members) that recorded a binlog position."""
    return [
        s for s in snapshots
        if (s.database == owner or s.database.startswith(f"{owner}/")) and not is_binlog(s)
        and (s.consistency_point or {}).get("binlog_file")
    ]  # fmt: skip


def oldest_dump_file(snapshots: list[Snapshot], owner: str) -> str | None:
    """The binlog file of the oldest dump: no restore needs an earlier file."""
    files = [str((s.consistency_point or {})["binlog_file"]) for s in dumps_of(snapshots, owner)]
    return min(files, key=file_number) if files else None


def open_source(config: DatabaseConfig, binlog_dir: str | None) -> BinlogSource:
    return DirectorySource(binlog_dir) if binlog_dir else ReplicationSource(_Server(config))


def capture_binlogs(
    repos: Repositories,
    name: str,
    *,
    binlog_dir: str | None = None,
    flush: bool = False,
    since: str | None = None,
    known: dict[tuple[str, int], Snapshot] | None = None,
) -> CaptureResult:
    """Capture the closed binlog files of entry ``name`` not yet in its
    repository (see module docstring). ``known`` caches
    :func:`captured_files` between calls (it is updated)."""
    owner = binlog_owner(repos.inventory, name)
    config = repos.inventory.database(owner)
    repo = repos.for_database(owner)
    source = open_source(config, binlog_dir)
    if flush:
        _Server(config).flush()
    result = CaptureResult(database=owner, source=source.name)
    with repository_lock(repo.storage, exclusive=False, operation=f"binlog capture {owner}"):
        snapshots = repo.list_snapshots() if since is None or known is None else []
        since = since or oldest_dump_file(snapshots, owner)
        result.since = since
        if since is None:
            result.note = "no dump with a binlog position yet: nothing to capture"
            return result
        files = source.files()
        result.active = files[-1][0] if files else None
        have = known if known is not None else captured_files(snapshots, owner)
        # numbering that restarted (RESET MASTER, a new server) makes ``since`` moot
        first = file_number(since)
        if not any(file_number(f) >= first for f, _ in files):
            first = 0
        purged = _purged_uncaptured(files, have, first)
        for file, size in files[:-1]:
            if file_number(file) < first:
                continue
            if (file, size) in have:
                result.skipped += 1
                continue
            snapshot = _capture_file(repo, owner, source, file)
            have[(file, size)] = snapshot
            entry = {"snapshot": snapshot.id, **snapshot.options}
            result.captured.append(entry)
            result.bytes += snapshot.size
    if config.copy_to and result.captured:
        _fan_out(repos, repo, owner, config.copy_to, result)
    if purged:
        # said once: the next capture finds the files after the hole in the repository
        raise EngineError(
            f"binlog {', '.join(purged)} of {owner} purged from the server before it was "
            f"captured ({len(result.captured)} later file(s) captured now): point-in-time "
            "restore cannot cross the hole",
            hint="take a new dump to recover later times; capture more often than the server "
            "expires binlogs (binlog_expire_logs_seconds)",
        )
    return result


def _purged_uncaptured(
    files: list[tuple[str, int]], have: dict[tuple[str, int], Snapshot], first: int
) -> list[str]:
    """Files from ``first`` on that are neither on the server nor captured,
    newer than every captured one (a hole found now, not one reported before)."""
    if not files or first == 0:  # 0: the numbering restarted, nothing to compare with
        return []
    oldest = file_number(files[0][0])
    captured = [file_number(f) for f, _ in have]
    after = max([first - 1, *captured])
    return [file_name(files[0][0], n) for n in range(after + 1, oldest)]


def _fan_out(
    repos: Repositories, repo: Repository, owner: str, destinations: list[str],
    result: CaptureResult,
) -> None:  # fmt: skip
    """Copy binlog snapshots to the entry's ``copy_to`` repositories, also
    ones an earlier copy failed on."""
    binlogs = [s for s in repo.list_snapshots(owner) if is_binlog(s)]
    origin = str(repo.config["id"])
    for name in destinations:
        destination = repos.get(name)
        done = already_copied(destination)
        missing = [s for s in binlogs if (origin, s.id) not in done]
        for snapshot in missing:
            copy_snapshot(repo, destination, snapshot, name)
        result.copies[name] = len(missing)


def _capture_file(repo: Repository, owner: str, source: BinlogSource, file: str) -> Snapshot:
    started = datetime.now(UTC)
    stats = FileStats(file)
    with BackupWriter(repo) as writer, contextlib.closing(source.events(file)) as events:
        writer.write_stream(STREAM, EventReader(events, stats), MEDIA_TYPE)  # type: ignore[arg-type]
        if stats.events == 0:
            raise EngineError(f"binlog {file}: no events (purged from the server?)")
        snapshot = writer.commit(
            Snapshot(
                database=owner,
                engine="mysql",
                hostname=socket.gethostname(),
                started=started,
                finished=datetime.now(UTC),
                tool=f"dbfleet binlog capture ({source.name})",
                consistency_point={
                    "server_id": stats.server_id,
                    "binlog_file": file,
                    "binlog_position": len(MAGIC),
                    "binlog_end": stats.size,
                },  # fmt: skip
                options=stats.options(source.name),
                tags=[KIND],
            )
        )
    log.info("captured binlog %s (%d bytes) as snapshot %s", file, stats.size, snapshot.short_id)
    return snapshot


def stream_binlogs(
    repos: Repositories,
    name: str,
    *,
    binlog_dir: str | None = None,
    interval: float = 60.0,
    flush_every: float | None = None,
    rounds: int = 0,
    on_result: Callable[[CaptureResult], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
) -> int:
    """Capture again every ``interval`` seconds (``rounds`` times, 0: until
    interrupted); with ``flush_every``, rotate the server's binlog that often
    so that no change waits longer than that to reach the repository. A
    failed round (server restarting, repository busy) is reported to
    ``on_error`` and retried next round. Returns the number of files captured."""
    owner = binlog_owner(repos.inventory, name)
    known = captured_files(repos.for_database(owner).list_snapshots(owner), owner)
    since: str | None = None
    last_flush = time.monotonic()
    total = done = 0
    while True:
        flush = flush_every is not None and time.monotonic() - last_flush >= flush_every
        try:
            result = capture_binlogs(repos, name, binlog_dir=binlog_dir, flush=flush,
                                     since=since, known=known)  # fmt: skip
            since = result.since
            if flush:
                last_flush = time.monotonic()
            total += len(result.captured)
            if on_result:
                on_result(result)
        except (DbfleetError, OSError) as exc:
            if on_error is None:
                raise
            on_error(exc)
        done += 1
        if rounds and done >= rounds:
            return total
        time.sleep(interval)
