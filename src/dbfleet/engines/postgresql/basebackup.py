"""Physical base backups of a PostgreSQL cluster, the chain they form with the
WAL archive, and which WAL retention may forget.

``pg_basebackup -D - -Ft -X none`` streams the cluster as one tar archive on
stdout, which goes through the repository's chunking, compression and
encryption like a dump: nothing is staged on disk. ``-X none`` leaves the WAL
to the archive (``dbfleet wal-push``), so the server must archive; the
server's ``pg_backup_stop`` waits until the backup's last segment has been
archived, so a finished base backup always has the WAL it needs.

The backup's positions come from the stream itself: ``backup_label`` (start
LSN, checkpoint, timeline, first WAL file) and the ``WAL-Ranges`` at the end
of ``backup_manifest`` (stop LSN), which pg_basebackup adds to the tar.
Only ``backup_label`` and the manifest's last 64 KiB are held in memory.

A base backup is a snapshot of engine ``postgresql`` with
``options.kind = "basebackup"`` and one stream, ``base.tar``.
"""

from __future__ import annotations

import io
import json
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, cast

from dbfleet.config import DatabaseConfig, Inventory
from dbfleet.engines._shared.process import dump_process
from dbfleet.engines.postgresql.client import tool_env, tool_version
from dbfleet.engines.postgresql.wal import WalObject, list_wal, wal_needed_from, wal_to_forget
from dbfleet.errors import EngineError, UsageError
from dbfleet.repo import BackupWriter, Repository, Snapshot
from dbfleet.repo.lock import repository_lock

KIND = "basebackup"
STREAM = "base.tar"
MEDIA_TYPE = "application/x-tar"
MANIFEST_TAIL = 64 * 1024
_BLOCK = 512


# -- reading positions from the tar stream as it flows past -------------------


class TarTap:
    """A reader over a tar stream that keeps ``backup_label`` and the tail of
    ``backup_manifest`` as they pass, parsing only the 512-byte headers."""

    WANTED = {"backup_label": 1 << 20, "backup_manifest": MANIFEST_TAIL}

    def __init__(self, inner: io.BufferedIOBase) -> None:
        self._inner = inner
        self._header = bytearray()
        self._remaining = 0
        self._padding = 0
        self._member: str | None = None
        self.members: dict[str, bytearray] = {}

    def readinto(self, buffer: memoryview) -> int:
        n = self._inner.readinto(buffer)
        self._feed(memoryview(buffer)[:n])
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._feed(memoryview(data))
        return data

    def _feed(self, view: memoryview) -> None:
        while len(view):
            if self._remaining:
                take = min(len(view), self._remaining)
                if self._member is not None:
                    self._keep(view[:take])
                self._remaining -= take
                view = view[take:]
            elif self._padding:
                take = min(len(view), self._padding)
                self._padding -= take
                view = view[take:]
            else:
                take = _BLOCK - len(self._header)
                self._header += view[:take]
                view = view[take:]
                if len(self._header) == _BLOCK:
                    self._on_header(bytes(self._header))
                    self._header.clear()

    def _keep(self, data: memoryview) -> None:
        assert self._member is not None
        kept = self.members.setdefault(self._member, bytearray())
        kept += data
        limit = self.WANTED[self._member]
        if len(kept) > 2 * limit:
            del kept[:-limit]

    def _on_header(self, header: bytes) -> None:
        if header == bytes(_BLOCK):
            self._member = None
            return  # end-of-archive blocks
        name = header[:100].split(b"\0", 1)[0].decode(errors="replace")
        prefix = header[345:500].split(b"\0", 1)[0].decode(errors="replace")
        if header[257:262] == b"ustar" and prefix:
            name = f"{prefix}/{name}"
        size = _tar_size(header[124:136])
        self._member = name if name in self.WANTED and header[156:157] in (b"0", b"\0") else None
        if self._member is not None:
            self.members[name] = bytearray()
        self._remaining = size
        self._padding = -size % _BLOCK


def _tar_size(field: bytes) -> int:
    if field[0] & 0x80:  # base-256 (GNU) for members of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


@dataclass(frozen=True)
class BackupPositions:
    start_lsn: str
    checkpoint_lsn: str
    timeline: int
    start_wal_file: str
    start_time: str
    stop_lsn: str
    stop_timeline: int

    @classmethod
    def parse(cls, label: bytes, manifest_tail: bytes) -> BackupPositions:
        text = label.decode(errors="replace")
        start = re.search(r"START WAL LOCATION: (\S+) \(file ([0-9A-F]{24})\)", text)
        checkpoint = re.search(r"CHECKPOINT LOCATION: (\S+)", text)
        timeline = re.search(r"START TIMELINE: (\d+)", text)
        started = re.search(r"START TIME: (.+)", text)
        ranges = re.search(rb'"WAL-Ranges"\s*:\s*(\[[^\]]*\])', manifest_tail)
        if not (start and checkpoint and timeline and started):
            raise EngineError("pg_basebackup's backup_label lacks the start position")
        if ranges is None:
            raise EngineError("pg_basebackup's backup_manifest lacks WAL-Ranges")
        last = json.loads(ranges.group(1))[-1]
        return cls(
            start_lsn=start.group(1),
            checkpoint_lsn=checkpoint.group(1),
            timeline=int(timeline.group(1)),
            start_wal_file=start.group(2),
            start_time=started.group(1).strip(),
            stop_lsn=str(last["End-LSN"]),
            stop_timeline=int(last["Timeline"]),
        )


def parse_lsn(text: str) -> int:
    """``'16/B374D848'`` -> 64-bit position."""
    high, slash, low = text.strip().partition("/")
    try:
        if not slash:
            raise ValueError
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        raise UsageError(f"{text!r} is not an LSN (expected e.g. 0/3000148)") from None


# -- taking a base backup -----------------------------------------------------


def cluster_config(inventory: Inventory, database: str) -> DatabaseConfig:
    """The inventory entry of a PostgreSQL cluster (a base backup copies the
    whole cluster, so ``entry/member`` names are refused)."""
    entry, member = inventory.split_member(database)
    config = inventory.database(entry)
    if member is not None or "/" in database:
        raise UsageError(
            f"{database!r} names one database; a base backup copies the whole cluster",
            hint=f"use '{entry}'",
        )
    if config.engine != "postgresql":
        raise UsageError(f"{database} is a {config.engine} database; base backups are PostgreSQL")
    return config


def _check_archiving(settings: dict[str, str], in_recovery: bool) -> None:
    mode = settings["archive_mode"]
    if mode == "off" or (in_recovery and mode != "always"):
        raise UsageError(
            f"archive_mode is {mode!r}: a base backup without archived WAL cannot be restored",
            hint="set archive_mode = on (always on a standby) and archive_command = "
            "'dbfleet --config FILE wal-push --db NAME %p' (docs/pitr-postgresql.md)",
        )
    if not settings["archive_command"] and not settings["archive_library"]:
        raise UsageError("archive_command is empty: WAL is not being archived")


def take_base_backup(
    repo: Repository,
    database: str,
    config: DatabaseConfig,
    *,
    tags: list[str] | None = None,
) -> Snapshot:
    """Stream ``pg_basebackup`` into ``repo`` as a ``basebackup`` snapshot."""
    from dbfleet.engines.postgresql import PostgreSQLEngine  # psycopg: only when used

    engine = PostgreSQLEngine(config)
    started = datetime.now(UTC)
    # The engine's connection, tool lookup and private PGPASSFILE are reused
    # as they are: credentials never reach an argument or the environment.
    with engine._connect() as conn:
        info = engine._server_info(conn)
        row = conn.execute(
            "SELECT current_setting('archive_mode'), current_setting('archive_command'),"
            " current_setting('archive_library'), system_identifier::text"
            " FROM pg_control_system()"
        ).fetchone()
        assert row is not None
    settings = dict(
        zip(("archive_mode", "archive_command", "archive_library"), row[:3], strict=True)
    )
    _check_archiving(settings, info.in_recovery)
    tool = engine._tool("pg_basebackup", info.major)
    argv = [tool, *engine.location.tool_args(), "-D", "-", "-Ft", "-X", "none",
            "--checkpoint=fast", "--no-password", f"--label=dbfleet {database}"]  # fmt: skip
    with (
        repository_lock(repo.storage, exclusive=False, operation=f"basebackup {database}"),
        BackupWriter(repo) as writer,
        tool_env(engine.config, engine.location, engine._password()) as env,
    ):
        with dump_process(argv, env) as stdout:
            tap = TarTap(cast(io.BufferedIOBase, stdout))
            writer.write_stream(STREAM, cast(BinaryIO, tap), MEDIA_TYPE)
        label = tap.members.get("backup_label")
        if label is None:
            raise EngineError("pg_basebackup's tar has no backup_label")
        positions = BackupPositions.parse(
            bytes(label), bytes(tap.members.get("backup_manifest", b""))
        )
        snapshot = writer.commit(
            Snapshot(
                database=database,
                engine="postgresql",
                hostname=socket.gethostname(),
                started=started,
                finished=datetime.now(UTC),
                server_version=info.version,
                tool="pg_basebackup",
                tool_version=tool_version(tool, engine._tool_versions),
                consistency_point={
                    "start_lsn": positions.start_lsn,
                    "stop_lsn": positions.stop_lsn,
                    "checkpoint_lsn": positions.checkpoint_lsn,
                    "timeline": positions.timeline,
                    "stop_timeline": positions.stop_timeline,
                    "start_wal_file": positions.start_wal_file,
                    "start_time": positions.start_time,
                    "system_identifier": str(row[3]),
                    "standby": info.in_recovery,
                },
                options={"kind": KIND, "format": "tar", "wal": "archived"},
                tags=list(tags or []) + list(config.tags),
            )
        )
    return snapshot


# -- the chain ----------------------------------------------------------------


def is_base_backup(snapshot: Snapshot) -> bool:
    return snapshot.engine == "postgresql" and snapshot.options.get("kind") == KIND


def base_backups(repo: Repository, database: str) -> list[Snapshot]:
    """Base backups of ``database``, oldest first."""
    return [s for s in repo.list_snapshots(database) if is_base_backup(s)]


def stop_lsn(snapshot: Snapshot) -> int:
    return parse_lsn(str((snapshot.consistency_point or {})["stop_lsn"]))


def start_wal_file(snapshot: Snapshot) -> str:
    return str((snapshot.consistency_point or {})["start_wal_file"])


def wal_retention(repo: Repository, database: str, kept: list[Snapshot]) -> list[WalObject]:
    """Archived WAL of ``database`` that no kept base backup needs: files
    before the first segment of the oldest kept base backup (``kept`` are the
    snapshots retention keeps; other kinds in it are ignored). With no kept
    base backup nothing is forgotten. History files are always kept."""
    starts = [start_wal_file(s) for s in kept if is_base_backup(s)]
    return wal_to_forget(list_wal(repo, database), wal_needed_from(starts))


def forget_wal(repo: Repository, objects: list[WalObject]) -> int:
    """Delete archived WAL files (an administrator key is required)."""
    repo.require_admin("forgetting WAL")
    for obj in objects:
        repo.storage.delete(obj.name)
    return len(objects)


def describe(snapshot: Snapshot) -> dict[str, Any]:
    point = snapshot.consistency_point or {}
    return {
        "snapshot": snapshot.id,
        "time": snapshot.finished.isoformat(),
        "start_lsn": point.get("start_lsn"),
        "stop_lsn": point.get("stop_lsn"),
        "timeline": point.get("timeline"),
        "size": snapshot.size,
    }
