"""A Storage wrapper that retries transient failures with exponential backoff.

Like restic's ``RetryBackend``: the same interface as every backend, so it
wraps any of them. It retries :class:`~dbfleet.errors.StorageError` except
:class:`~dbfleet.errors.NotFoundError` (an answer, not a failure) and
:class:`PermanentStorageError` (access denied, no such bucket, an invalid
name: retrying cannot help). Every operation of the interface is safe to
repeat: ``put`` overwrites atomically, ``delete`` of a missing name is fine.

``list`` is retried too: after a failure mid-listing it lists again from the
start and skips the names it already yielded, so no name is yielded twice.
"""

from __future__ import annotations

import builtins
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from dbfleet.errors import NotFoundError, StorageError
from dbfleet.storage.base import ObjectInfo, Storage, UnfinishedWrite, UnfinishedWrites

__all__ = ["PermanentStorageError", "RetryingStorage", "is_transient"]

log = logging.getLogger("dbfleet.storage")

T = TypeVar("T")


class PermanentStorageError(StorageError):
    """A storage failure that retrying cannot fix (credentials refused, no such
    bucket, an invalid object name)."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failure is worth retrying."""
    return isinstance(exc, StorageError) and not isinstance(
        exc, NotFoundError | PermanentStorageError
    )


class RetryingStorage:
    """Retries each operation of ``inner`` up to ``attempts`` times in all.

    The delay before retry ``n`` (1-based) is ``base_delay * 2**(n-1)``, capped
    at ``max_delay``, with jitter (a random 50-100 % of it) so that parallel
    uploaders do not retry in lockstep. ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        inner: Storage,
        *,
        attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.inner = inner
        self.url = inner.url
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self.retries = 0
        """How many retries this wrapper made so far (for tests and stats)."""

    def _delay(self, retry: int) -> float:
        delay = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return delay * random.uniform(0.5, 1.0)

    def _backoff(self, what: str, attempt: int, exc: StorageError) -> None:
        """Sleep before the next attempt, or re-raise when none is left."""
        if attempt >= self.attempts or not is_transient(exc):
            raise exc
        delay = self._delay(attempt)
        self.retries += 1
        log.warning(
            "%s failed (attempt %d of %d), retrying in %.1f s: %s",
            what,
            attempt,
            self.attempts,
            delay,
            exc,
        )
        self._sleep(delay)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except StorageError as exc:
                self._backoff(what, attempt, exc)

    def put(self, name: str, data: bytes) -> None:
        self._call(f"put {name}", lambda: self.inner.put(name, data))

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._call(f"get {name}", lambda: self.inner.get(name, offset, length))

    def stat(self, name: str) -> ObjectInfo:
        return self._call(f"stat {name}", lambda: self.inner.stat(name))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        seen: set[str] = set()
        attempt = 0
        while True:
            attempt += 1
            try:
                for info in self.inner.list(prefix):
                    if info.name not in seen:
                        seen.add(info.name)
                        yield info
                return
            except StorageError as exc:
                self._backoff(f"list {prefix!r}", attempt, exc)

    def delete(self, name: str) -> None:
        self._call(f"delete {name}", lambda: self.inner.delete(name))

    def close(self) -> None:
        self.inner.close()

    def unfinished_writes(self, prefix: str = "") -> builtins.list[UnfinishedWrite]:
        """The inner backend's (none if it leaves no debris)."""
        inner = self.inner
        if not isinstance(inner, UnfinishedWrites):
            return []
        return self._call(
            f"list unfinished writes {prefix!r}", lambda: inner.unfinished_writes(prefix)
        )

    def remove_unfinished(self, write: UnfinishedWrite) -> bool:
        inner = self.inner
        if not isinstance(inner, UnfinishedWrites):
            return True
        return self._call(f"remove unfinished {write.name}", lambda: inner.remove_unfinished(write))
