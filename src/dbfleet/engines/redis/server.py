"""Throw-away ``redis-server`` instances (load an RDB file to look inside it),
and a server's health from its ``INFO``.

The instance listens on a unix socket in a private directory (mode 0700),
never on TCP, has no password, saves nothing (``save ""``, no AOF) and is
shut down with ``SHUTDOWN NOSAVE``, so the RDB file it loaded is left as it
was. Loading needs a ``redis-server`` that reads the file's RDB version
(Redis 7.0 reads up to version 10, 7.2 up to 11).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import redis as redis_client
from redis.backoff import NoBackoff
from redis.retry import Retry

from dbfleet.engines._shared.process import find_tool
from dbfleet.engines.base import Health
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


def health_from_info(info: dict[str, Any], db: int) -> Health:
    hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
    keyspace = {k: v for k, v in info.items() if re.fullmatch(r"db\d+", k)}
    details: dict[str, Any] = {
        "keys": keyspace.get(f"db{db}", {}).get("keys", 0),
        "expires": keyspace.get(f"db{db}", {}).get("expires", 0),
        "keys_all_dbs": sum(int(v.get("keys", 0)) for v in keyspace.values()),
        "connected_clients": info.get("connected_clients"),
        "used_memory": info.get("used_memory"),
        "maxmemory": info.get("maxmemory"),
        "maxmemory_policy": info.get("maxmemory_policy"),
        "evicted_keys": info.get("evicted_keys"),
        "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
        "rdb_last_bgsave_status": info.get("rdb_last_bgsave_status"),
        "rdb_last_save_time": info.get("rdb_last_save_time"),
        "rdb_changes_since_last_save": info.get("rdb_changes_since_last_save"),
        "aof_enabled": bool(info.get("aof_enabled")),
        "role": info.get("role"),
    }
    problems = []
    if info.get("rdb_last_bgsave_status") not in (None, "ok"):
        problems.append("the last RDB save failed (rdb_last_bgsave_status=err)")
    if info.get("aof_enabled") and info.get("aof_last_write_status") not in (None, "ok"):
        problems.append("AOF writes are failing")
    if info.get("role") == "slave":
        details["master_link_status"] = info.get("master_link_status")
        details["master_last_io_seconds_ago"] = info.get("master_last_io_seconds_ago")
        if info.get("master_link_status") != "up":
            problems.append("replica is not connected to its master")
    else:
        replicas = [v for k, v in info.items() if re.fullmatch(r"slave\d+", k)]
        details["connected_replicas"] = info.get("connected_slaves", 0)
        lags = [int(r.get("lag", 0)) for r in replicas if isinstance(r, dict)]
        details["replica_lag_seconds"] = max(lags) if lags else None
    return Health(
        ok=not problems,
        version=str(info.get("redis_version")),
        size_bytes=int(info.get("used_memory", 0)),
        details=details,
        error="; ".join(problems) or None,
    )
