"""Repository locks with stale-lock detection (restic's model).

A lock is a small plaintext JSON object under ``locks/`` (no secrets in it:
host, pid, time, kind). Backups take *shared* locks (they only add immutable,
content-addressed objects, so several may run at once); operations that delete
(prune, key removal) or must see a quiet repository take an *exclusive* lock.

A lock is stale when its holder has not refreshed it for ``STALE_AFTER``
seconds (the holder refreshes every ``REFRESH_EVERY``), or when it was taken
on this host by a process that no longer exists. Stale locks are ignored and
removed by ``repo unlock``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dbfleet.errors import LockedError, NotFoundError
from dbfleet.storage.base import Storage

STALE_AFTER = 30 * 60
REFRESH_EVERY = 5 * 60


@dataclass(frozen=True)
class LockInfo:
    name: str
    hostname: str
    pid: int
    exclusive: bool
    operation: str
    refreshed: float

    def is_stale(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if now - self.refreshed > STALE_AFTER:
            return True
        return self.hostname == socket.gethostname() and not _pid_alive(self.pid)

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        age = int(time.time() - self.refreshed)
        return f"{kind} lock by pid {self.pid} on {self.hostname} ({self.operation}, {age}s ago)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_locks(storage: Storage) -> list[LockInfo]:
    locks = []
    for obj in storage.list("locks/"):
        try:
            doc: dict[str, Any] = json.loads(storage.get(obj.name))
            locks.append(
                LockInfo(
                    obj.name,
                    str(doc["hostname"]),
                    int(doc["pid"]),
                    bool(doc["exclusive"]),
                    str(doc.get("operation", "")),
                    float(doc["refreshed"]),
                )
            )
        except (NotFoundError, ValueError, KeyError):
            continue  # removed meanwhile, or half-written by a crashed writer
    return locks


def remove_stale_locks(storage: Storage) -> list[LockInfo]:
    stale = [lock for lock in list_locks(storage) if lock.is_stale()]
    for lock in stale:
        storage.delete(lock.name)
    return stale


@contextmanager
def repository_lock(storage: Storage, *, exclusive: bool, operation: str) -> Iterator[None]:
    """Hold a lock for the duration of the block; raise ``LockedError`` when a
    live conflicting lock exists."""
    name = f"locks/{secrets.token_hex(16)}"

    def write() -> None:
        doc = {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "exclusive": exclusive,
            "operation": operation,
            "refreshed": time.time(),
        }
        storage.put(name, json.dumps(doc).encode())

    write()
    try:
        for other in list_locks(storage):
            if other.name == name or other.is_stale():
                continue
            if exclusive or other.exclusive:
                raise LockedError(
                    f"repository is locked: {other.describe()}",
                    hint="wait for it to finish; "
                    "if that process is gone, run 'dbfleet repo unlock'",
                )
    except BaseException:
        storage.delete(name)
        raise

    stop = threading.Event()

    def refresher() -> None:
        while not stop.wait(REFRESH_EVERY):
            write()

    thread = threading.Thread(target=refresher, name="dbfleet-lock-refresh", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        storage.delete(name)
