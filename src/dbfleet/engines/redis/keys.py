"""The logical Redis stream format, key patterns and the fingerprint.

Stream ``keys`` (media type ``application/vnd.dbfleet.redis-keys``), all
integers little-endian::

    header   b"DBFLRKEY" | u8 format version (1) | u32 n | n bytes of JSON
             (db, server_version, started_ms: the server's clock when the
             backup started)
    record   b"K" | u32 key length | key | i64 expire_at_ms (-1: no expiry)
             | u64 payload length | payload (the key's DUMP payload: the
             value in RDB serialization, RDB version, CRC64)
    trailer  b"E" | u64 number of records

A stream without its trailer is truncated and is never restored.

Tables. A Redis database has no tables; dbfleet groups keys by *namespace*,
the part of the key up to the first separator (``options.separator``,
default ``:``): ``user:42`` and ``user:42:cart`` belong to table ``user:*``;
keys without a separator to table ``(root)``. A table name is also a Redis
glob pattern that selects exactly its keys (glob characters in the
namespace are escaped; bytes that are not UTF-8 become ``?``, so such
namespaces that differ only there share a table), so ``restore --table 'user:*'`` restores that
table; any other glob works too (``--table 'user:1*'``), and ``(root)``
selects the keys without a separator. A database with more than
``MAX_TABLES`` namespaces is fingerprinted as the single table ``*``.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dbfleet.errors import EngineError

MAGIC = b"DBFLRKEY"
FORMAT_VERSION = 1
MEDIA_TYPE = "application/vnd.dbfleet.redis-keys"
ROOT_TABLE = "(root)"
ALL_TABLE = "*"
MAX_TABLES = 1000
FINGERPRINT_VERSION = 1
_RECORD = struct.Struct("<q Q")
_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")
_UNDECODED = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of non-UTF-8 bytes
MOD64 = 1 << 64


# -- the stream ----------------------------------------------------------------


def encode_header(meta: dict[str, Any]) -> bytes:
    body = json.dumps(meta, sort_keys=True).encode()
    return MAGIC + bytes([FORMAT_VERSION]) + len(body).to_bytes(4, "little") + body


def encode_record(key: bytes, expire_at_ms: int | None, payload: bytes) -> bytes:
    expire = -1 if expire_at_ms is None else expire_at_ms
    return b"".join(
        (b"K", len(key).to_bytes(4, "little"), key, _RECORD.pack(expire, len(payload)), payload)
    )


def encode_trailer(count: int) -> bytes:
    return b"E" + count.to_bytes(8, "little")


@dataclass
class Record:
    key: bytes
    expire_at_ms: int | None
    payload: bytes


class _ChunkReader:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = b""
        self._pos = 0

    def read(self, n: int) -> bytes:
        if self._pos + n > len(self._buf):
            parts, have = [self._buf[self._pos :]], len(self._buf) - self._pos
            for chunk in self._chunks:
                parts.append(chunk)
                have += len(chunk)
                if have >= n:
                    break
            else:
                if have < n:
                    raise EngineError("the keys stream is truncated (no trailer)")
            self._buf, self._pos = b"".join(parts), 0
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return data


def read_stream(chunks: Iterable[bytes]) -> tuple[dict[str, Any], Iterator[Record]]:
    """The header and an iterator over the records of a ``keys`` stream."""
    r = _ChunkReader(chunks)
    if r.read(8) != MAGIC:
        raise EngineError("not a dbfleet Redis keys stream")
    version = r.read(1)[0]
    if version != FORMAT_VERSION:
        raise EngineError(f"keys stream format {version} is not supported (this dbfleet: 1)")
    meta: dict[str, Any] = json.loads(r.read(int.from_bytes(r.read(4), "little")))

    def records() -> Iterator[Record]:
        count = 0
        while True:
            tag = r.read(1)
            if tag == b"E":
                if int.from_bytes(r.read(8), "little") != count:
                    raise EngineError("the keys stream's record count does not match")
                return
            if tag != b"K":
                raise EngineError("the keys stream is damaged (bad record tag)")
            key = r.read(int.from_bytes(r.read(4), "little"))
            expire, length = _RECORD.unpack(r.read(_RECORD.size))
            count += 1
            yield Record(key, None if expire < 0 else expire, r.read(length))

    return meta, records()


# -- key patterns --------------------------------------------------------------


def glob_regex(pattern: bytes) -> re.Pattern[bytes]:
    """A regex matching what Redis's glob (``SCAN MATCH``, ``KEYS``) matches."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i : i + 1]
        i += 1
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\" and i < n:
            out.append(re.escape(pattern[i : i + 1]))
            i += 1
        elif c == b"[":
            negate = pattern[i : i + 1] == b"^"
            i += 1 if negate else 0
            members = []
            while i < n and pattern[i : i + 1] != b"]":
                if pattern[i : i + 1] == b"\\" and i + 1 < n:
                    members.append(re.escape(pattern[i + 1 : i + 2]))
                    i += 2
                elif i + 2 < n and pattern[i + 1 : i + 2] == b"-":
                    low, high = sorted((pattern[i : i + 1], pattern[i + 2 : i + 3]))
                    members.append(re.escape(low) + b"-" + re.escape(high))
                    i += 3
                else:
                    members.append(re.escape(pattern[i : i + 1]))
                    i += 1
            i += 1  # the closing bracket (Redis tolerates a missing one)
            if members:
                out.append(b"[" + (b"^" if negate else b"") + b"".join(members) + b"]")
            else:  # "[]" matches nothing, "[^]" any one character
                out.append(rb"[\s\S]" if negate else rb"[^\s\S]")
        else:
            out.append(re.escape(c))
    return re.compile(b"".join(out) + rb"\Z", re.DOTALL)


def key_text(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def text_key(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def namespace_table(key: bytes, separator: bytes) -> str:
    """The table of ``key``: its namespace as a glob. Bytes of the namespace
    that are not UTF-8 become ``?`` (which matches any one byte), so the name
    is text that a snapshot's JSON manifest can hold and still a glob that
    selects the table's keys."""
    index = key.find(separator)
    if index < 0:
        return ROOT_TABLE
    glob = key_text(_GLOB_SPECIAL.sub(rb"\\\1", key[: index + len(separator)]) + b"*")
    return _UNDECODED.sub("?", glob)


class KeySelector:
    """Which of the patterns (``--table`` values) a key matches."""

    def __init__(self, patterns: tuple[str, ...], separator: bytes) -> None:
        self.patterns = patterns
        self.separator = separator
        self._regexes = [None if p == ROOT_TABLE else glob_regex(text_key(p)) for p in patterns]

    def matching(self, key: bytes) -> list[str]:
        return [
            p
            for p, regex in zip(self.patterns, self._regexes, strict=True)
            if (self.separator not in key if regex is None else regex.match(key))
        ]

    def scan_match(self) -> bytes | None:
        """A ``SCAN MATCH`` pattern narrowing the scan (one plain pattern only)."""
        if len(self.patterns) == 1 and self.patterns[0] != ROOT_TABLE:
            return text_key(self.patterns[0])
        return None


# -- fingerprint ---------------------------------------------------------------


@dataclass
class _Tally:
    rows: int = 0
    digest: int = 0
    volatile: int = 0

    def add(self, key_digest: int, volatile: bool) -> None:
        self.rows += 1
        self.digest = (self.digest + key_digest) % MOD64
        self.volatile += volatile

    def merge(self, other: _Tally) -> None:
        self.rows += other.rows
        self.digest = (self.digest + other.digest) % MOD64
        self.volatile += other.volatile

    def entry(self, *, volatile: bool = True) -> dict[str, Any]:
        entry: dict[str, Any] = {"rows": self.rows, "digest": f"{self.digest:016x}"}
        if volatile:
            entry["volatile"] = self.volatile
        return entry


def key_digest(key: bytes, type_name: str, value_digest: bytes) -> int:
    h = hashlib.blake2b(digest_size=8)
    for part in (key, type_name.encode(), value_digest):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return int.from_bytes(h.digest(), "little")


@dataclass
class FingerprintBuilder:
    """Collects keys into the fingerprint of one database.

    Without patterns: ``{"tables": {namespace: {"rows", "digest",
    "volatile"}}, "types": {type: {"rows", "digest"}}, "separator", "hash"}``.
    With patterns: ``{"tables": {pattern: ...}}`` for exactly those patterns
    (a key counts in every pattern it matches)."""

    separator: bytes = b":"
    patterns: tuple[str, ...] = ()
    tables: dict[str, _Tally] = field(default_factory=dict)
    types: dict[str, _Tally] = field(default_factory=dict)
    _selector: KeySelector | None = None
    _collapsed: bool = False
    _names: dict[bytes, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.patterns:
            self._selector = KeySelector(self.patterns, self.separator)
            self.tables = {p: _Tally() for p in self.patterns}

    def add(self, key: bytes, type_name: str, value_digest: bytes, volatile: bool) -> None:
        digest = key_digest(key, type_name, value_digest)
        if self._selector is not None:
            for pattern in self._selector.matching(key):
                self.tables[pattern].add(digest, volatile)
            return
        self.types.setdefault(type_name, _Tally()).add(digest, volatile)
        if self._collapsed:
            table = ALL_TABLE
        else:
            index = key.find(self.separator)
            prefix = key[: index + len(self.separator)] if index >= 0 else b""
            table = self._names.get(prefix) or self._names.setdefault(
                prefix, namespace_table(key, self.separator)
            )
        self.tables.setdefault(table, _Tally()).add(digest, volatile)
        if len(self.tables) > MAX_TABLES and not self._collapsed:
            merged = _Tally()
            for tally in self.tables.values():
                merged.merge(tally)
            self.tables, self._collapsed = {ALL_TABLE: merged}, True

    def total(self) -> _Tally:
        total = _Tally()
        for tally in self.types.values():
            total.merge(tally)
        return total

    def result(self) -> dict[str, Any]:
        tables = {name: self.tables[name].entry() for name in sorted(self.tables)}
        if self.patterns:
            return {"tables": tables}
        return {
            "tables": tables,
            "types": {name: self.types[name].entry(volatile=False) for name in sorted(self.types)},
            "separator": key_text(self.separator),
            "hash": f"canonical-v{FINGERPRINT_VERSION}",
        }
