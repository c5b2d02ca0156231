"""The events of a MySQL/MariaDB binary log file: framing a file's bytes into
events and checking them (:class:`FileStats`), and a file's bytes read back
from its events (:class:`EventReader`)."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dbfleet.errors import EngineError

MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIIIH")  # timestamp, type, server id, size, end position, flags
ROTATE, STOP, FORMAT_DESCRIPTION, HEARTBEAT = 4, 3, 15, 27
KIND = "binlog"
_CLOSED_BY = {ROTATE: "rotate", STOP: "stop"}


def utc(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


# -- events ----------------------------------------------------------------


@dataclass
class FileStats:
    """What reading one binlog file found (recorded in its snapshot)."""

    name: str
    size: int = len(MAGIC)
    events: int = 0
    server_id: int | None = None
    created: int | None = None
    """The format description event's timestamp: when the file was opened."""
    last_event: int | None = None
    max_event: int = 0
    closed_by: str | None = None
    """``rotate`` or ``stop`` (its last event), else ``unclean`` (the server
    crashed and went on with a new file)."""

    def check(self, event: bytes) -> None:
        """Frame and check one event at the current end of the file."""
        if len(event) < HEADER.size:
            raise EngineError(f"binlog {self.name}: truncated event at offset {self.size}")
        when, kind, server_id, size, end, _ = HEADER.unpack_from(event)
        if size != len(event) or (end and end != (self.size + size) & 0xFFFFFFFF):
            raise EngineError(
                f"binlog {self.name}: event at offset {self.size} has size {size} and ends at "
                f"{end}, expected {len(event)} bytes ending at {self.size + len(event)}"
            )
        if self.events == 0:
            if kind != FORMAT_DESCRIPTION:
                raise EngineError(f"binlog {self.name} does not start with a format description")
            self.created, self.server_id = when, server_id
        self.events += 1
        self.size += size
        self.last_event = when or self.last_event
        self.max_event = max(self.max_event, when)
        self.closed_by = _CLOSED_BY.get(kind, "unclean")

    def options(self, source: str) -> dict[str, Any]:
        return {
            "kind": KIND, "file": self.name, "size": self.size, "events": self.events,
            "server_id": self.server_id, "source": source, "closed_by": self.closed_by,
            "created": utc(self.created or 0), "first_event_time": utc(self.created or 0),
            "last_event_time": utc(self.last_event or 0), "max_event_time": utc(self.max_event),
        }  # fmt: skip


def split_events(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Events of a binlog file given as arbitrary blocks (magic included)."""
    buf = b""
    magic_seen = False
    for block in blocks:
        buf = buf + block if buf else block
        pos = 0
        if not magic_seen:
            if len(buf) < len(MAGIC):
                continue
            if buf[: len(MAGIC)] != MAGIC:
                raise EngineError("not a binary log file (bad magic number)")
            magic_seen, pos = True, len(MAGIC)
        while len(buf) - pos >= HEADER.size:
            size = HEADER.unpack_from(buf, pos)[3]
            if size < HEADER.size:
                raise EngineError(f"corrupt binlog event header (size {size})")
            if len(buf) - pos < size:
                break
            yield buf[pos : pos + size]
            pos += size
        buf = buf[pos:]
    if buf:
        raise EngineError(f"binlog ends inside an event ({len(buf)} bytes left over)")


class EventReader(io.RawIOBase):
    """A binlog file's bytes (magic, then events) from an event iterator,
    checked with :class:`FileStats` on the way (for ``write_stream``)."""

    def __init__(self, events: Iterator[bytes], stats: FileStats) -> None:
        super().__init__()
        self._events = events
        self.stats = stats
        self._pending = memoryview(MAGIC)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            if not self._pending:
                event = next(self._events, None)
                if event is None:
                    break
                self.stats.check(event)
                self._pending = memoryview(event)
            n = min(len(view) - filled, len(self._pending))
            view[filled : filled + n] = self._pending[:n]
            self._pending = self._pending[n:]
            filled += n
        return filled
