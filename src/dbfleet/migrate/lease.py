"""Waiting for and keeping the migration leases of a plan's databases.

The lease itself is the engine's (:meth:`Migrations.lease`): a session lock
that ends with its session, or a record that expires after ``ttl`` seconds.
:class:`Leases` takes one per database in name order, polling each (never a
blocking wait) until ``lock_timeout``, then keeps them: a heartbeat thread
renews every lease each ``ttl / 3`` seconds, so a live holder never loses
one and a dead holder's expires on its own. No manual unlock exists.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from dbfleet.errors import DbfleetError
from dbfleet.migrate.model import LeaseBusy

if TYPE_CHECKING:
    from dbfleet.engines.base import Migrations

DEFAULT_TTL = 60.0
DEFAULT_LOCK_TIMEOUT = 60.0
POLL_SECONDS = 0.5


def holder_name(plan_id: str) -> str:
    """Who holds a lease: user, host, process and plan (shown to waiters)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()} plan {plan_id}"


class Leases:
    """Context manager holding the leases of ``databases`` (name -> migrations)."""

    def __init__(
        self,
        databases: dict[str, Migrations],
        holder: str,
        *,
        ttl: float = DEFAULT_TTL,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        self.databases = databases
        self.holder = holder
        self.ttl = ttl
        self.lock_timeout = lock_timeout
        self.held: list[str] = []
        self.lost: dict[str, str] = {}
        self.waited_seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Leases:
        began = time.monotonic()
        deadline = began + self.lock_timeout
        try:
            for name in sorted(self.databases):
                while True:
                    other = self.databases[name].lease(self.holder, self.ttl)
                    if other is None:
                        self.held.append(name)
                        break
                    if time.monotonic() >= deadline:
                        raise LeaseBusy(
                            f"{name}: the migration lease is held by {other}; waited "
                            f"{time.monotonic() - began:.0f}s (--lock-timeout "
                            f"{self.lock_timeout:g})",
                            hint="it ends when that run finishes or dies; try again then",
                        )
                    time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        except BaseException:
            self._release()
            raise
        self.waited_seconds = round(time.monotonic() - began, 3)
        self._thread = threading.Thread(target=self._beat, name="migrate-lease", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(max(self.ttl / 3, 0.2)):
            for name in self.held:
                try:
                    other = self.databases[name].lease(self.holder, self.ttl)
                except DbfleetError as exc:
                    other = f"renewal failed: {exc}"
                if other is not None:
                    self.lost[name] = other

    def check(self, name: str) -> None:
        """Raise if the lease of ``name`` was lost (before running a step)."""
        if name in self.lost:
            raise LeaseBusy(f"{name}: lost the migration lease ({self.lost[name]}); stopped")

    def _release(self) -> None:
        for name in reversed(self.held):
            with contextlib.suppress(DbfleetError):  # an expiring lease ends by itself
                self.databases[name].release(self.holder)
        self.held.clear()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._release()
