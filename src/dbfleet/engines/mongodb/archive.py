"""Read a ``mongodump --archive`` stream as it passes into the repository.

The archive format (mongo-tools ``common/archive/spec.md``)::

    archive  = magic, header, *collection-metadata, terminator,
               *(namespace-header, *document, terminator)
    terminator = 0xffffffff

Every item other than the magic number and the terminators is one BSON
document with its int32 length first, so the stream can be followed with a
length prefix and one flag. :class:`ArchiveTap` does that while the bytes go
by and yields, without a second pass and without staging:

* per collection the document count and an order-independent digest (the
  sum mod 2^256 of the BLAKE3 of each document's raw BSON): the fingerprint
  of exactly what the stream holds;
* per collection the index definitions and options from its metadata
  document (normalized the same way as :func:`collection_shape` does for a
  live server, so a restored copy compares equal);
* the timestamp of the last oplog entry when ``mongodump --oplog`` added
  the oplog (namespace ``""."oplog"``): the snapshot's consistency point.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import bson
from blake3 import blake3
from bson import json_util

MAGIC = b"\x6d\xe2\x99\x81"  # 0x8199e26d, little-endian
TERMINATOR = -1
DIGEST_MOD = 1 << 256
READ_SIZE = 1 << 20
MAX_DOCUMENT = 48 << 20  # BSON documents are at most 16 MiB; leave room for headers
OPLOG_NAMESPACE = ("", "oplog")
# Index fields that describe what an index does. Others ("v", "ns",
# "background", text index weights' "textIndexVersion") vary between
# servers and versions without changing the index.
INDEX_FIELDS = (
    "key", "unique", "sparse", "expireAfterSeconds", "partialFilterExpression",
    "collation", "hidden", "weights", "default_language", "language_override",
    "2dsphereIndexVersion",
)  # fmt: skip
# Collection options the fingerprint covers; "uuid" differs per copy.
OPTION_FIELDS = (
    "capped", "size", "max", "validator", "validationLevel", "validationAction",
    "collation", "timeseries", "expireAfterSeconds", "clusteredIndex",
    "changeStreamPreAndPostImages",
)  # fmt: skip


class ArchiveError(ValueError):
    """The stream is not a well-formed mongodump archive."""


def _plain(value: Any) -> Any:
    """JSON-able form of a BSON value in which numbers compare by value
    (``1``, ``1.0`` and ``Int64(1)`` are the same index direction)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        number = float(value)
        return int(number) if number.is_integer() else number
    return json.loads(json_util.dumps(value, json_options=json_util.CANONICAL_JSON_OPTIONS))


def describe_index(index: Mapping[str, Any]) -> str:
    """One line per index: its name and what it does, canonical JSON."""
    body = {k: _plain(index[k]) for k in INDEX_FIELDS if k in index and index[k] is not False}
    # The key's field order is the index's order: a list, which sort_keys keeps.
    body["key"] = [[str(k), _plain(v)] for k, v in dict(index.get("key") or {}).items()]
    return f"{index.get('name')} {json.dumps(body, sort_keys=True, separators=(',', ':'))}"


def collection_shape(
    indexes: Iterable[Mapping[str, Any]], options: Mapping[str, Any]
) -> dict[str, Any]:
    """The part of a collection's fingerprint that is not its documents."""
    kept = {k: _plain(options[k]) for k in OPTION_FIELDS if k in options}
    return {
        "indexes": sorted(describe_index(i) for i in indexes),
        "options": json.dumps(kept, sort_keys=True, separators=(",", ":")),
    }


@dataclass
class CollectionSum:
    """Running count and digest of one collection's documents."""

    count: int = 0
    total: int = 0

    def add(self, raw: bytes | memoryview) -> None:
        self.count += 1
        self.total = (self.total + int.from_bytes(blake3(raw).digest(), "big")) % DIGEST_MOD

    def entry(self, shape: dict[str, Any]) -> dict[str, Any]:
        return {"count": self.count, "digest": f"{self.total:064x}", **shape}


@dataclass
class ArchiveSummary:
    """What :class:`ArchiveTap` learned from a complete archive."""

    header: dict[str, Any]
    collections: dict[tuple[str, str], dict[str, Any]]
    """(database, collection) -> fingerprint entry (count, digest, indexes, options)."""
    views: list[tuple[str, str]]
    indexes: dict[tuple[str, str], list[dict[str, Any]]]
    """(database, collection) -> index definitions from the archive's metadata."""
    oplog_entries: int
    last_oplog: dict[str, Any] | None
    """The last oplog entry's ``ts`` as ``{"t": seconds, "i": increment}``."""
    namespaces: set[tuple[str, str]] = field(default_factory=set)


class ArchiveTap:
    """Incremental parser: ``feed`` the archive's bytes in any pieces, then
    ``finish``. Every namespace is summarized; the engine decides which ones
    its fingerprint covers (system collections are left out)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = "magic"
        self._namespace: tuple[str, str] | None = None
        self._header: dict[str, Any] = {}
        self._shapes: dict[tuple[str, str], dict[str, Any]] = {}
        self._views: list[tuple[str, str]] = []
        self._indexes: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._sums: dict[tuple[str, str], CollectionSum] = {}
        self._seen: set[tuple[str, str]] = set()
        self._oplog_entries = 0
        self._last_oplog: bytes | None = None
        self.error: ArchiveError | None = None

    def offer(self, data: bytes) -> None:
        """``feed``, but a malformed archive is only recorded (``finish``
        raises it): the bytes keep flowing, so the dump tool's own exit
        status and message decide first whether the backup failed."""
        if self.error is None:
            try:
                self.feed(data)
            except ArchiveError as exc:
                self.error = exc

    def feed(self, data: bytes) -> None:
        self._buf += data
        pos = 0
        with memoryview(self._buf) as view:
            size = len(view)
            if self._state == "magic":
                if size < 4:
                    return
                if bytes(view[:4]) != MAGIC:
                    raise ArchiveError("not a mongodump archive (bad magic number)")
                pos, self._state = 4, "header"
            while size - pos >= 4:
                (length,) = struct.unpack_from("<i", view, pos)
                if length == TERMINATOR:
                    self._terminator()
                    pos += 4
                    continue
                if length < 5 or length > MAX_DOCUMENT:
                    raise ArchiveError(f"bad document length {length} in archive")
                if size - pos < length:
                    break
                self._document(view[pos : pos + length])
                pos += length
        del self._buf[:pos]

    def _terminator(self) -> None:
        if self._state == "metadata":
            self._state = "namespace"
        elif self._state == "data":
            self._state, self._namespace = "namespace", None
        else:
            raise ArchiveError(f"unexpected terminator in archive ({self._state})")

    def _document(self, raw: memoryview) -> None:
        state = self._state
        if state == "data":
            namespace = self._namespace
            assert namespace is not None
            if namespace == OPLOG_NAMESPACE:
                self._oplog_entries += 1
                self._last_oplog = bytes(raw)
            else:
                found = self._sums.get(namespace)
                if found is not None:
                    found.add(raw)
        elif state == "namespace":
            doc = bson.decode(bytes(raw))
            self._namespace = (str(doc.get("db", "")), str(doc.get("collection", "")))
            self._seen.add(self._namespace)
            if self._namespace not in self._sums and self._namespace != OPLOG_NAMESPACE:
                self._sums[self._namespace] = CollectionSum()
            self._state = "data"
        elif state == "header":
            self._header = bson.decode(bytes(raw))
            self._state = "metadata"
        elif state == "metadata":
            doc = bson.decode(bytes(raw))
            namespace = (str(doc.get("db", "")), str(doc.get("collection", "")))
            if doc.get("type") == "view":  # no documents of its own
                self._views.append(namespace)
                return
            metadata = json_util.loads(doc.get("metadata") or "{}")
            self._indexes[namespace] = [dict(i) for i in metadata.get("indexes") or []]
            self._shapes[namespace] = collection_shape(
                metadata.get("indexes") or [], metadata.get("options") or {}
            )
            self._sums.setdefault(namespace, CollectionSum())
        else:  # pragma: no cover - the states above are exhaustive
            raise ArchiveError(f"parser in unknown state {state}")

    def finish(self) -> ArchiveSummary:
        if self.error is not None:
            raise self.error
        if self._state == "magic" and not self._buf:
            raise ArchiveError("the archive is empty")
        if self._buf:
            raise ArchiveError(f"archive ends inside a document ({len(self._buf)} bytes left)")
        if self._state != "namespace":
            raise ArchiveError(f"archive ends early ({self._state})")
        last = None
        if self._last_oplog is not None:
            ts = bson.decode(self._last_oplog).get("ts")
            if isinstance(ts, bson.Timestamp):
                last = {"t": ts.time, "i": ts.inc}
        empty = {"indexes": [], "options": "{}"}
        return ArchiveSummary(
            header=self._header,
            collections={
                ns: total.entry(self._shapes.get(ns, empty)) for ns, total in self._sums.items()
            },
            views=sorted(self._views),
            indexes=dict(self._indexes),
            oplog_entries=self._oplog_entries,
            last_oplog=last,
            namespaces=set(self._seen),
        )


class TapReader(io.RawIOBase):
    """The dump tool's output as the repository reads it, every piece also
    fed to an :class:`ArchiveTap` (``tap``)."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.tap = ArchiveTap()
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        read1 = getattr(self._inner, "read1", None)
        data = read1(len(view)) if read1 is not None else self._inner.read(len(view))
        if data:
            self.tap.offer(data)
            view[: len(data)] = data
        return len(data)
