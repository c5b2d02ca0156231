"""Repository locks with stale-lock detection (restic's model).

A lock is a small plaintext JSON object under ``locks/`` (no secrets in it:
host, pid, time, kind). Backups take *shared* locks (they only add immutable,
content-addressed objects, so several may run at once); operations that delete
(prune, key removal) or must see a quiet repository take an *exclusive* lock.

A lock is stale when its holder has not refreshed it for ``STALE_AFTER``
seconds (the holder refreshes every ``REFRESH_EVERY``), or when it was taken
on this host, since its last boot, by a process that no longer runs: the pid
is gone, is a zombie (``<defunct>``: exited, not yet reaped), or now belongs
to another process (its start time differs from the one the lock recorded).
Stale locks are ignored and removed by ``repo unlock``.

Removing a lock never hides why an operation ended: a lock that cannot be
removed (the storage went away with the operation's own failure) is logged
as a warning and left to go stale, and the operation's own error or result
stands.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from dbfleet.errors import LockedError, NotFoundError, StorageError
from dbfleet.storage.base import Storage

log = logging.getLogger("dbfleet.repo")

STALE_AFTER = 30 * 60
REFRESH_EVERY = 5 * 60
RETRY_REFRESH_EVERY = 30
"""After a failed refresh (storage unreachable), try again this soon."""


@dataclass(frozen=True)
class LockInfo:
    name: str
    hostname: str
    pid: int
    exclusive: bool
    operation: str
    refreshed: float
    boot_id: str | None = None
    process_start: int | None = None
    """The holder's start time (clock ticks after boot, /proc/<pid>/stat);
    ``None`` in locks of older versions and on systems without /proc."""

    def is_stale(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if now - self.refreshed > STALE_AFTER:
            return True
        if self.hostname != socket.gethostname():
            return False
        if self.boot_id is not None and self.boot_id != _boot_id():
            # Rebooted since, or another machine with the same name: only the
            # refresh time can tell, so wait for it.
            return False
        return not _process_alive(self.pid, self.process_start)

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        age = int(time.time() - self.refreshed)
        return f"{kind} lock by pid {self.pid} on {self.hostname} ({self.operation}, {age}s ago)"


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time)`` of ``pid`` from /proc, or ``None`` when there
    is no such process. Raises ``OSError`` when /proc cannot answer."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) state ppid ... starttime ...": comm may hold spaces and ")".
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _process_alive(pid: int, started: int | None) -> bool:
    """Whether ``pid`` is still the process that took the lock. Unsure means
    alive: a live lock taken for dead lets a prune delete a running backup."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists (another user's)
    try:
        stat = _proc_stat(pid)
    except (OSError, ValueError, IndexError):
        stat = None
    if stat is None:
        return True  # no /proc, or hidden (hidepid): kill(0) is all we know
    state, start = stat
    if state in ("Z", "X"):  # a zombie: exited, not yet reaped by its parent
        return False
    # a different start time: the pid was reused by another process
    return started is None or start == started


def _own_process_start() -> int | None:
    try:
        stat = _proc_stat(os.getpid())
    except (OSError, ValueError, IndexError):
        return None
    return stat[1] if stat else None


def list_locks(storage: Storage) -> list[LockInfo]:
    locks = []
    for obj in storage.list("locks/"):
        try:
            doc: dict[str, Any] = json.loads(storage.get(obj.name))
            boot_id, process_start = doc.get("boot_id"), doc.get("process_start")
            locks.append(
                LockInfo(
                    obj.name,
                    str(doc["hostname"]),
                    int(doc["pid"]),
                    bool(doc["exclusive"]),
                    str(doc.get("operation", "")),
                    float(doc["refreshed"]),
                    str(boot_id) if boot_id else None,
                    int(process_start) if process_start is not None else None,
                )
            )
        except (NotFoundError, ValueError, KeyError, TypeError):
            continue  # removed meanwhile, or half-written by a crashed writer
    return locks


def remove_stale_locks(storage: Storage) -> list[LockInfo]:
    stale = [lock for lock in list_locks(storage) if lock.is_stale()]
    for lock in stale:
        storage.delete(lock.name)
    return stale


def _remove_lock(storage: Storage, name: str, why: str) -> None:
    """Delete our lock; a failure is a warning, never an exception that
    would replace the operation's own error (or fail a finished operation)."""
    try:
        storage.delete(name)
    except StorageError as exc:
        log.warning(
            "warning: could not remove the lock %s %s: %s; it stops counting when this "
            "process has exited (on this host) or after %d minutes (elsewhere), and "
            "'dbfleet repo unlock' removes it",
            name,
            why,
            exc,
            STALE_AFTER // 60,
        )


@contextmanager
def repository_lock(storage: Storage, *, exclusive: bool, operation: str) -> Iterator[None]:
    """Hold a lock for the duration of the block; raise ``LockedError`` when a
    live conflicting lock exists."""
    name = f"locks/{secrets.token_hex(16)}"
    identity = {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "boot_id": _boot_id(),
        "process_start": _own_process_start(),
    }

    def write() -> None:
        doc = {
            **identity,
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
        _remove_lock(storage, name, f"after failing to take it for {operation}")
        raise

    stop = threading.Event()
    guard = threading.Lock()  # no refresh can re-create the lock after its removal

    def refresher() -> None:
        wait = REFRESH_EVERY
        while not stop.wait(wait):
            with guard:
                if stop.is_set():
                    return
                try:
                    write()
                    wait = REFRESH_EVERY
                except Exception as exc:  # noqa: BLE001 - a blip must not end the refreshing
                    log.warning(
                        "warning: could not refresh the lock %s (%s): %s", name, operation, exc
                    )
                    wait = RETRY_REFRESH_EVERY

    thread = threading.Thread(target=refresher, name="dbfleet-lock-refresh", daemon=True)
    thread.start()
    try:
        yield
    finally:
        with guard:
            stop.set()
        thread.join()
        _remove_lock(storage, name, f"of {operation}")


@contextmanager
def reading_lock(storage: Storage, operation: str) -> Iterator[bool]:
    """A shared lock for an operation that only reads (restore, verify), so
    that a prune cannot delete packs under it; yields whether it holds one.

    A repository that cannot take the lock file (read-only storage, a
    read-only S3 key: a common setup for restore hosts) is read without one,
    with a warning saying what that risks; a live exclusive lock (a prune
    running) still refuses with ``LockedError``, as for every reader."""
    with ExitStack() as stack:
        try:
            stack.enter_context(repository_lock(storage, exclusive=False, operation=operation))
            held = True
        except LockedError:
            raise
        except StorageError as exc:
            log.warning(
                "warning: cannot write a lock into the repository (%s); reading without one: "
                "a prune started meanwhile could remove data this %s needs",
                exc,
                operation.split()[0],
            )
            held = False
        yield held
