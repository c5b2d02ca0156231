"""Fingerprint an RDB while it streams from ``redis-cli --rdb -`` into the repository.

A parser thread reads a copy of every chunk from a bounded queue (so the
parser's pace bounds memory, not the dump's size) and fingerprints each
key as it passes. The tap also removes the 40-byte EOF mark that
``redis-cli --rdb -`` (Redis 7.0) copies to stdout after the RDB when the
server sends it disk-less: the parser knows where the RDB ends, so the
stored stream is exactly the RDB file.
"""

from __future__ import annotations

import io
import logging
import queue
import string
import threading
from typing import IO, Any

from dbfleet.engines.redis.encodings import RdbFormatError
from dbfleet.engines.redis.keys import FingerprintBuilder
from dbfleet.engines.redis.rdb import (
    QueueReader,
    RdbInfo,
    RdbTruncatedError,
    read_rdb,
)
from dbfleet.errors import EngineError

log = logging.getLogger(__name__)

EOF_MARK = 40
HOLD = EOF_MARK + 9  # the mark, and before it the RDB's end opcode and checksum
HEX = set(string.hexdigits.encode())
QUEUE_CHUNKS = 16
READ_SIZE = 1 << 20


class RdbTap:
    def __init__(self, db: int, separator: bytes, expired_before_ms: int) -> None:
        self.info = RdbInfo()
        self._db = db
        self._expired_before = expired_before_ms
        self._separator = separator
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._main = FingerprintBuilder(separator)
        self._others: dict[int, FingerprintBuilder] = {}
        self._error: str | None = None
        self._truncated = False
        self._problem: str | None = None
        self._total = 0
        self._ended = False
        self._thread = threading.Thread(target=self._parse, name="dbfleet-redis-rdb", daemon=True)
        self._thread.start()

    def wrap(self, inner: IO[bytes]) -> _TapReader:
        return _TapReader(self, inner)

    def _parse(self) -> None:
        reader = QueueReader(self._queue)
        try:
            for key in read_rdb(reader, self.info):
                if key.expire_ms is not None and key.expire_ms <= self._expired_before:
                    continue  # gone before the backup began; a server loading the file drops it
                if key.db == self._db:
                    builder = self._main
                else:
                    builder = self._others.setdefault(key.db, FingerprintBuilder(self._separator))
                builder.add(key.key, key.type, key.digest, key.expire_ms is not None)
        except RdbTruncatedError:
            self._truncated = True
        except RdbFormatError as exc:
            self._error = str(exc)
        except Exception as exc:  # noqa: BLE001 - the dump goes on; the fingerprint is lost
            self._error = f"{type(exc).__name__}: {exc}"
        finally:
            reader.drain()

    def feed(self, data: bytes) -> None:
        self._total += len(data)
        self._queue.put(data)

    def finish(self, tail: bytes) -> int:
        """The end of the dump; ``tail`` is its last bytes. Returns how many
        of them to drop (the EOF mark)."""
        self._end()
        mark = len(tail) >= EOF_MARK and all(b in HEX for b in tail[-EOF_MARK:])
        if self.info.end_offset is not None:
            extra = self._total - self.info.end_offset
            if extra == 0:
                return 0
            if extra == EOF_MARK and mark:
                return EOF_MARK
            self._problem = f"{extra} unexpected bytes after the end of the RDB"
            return 0
        if self._error and mark and len(tail) >= HOLD and tail[-HOLD] == 0xFF:
            return EOF_MARK  # not parsed, but it ends like an RDB followed by the mark
        return 0

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put(None)
        self._thread.join()

    def close(self) -> None:
        self._end()

    def result(self) -> dict[str, Any] | None:
        """The fingerprint; ``EngineError`` if the RDB was incomplete, ``None``
        if it could not be parsed (logged)."""
        self._end()
        if self._truncated:
            raise EngineError("the RDB from redis-cli ended before its end marker (incomplete)")
        if self._problem:
            raise EngineError(f"the RDB from redis-cli is damaged: {self._problem}")
        if self._error:
            log.warning("cannot fingerprint the RDB (%s): the snapshot has no fingerprint",
                        self._error)  # fmt: skip
            return None
        fingerprint = self._main.result()
        fingerprint["databases"] = {
            str(db): self._others[db].total().entry() for db in sorted(self._others)
        }
        return fingerprint


class _TapReader(io.RawIOBase):
    """What the repository reads: the dump tool's output, minus the EOF mark,
    each chunk also handed to the parser."""

    def __init__(self, tap: RdbTap, inner: IO[bytes]) -> None:
        self._tap = tap
        self._inner = inner
        self._hold = bytearray()
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while True:
            ready = len(self._hold) - (0 if self._eof else HOLD)
            if ready > 0 or self._eof:
                n = min(len(view), max(ready, 0))
                view[:n] = self._hold[:n]
                del self._hold[:n]
                return n
            data = self._inner.read1(READ_SIZE) if hasattr(self._inner, "read1") else (
                self._inner.read(READ_SIZE))  # fmt: skip
            if data:
                self._hold += data
                self._tap.feed(bytes(data))
            else:
                self._eof = True
                drop = self._tap.finish(bytes(self._hold[-HOLD:]))
                if drop:
                    del self._hold[-drop:]
