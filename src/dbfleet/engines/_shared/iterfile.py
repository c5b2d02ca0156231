"""A readable binary file over an iterator of byte strings: how an engine
that produces its backup in pieces (a logical export over a driver) hands a
stream to :meth:`dbfleet.engines.base.StreamSink.write_stream`, which reads
files. One piece is held at a time."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any


class IteratorReader(io.RawIOBase):
    """A readable binary file over an iterator of byte strings."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._pending = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._pos >= len(self._pending):
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._pending, self._pos = piece, 0
        n = min(len(view), len(self._pending) - self._pos)
        view[:n] = self._pending[self._pos : self._pos + n]
        self._pos += n
        return n
