"""Restore a PostgreSQL cluster to a point in time into a new data directory.

1. Pick the base backup: for ``time`` the newest that had finished by then,
   for ``lsn`` the newest whose stop LSN is at or before it, for ``latest``
   the newest.
2. Extract its ``base.tar`` stream into the directory (``tarfile`` in stream
   mode: one pass, nothing staged; paths and links may not leave the
   directory). Run as root, the files belong to ``owner`` (``postgres``).
3. Write the recovery settings to ``postgresql.auto.conf`` (the file
   PostgreSQL reads last) and create ``recovery.signal``: ``restore_command``
   runs ``dbfleet wal-fetch``, the target, ``recovery_target_action =
   promote``, and ``archive_mode = off`` so that a restored copy never pushes
   a new timeline into the archive of the cluster it came from (keep it with
   ``keep_archiving`` when the copy replaces that cluster).
4. With ``start``, start ``postgres`` on the directory (port ``port`` or a
   free one) and wait until recovery has reached the target and the server
   has promoted, reading the end position from the server log.
"""

from __future__ import annotations

import contextlib
import glob
import grp
import os
import pwd
import re
import shlex
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from dbfleet.engines.postgresql.basebackup import (
    STREAM,
    base_backups,
    parse_lsn,
    start_wal_file,
    stop_lsn,
)
from dbfleet.engines.postgresql.wal import DEFAULT_PREFETCH, PREFETCH_DIR
from dbfleet.engines.postgresql.wal_check import holes_after
from dbfleet.errors import EngineError, IntegrityError, SnapshotNotFoundError, UsageError
from dbfleet.repo import Repository, Snapshot, iter_stream

LOG_NAME = "dbfleet-recovery.log"
MARK = "# dbfleet restore-pitr"


@dataclass(frozen=True)
class RecoveryTarget:
    kind: Literal["time", "lsn", "latest"]
    value: str | None = None

    @classmethod
    def of(cls, time: str | None, lsn: str | None, latest: bool) -> RecoveryTarget:
        given = [x for x in (time, lsn, latest or None) if x]
        if len(given) != 1:
            raise UsageError("give exactly one of --time, --lsn, --latest")
        if time:
            return cls("time", time)
        if lsn:
            parse_lsn(lsn)
            return cls("lsn", lsn)
        return cls("latest")

    def moment(self) -> datetime:
        assert self.value is not None
        try:
            when = datetime.fromisoformat(self.value.strip())
        except ValueError:
            raise UsageError(
                f"--time {self.value!r} is not a time",
                hint="e.g. '2026-11-20 14:03:00+00' (with a UTC offset)",
            ) from None
        if when.tzinfo is None:
            raise UsageError(f"--time {self.value!r} needs a UTC offset, e.g. +00")
        return when

    def settings(self) -> dict[str, str]:
        if self.kind == "time":
            return {"recovery_target_time": self.moment().isoformat(sep=" ")}
        if self.kind == "lsn":
            return {"recovery_target_lsn": str(self.value)}
        return {}

    def describe(self) -> str:
        return "latest" if self.kind == "latest" else f"{self.kind} {self.value}"


@dataclass
class PitrResult:
    database: str
    base_snapshot: str
    target: str
    datadir: str
    bytes: int
    extract_seconds: float
    started: bool = False
    port: int | None = None
    recovery_seconds: float | None = None
    state: str | None = None
    timeline: int | None = None
    stop: str | None = None
    """The server's own words on where recovery stopped."""
    redo_done_lsn: str | None = None
    last_transaction_time: str | None = None
    written: list[str] = field(default_factory=list)
    wal_gap_after: str | None = None
    """The last segment before the first hole in the archive, if any."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_base_backup(backups: list[Snapshot], target: RecoveryTarget) -> Snapshot:
    """The newest base backup from which ``target`` is reachable."""
    if target.kind == "time":
        when = target.moment()
        usable = [s for s in backups if s.finished <= when]
    elif target.kind == "lsn":
        position = parse_lsn(str(target.value))
        usable = [s for s in backups if stop_lsn(s) <= position]
    else:
        usable = list(backups)
    if not usable:
        oldest = f" (the oldest finished {backups[0].finished.isoformat()})" if backups else ""
        raise SnapshotNotFoundError(
            f"no base backup from before {target.describe()}{oldest}",
            hint="take one with 'dbfleet basebackup DB'",
        )
    return max(usable, key=lambda s: s.finished)


class _ChunkReader:
    """A file object over an iterator of byte chunks (for tarfile's ``r|``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        self.count += len(data)
        return data


def _owner(owner: str | None) -> pwd.struct_passwd | None:
    """Who the restored files belong to: ``owner``, or ``postgres`` when run
    as root; ``None`` (the current user) otherwise."""
    if owner is None and os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(owner or "postgres")
    except KeyError:
        raise UsageError(f"no OS user {owner or 'postgres'!r} to own the data directory") from None


def _member_filter(user: pwd.struct_passwd | None) -> Any:
    group = grp.getgrgid(user.pw_gid).gr_name if user is not None else ""

    def keep(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise EngineError(f"base backup member {member.name!r} is a special file")
        if member.issym() or member.islnk():
            tarfile.data_filter(member, path)  # raises for links leaving the directory
        member = tarfile.tar_filter(member, path)
        if user is not None:
            member = member.replace(
                uid=user.pw_uid, gid=user.pw_gid, uname=user.pw_name, gname=group
            )
        return member

    return keep


def _prepare(datadir: Path, user: pwd.struct_passwd | None) -> None:
    if datadir.exists() and (not datadir.is_dir() or any(datadir.iterdir())):
        raise UsageError(f"{datadir} exists and is not an empty directory")
    datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    datadir.chmod(0o700)
    if user is not None:
        os.chown(datadir, user.pw_uid, user.pw_gid)


def extract(repo: Repository, snapshot: Snapshot, datadir: Path, owner: str | None) -> int:
    """Lay the base backup out in ``datadir`` (new or empty); returns bytes read."""
    user = _owner(owner)
    _prepare(datadir, user)
    reader = _ChunkReader(iter(iter_stream(repo, snapshot, STREAM)))
    with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
        tar.extractall(datadir, filter=_member_filter(user))
    return reader.count


def restore_command(
    database: str,
    inventory: Path,
    python: str | None = None,
    *,
    prefix: str | None = None,
    prefetch: int = DEFAULT_PREFETCH,
) -> str:
    """The ``restore_command`` that fetches WAL through this dbfleet.

    A segment that an earlier call prefetched is moved into place by the
    shell alone; otherwise dbfleet fetches it (and prefetches the next ones).
    A failing ``mv`` exits 126, which PostgreSQL treats as fatal instead of as
    the end of the archive."""
    head = prefix or f"{shlex.quote(python or sys.executable)} -m dbfleet"
    fetch = (
        f"{head} --config {shlex.quote(str(inventory.absolute()))} wal-fetch "
        f"--db {shlex.quote(database)} --prefetch {prefetch} %f %p"
    )
    if prefetch <= 0:
        return fetch
    spool = f"pg_wal/{PREFETCH_DIR}/%f"
    return f'f={spool}; if [ -f "$f" ]; then mv -f "$f" %p || exit 126; else exec {fetch}; fi'


def _conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def write_recovery(
    datadir: Path,
    target: RecoveryTarget,
    command: str,
    *,
    owner: str | None,
    keep_archiving: bool = False,
    port: int | None = None,
) -> list[str]:
    """Recovery settings, ``recovery.signal`` and, where the base backup had
    none (Debian keeps them in /etc), a minimal ``postgresql.conf`` and
    ``pg_hba.conf``. Returns the files written."""
    settings = {"restore_command": command, **target.settings()}
    if target.kind != "latest":
        settings["recovery_target_action"] = "promote"
    settings["recovery_target_timeline"] = "latest"
    if not keep_archiving:
        settings["archive_mode"] = "off"
    if port is not None:
        settings["port"] = str(port)
    lines = [f"{MARK} {datetime.now().astimezone().isoformat(timespec='seconds')}"]
    lines += [f"{k} = {_conf_value(v)}" for k, v in settings.items()]
    written = ["postgresql.auto.conf", "recovery.signal"]
    with open(datadir / "postgresql.auto.conf", "a") as fh:
        fh.write("\n".join(lines) + "\n")
    (datadir / "recovery.signal").write_text("")
    defaults = {
        "postgresql.conf": "# written by dbfleet restore-pitr: the base backup had none\n",
        "pg_hba.conf": "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n",
    }
    for name, text in defaults.items():
        if not (datadir / name).exists():
            (datadir / name).write_text(text)
            written.append(name)
    user = _owner(owner)
    for name in written:
        (datadir / name).chmod(0o600)
        if user is not None:
            os.chown(datadir / name, user.pw_uid, user.pw_gid)
    return written


# -- starting the restored server ----------------------------------------------


def pg_bin(datadir: Path, tool: str) -> str:
    """``tool`` of the data directory's major version."""
    major = (datadir / "PG_VERSION").read_text().strip()
    candidate = f"/usr/lib/postgresql/{major}/bin/{tool}"
    if os.access(candidate, os.X_OK):
        return candidate
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    for path in [*found, *(os.path.join(d, tool) for d in os.get_exec_path())]:
        if os.access(path, os.X_OK):
            return path
    raise EngineError(f"{tool} not found", hint=f"install postgresql-{major}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_as(owner: str | None) -> list[str]:
    """Command prefix that runs the server as ``owner`` (root may not)."""
    user = _owner(owner)
    if user is None or user.pw_uid == os.geteuid():
        return []
    return ["runuser", "-u", user.pw_name, "--"]


def control_state(datadir: Path) -> dict[str, str]:
    out = subprocess.run(
        [pg_bin(datadir, "pg_controldata"), "-D", str(datadir)],
        capture_output=True, text=True, check=False, env={**os.environ, "LC_ALL": "C"},
    )  # fmt: skip
    pairs = (line.partition(":") for line in out.stdout.splitlines())
    return {k.strip(): v.strip() for k, sep, v in pairs if sep}


def _postmaster_alive(datadir: Path) -> bool:
    try:
        pid = int((datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    with contextlib.suppress(OSError):
        return "postgres" in Path(f"/proc/{pid}/comm").read_text()
    return True


def start_and_wait(
    datadir: Path,
    result: PitrResult,
    *,
    owner: str | None,
    prefix: Sequence[str] | None = None,
    timeout: float = 600.0,
) -> None:
    """Start the server, wait until it has left recovery, fill in ``result``."""
    log = datadir / LOG_NAME
    argv = [*(run_as(owner) if prefix is None else prefix), pg_bin(datadir, "pg_ctl"),
            "-D", str(datadir), "-l", str(log), "-w", "-t", str(int(timeout)), "start"]  # fmt: skip
    began = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "DBFLEET_PASSPHRASE"}
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    result.started = proc.returncode == 0
    if proc.returncode != 0:
        raise EngineError(f"the restored server did not start: {_log_tail(log)}")
    while True:
        state = control_state(datadir).get("Database cluster state", "")
        if state == "in production":
            break
        if not _postmaster_alive(datadir):
            raise EngineError(f"recovery failed: {_log_tail(log)}")
        if time.monotonic() - began > timeout:
            raise EngineError(f"recovery still running after {timeout:.0f}s ({state})")
        time.sleep(0.2)
    result.recovery_seconds = round(time.monotonic() - began, 3)
    result.state = "in production"
    _read_log(log, result)


def _log_tail(log: Path, lines: int = 8) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no server log)"
    wanted = [line for line in text if re.search(r"FATAL|PANIC|ERROR", line)] or text
    return " | ".join(wanted[-lines:])


def _read_log(log: Path, result: PitrResult) -> None:
    text = log.read_text(errors="replace")
    found = {
        "stop": re.findall(r"LOG:\s+(recovery stopping [^\n]+)", text),
        "redo": re.findall(r"LOG:\s+redo done at (\S+)", text),
        "last": re.findall(r"LOG:\s+last completed transaction was at log time ([^\n]+)", text),
        "timeline": re.findall(r"LOG:\s+selected new timeline ID: (\d+)", text),
    }
    result.stop = found["stop"][-1] if found["stop"] else "end of archived WAL"
    result.redo_done_lsn = found["redo"][-1] if found["redo"] else None
    result.last_transaction_time = found["last"][-1].strip() if found["last"] else None
    result.timeline = int(found["timeline"][-1]) if found["timeline"] else None


def restore_to_datadir(
    repo: Repository,
    database: str,
    target: RecoveryTarget,
    datadir: Path,
    *,
    inventory: Path,
    start: bool = False,
    port: int | None = None,
    owner: str | None = None,
    keep_archiving: bool = False,
    command: str | None = None,
    run_prefix: Sequence[str] | None = None,
    timeout: float = 600.0,
    accept_wal_gap: bool = False,
) -> PitrResult:
    """Point-in-time restore of ``database`` (a cluster entry) into ``datadir``.

    A hole in the archive after the base backup's start makes ``latest``
    refuse (``IntegrityError``) unless ``accept_wal_gap``: PostgreSQL would
    end recovery at the hole and promote as if it were the end, silently
    dropping everything archived after it. (Time and LSN targets past a hole
    fail in PostgreSQL itself, loudly.)"""
    snapshot = choose_base_backup(base_backups(repo, database), target)
    holes = holes_after(repo, database, start_wal_file(snapshot))
    if holes and target.kind == "latest" and not accept_wal_gap:
        before, after = holes[0]
        raise IntegrityError(
            f"the WAL archive of {database} has a hole after {before} (next archived: {after}); "
            "recovery to latest would stop at the hole without saying so",
            hint="recover to a --time or --lsn before the hole, or pass --accept-wal-gap to "
            "recover as far as the hole; 'dbfleet repo check' lists every hole",
        )
    began = time.monotonic()
    datadir = datadir.absolute()
    count = extract(repo, snapshot, datadir, owner)
    result = PitrResult(
        database=database,
        base_snapshot=snapshot.id,
        target=target.describe(),
        datadir=str(datadir),
        bytes=count,
        extract_seconds=round(time.monotonic() - began, 3),
        wal_gap_after=holes[0][0] if holes else None,
    )
    if start and port is None:
        port = free_port()
    result.port = port
    result.written = write_recovery(
        datadir,
        target,
        command or restore_command(database, inventory),
        owner=owner,
        keep_archiving=keep_archiving,
        port=port,
    )
    if start:
        start_and_wait(datadir, result, owner=owner, prefix=run_prefix, timeout=timeout)
    return result
