"""Throw-away ``redis-server`` instances: load an RDB file to look inside it.

The instance listens on a unix socket in a private directory (mode 0700),
never on TCP, has no password, saves nothing (``save ""``, no AOF) and is
shut down with ``SHUTDOWN NOSAVE``, so the RDB file it loaded is left as it
was. Loading needs a ``redis-server`` that reads the file's RDB version
(Redis 7.0 reads up to version 10, 7.2 up to 11).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import redis as redis_client
from redis.backoff import NoBackoff
from redis.retry import Retry

from dbfleet.engines.process import find_tool
from dbfleet.errors import EngineError

PACKAGE_HINT = "redis-server (Debian) to load RDB files"
DATABASES = 256
"""Enough for any RDB file: a server refuses files with more databases than it has."""


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "; ".join(line.strip() for line in text[-lines:])


@contextmanager
def throwaway_server(
    rdb_file: Path | None = None,
    *,
    bin_dir: str | None = None,
    timeout: float = 600,
) -> Iterator[str]:
    """Start ``redis-server`` on ``rdb_file`` (empty without one); yield its
    unix socket path once the data is loaded; stop it afterwards."""
    binary = find_tool("redis-server", PACKAGE_HINT, [bin_dir] if bin_dir else [])
    private = Path(tempfile.mkdtemp(prefix="dbfleet-redis-server-"))
    socket_path = private / "redis.sock"
    log = private / "redis.log"
    if rdb_file is not None:
        data_dir, dbfilename = rdb_file.resolve().parent, rdb_file.name
    else:
        data_dir, dbfilename = private, "dump.rdb"
    argv = [
        binary, "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
        "--dir", str(data_dir), "--dbfilename", dbfilename, "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--databases", str(DATABASES), "--logfile", str(log),
        "--loglevel", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = redis_client.Redis(
        unix_socket_path=str(socket_path), socket_timeout=30, retry=Retry(NoBackoff(), 0)
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                what = f"load {rdb_file}" if rdb_file is not None else "start"
                raise EngineError(f"redis-server could not {what}: {_tail(log) or 'no log'}")
            try:
                client.ping()
                break
            except redis_client.BusyLoadingError:
                pass
            except redis_client.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise EngineError(f"redis-server did not load {rdb_file} within {timeout:.0f}s")
            time.sleep(0.02)
        yield str(socket_path)
    finally:
        with suppress(redis_client.RedisError):
            client.shutdown(nosave=True)
        client.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(private, ignore_errors=True)


def server_running_in(directory: Path) -> int | None:
    """The pid of a local ``redis-server`` whose working directory (its
    ``dir``) is ``directory``, if any (Linux ``/proc``; best effort)."""
    target = directory.resolve()
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if not f.read().startswith("redis-server"):
                    continue
            if Path(os.readlink(f"/proc/{pid}/cwd")).resolve() == target:
                return int(pid)
        except OSError:
            continue
    return None
