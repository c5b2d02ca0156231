"""Stop an operation at one chosen storage call while the test does
something else, then let it go on: the concurrency tests' instrument.

``PausingStorage`` wraps any storage and holds the thread that makes the
call a :class:`Pause` names (the nth ``list`` of ``index/``, a ``get`` of a
tree blob once a snapshot was read, the middle of a listing, ...) until the
test releases it.
"""

from __future__ import annotations

import builtins
import dataclasses
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dbfleet.storage.base import ObjectInfo, Storage, UnfinishedWrite, UnfinishedWrites

WAIT = 120.0


@dataclass
class Pause:
    """Stop the ``nth`` call of ``op`` on a name starting with ``prefix`` (once
    a call matching ``after`` was made), until :meth:`release`. ``mid_list``:
    stop a listing after it yielded its first object, not before it starts."""

    op: str
    prefix: str
    nth: int = 1
    after: tuple[str, str] | None = None
    mid_list: bool = False
    read_data: bool = False
    """For the test: run the paused check with ``--read-data``."""
    reached: threading.Event = field(default_factory=threading.Event, init=False)
    resume: threading.Event = field(default_factory=threading.Event, init=False)
    _armed: bool = field(default=False, init=False)
    _seen: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._armed = self.after is None

    def fresh(self) -> Pause:
        """An unused copy (the parametrized instances are shared by backends)."""
        return dataclasses.replace(self)

    def hit(self, op: str, name: str) -> bool:
        if self.reached.is_set():
            return False
        if not self._armed:
            assert self.after is not None
            self._armed = op == self.after[0] and name.startswith(self.after[1])
            return False
        if op == self.op and name.startswith(self.prefix):
            self._seen += 1
            return self._seen == self.nth
        return False

    def hold(self) -> None:
        self.reached.set()
        assert self.resume.wait(WAIT), "the test never released the paused operation"

    def release(self) -> None:
        self.resume.set()

    def __str__(self) -> str:
        where = f"{self.op} {self.prefix}*" + (f" #{self.nth}" if self.nth > 1 else "")
        if self.after:
            where += f" after {self.after[0]} {self.after[1]}*"
        return (
            where
            + (" (mid-listing)" if self.mid_list else "")
            + (" --read-data" if self.read_data else "")
        )


class PausingStorage:
    """Any storage, stopping once at the call its :class:`Pause` names."""

    def __init__(self, inner: Storage, pause: Pause) -> None:
        self.inner = inner
        self.pause = pause
        self.url = inner.url
        self._guard = threading.Lock()

    def _at(self, op: str, name: str, *, before: bool = True) -> None:
        with self._guard:
            stop = before != self.pause.mid_list and self.pause.hit(op, name)
        if stop:
            self.pause.hold()

    def put(self, name: str, data: bytes) -> None:
        self._at("put", name)
        self.inner.put(name, data)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self._at("get", name)
        return self.inner.get(name, offset, length)

    def stat(self, name: str) -> ObjectInfo:
        self._at("stat", name)
        return self.inner.stat(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._at("list", prefix)
        for number, info in enumerate(self.inner.list(prefix)):
            yield info
            if number == 0:
                self._at("list", prefix, before=False)

    def delete(self, name: str) -> None:
        self._at("delete", name)
        self.inner.delete(name)

    def close(self) -> None:
        self.inner.close()

    def unfinished_writes(self, prefix: str = "") -> builtins.list[UnfinishedWrite]:
        self._at("unfinished", prefix)
        assert isinstance(self.inner, UnfinishedWrites)
        return self.inner.unfinished_writes(prefix)

    def remove_unfinished(self, write: UnfinishedWrite) -> bool:
        assert isinstance(self.inner, UnfinishedWrites)
        return self.inner.remove_unfinished(write)


_HELD: list[Pause] = []


def release_all() -> None:
    """Release every pause (after a failed test: the executors of a paused
    backup would otherwise hold the interpreter at exit)."""
    while _HELD:
        _HELD.pop().release()


def in_thread(
    target: Callable[[], Any],
) -> tuple[threading.Thread, list[Any], list[BaseException]]:
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(target())
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, results, errors


def start_paused(
    pause: Pause, target: Callable[[], Any]
) -> tuple[threading.Thread, list[Any], list[BaseException]]:
    """Start ``target`` in a thread and wait until it stops at ``pause``."""
    _HELD.append(pause)
    thread, results, errors = in_thread(target)
    while not pause.reached.wait(0.05):
        if not thread.is_alive():
            raise AssertionError(f"never reached {pause}: {errors or results}")
    return thread, results, errors


def finish(pause: Pause, thread: threading.Thread, errors: list[BaseException]) -> None:
    pause.release()
    thread.join(WAIT)
    assert not thread.is_alive(), f"still running after {pause}"
    if errors:
        raise errors[0]
