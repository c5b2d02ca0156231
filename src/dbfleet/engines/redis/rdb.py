"""Redis's RDB serialization, read for fingerprints.

The same serialization appears in two places: a whole RDB file (what
``redis-cli --rdb`` fetches over the replication protocol) and a ``DUMP``
payload (one value, followed by the RDB version and a CRC64). This module
decodes both into *canonical value digests* that do not depend on how the
server happened to encode a value (a small hash as a listpack, a big one as
a hash table; integers stored as integers; LZF-compressed strings), so a
value digests the same in an RDB file, in a DUMP payload taken by a logical
backup, and when read back from a restored server of another version.

Canonical value digest (``value_digest``), per type (``TYPE`` names):
    * string: BLAKE2b-128 of the bytes;
    * list: element count and a BLAKE2b-128 over the length-prefixed
      elements in order;
    * set / hash / zset: element count and the sum mod 2**128 of a
      BLAKE2b-128 per member / (field, value) / (member, score as IEEE
      double), so element order does not matter;
    * stream: entry count, the last generated ID and a BLAKE2b-128 over the
      entries (ID, fields and values) in order; consumer groups are not
      included (they are restored, not fingerprinted);
    * module types (``module:<name>``): a BLAKE2b-128 over the value's
      module serialization.

Supported encodings: RDB versions 1 to 11 (Redis 2.x to 7.2): plain
strings/lists/sets/hashes/zsets, ziplist, intset, listpack, quicklist 1
and 2, streams 1 to 3 and module values of module API version 2. Other
types (e.g. Redis 7.4's hashes with field expiry) raise ``RdbFormatError``.
The RDB checksum is not recomputed (the repository authenticates every
byte); a truncated file is detected by its missing end marker.
"""

from __future__ import annotations

import hashlib
import queue
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from dbfleet.engines.redis.encodings import (
    Item,
    RdbFormatError,
    as_bytes,
    as_int,
    intset_items,
    listpack_items,
    lzf_decompress,
    ziplist_items,
)

MOD128 = 1 << 128
MODULE_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MAX_RDB_VERSION = 11


class RdbTruncatedError(RdbFormatError):
    """The RDB stream ended before its end marker."""


# -- readers -------------------------------------------------------------------


class BytesReader:
    """``read(n)`` over bytes in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise RdbFormatError("unexpected end of data")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk


class QueueReader:
    """``read(n)`` over chunks arriving in a queue (``None`` ends them)."""

    def __init__(self, chunks: queue.Queue[bytes | None]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._pos = 0
        self._ended = False
        self.offset = 0
        """Bytes consumed so far."""

    def read(self, n: int) -> bytes:
        if self._pos + n > len(self._buf):
            parts = [self._buf[self._pos :]]
            have = len(parts[0])
            while have < n:
                chunk = None if self._ended else self._chunks.get()
                if chunk is None:
                    self._ended = True
                    raise RdbTruncatedError("the RDB stream ended early (no end marker)")
                parts.append(chunk)
                have += len(chunk)
            self._buf, self._pos = b"".join(parts), 0
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        self.offset += n
        return data

    def drain(self) -> int:
        """Discard everything up to the end; returns how many bytes that was."""
        extra = len(self._buf) - self._pos
        self._buf, self._pos = b"", 0
        while not self._ended:
            chunk = self._chunks.get()
            if chunk is None:
                self._ended = True
            else:
                extra += len(chunk)
        return extra


# -- primitives ----------------------------------------------------------------


def _read_length(r: BytesReader | QueueReader) -> tuple[int, bool]:
    """An RDB length; the flag says it is a special string encoding instead."""
    first = r.read(1)[0]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, False
    if kind == 1:
        return ((first & 0x3F) << 8) | r.read(1)[0], False
    if kind == 3:
        return first & 0x3F, True
    if first == 0x80:
        return int.from_bytes(r.read(4), "big"), False
    if first == 0x81:
        return int.from_bytes(r.read(8), "big"), False
    raise RdbFormatError(f"bad length encoding 0x{first:02x}")


def read_length(r: BytesReader | QueueReader) -> int:
    value, special = _read_length(r)
    if special:
        raise RdbFormatError("a string encoding where a length was expected")
    return value


def read_string(r: BytesReader | QueueReader) -> bytes:
    n, special = _read_length(r)
    if not special:
        return r.read(n)
    if n in (0, 1, 2):
        size = 1 << n
        return str(int.from_bytes(r.read(size), "little", signed=True)).encode()
    if n == 3:
        compressed_len = read_length(r)
        length = read_length(r)
        return lzf_decompress(r.read(compressed_len), length)
    raise RdbFormatError(f"unknown string encoding {n}")


# -- canonical digests ---------------------------------------------------------


def _h(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def _score(value: float) -> bytes:
    return struct.pack("<d", value if value != 0 else 0.0)


class _Unordered:
    """Order-independent digest of a collection's elements."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, *parts: bytes) -> None:
        self.count += 1
        self.total = (self.total + int.from_bytes(_h(*parts), "little")) % MOD128

    def digest(self) -> bytes:
        return self.count.to_bytes(8, "little") + self.total.to_bytes(16, "little")


class _Ordered:
    def __init__(self) -> None:
        self.count = 0
        self.h = hashlib.blake2b(digest_size=16)

    def add(self, part: bytes) -> None:
        self.count += 1
        self.h.update(len(part).to_bytes(8, "little"))
        self.h.update(part)

    def digest(self) -> bytes:
        return self.count.to_bytes(8, "little") + self.h.digest()


def _pairs(items: list[Item]) -> Iterator[tuple[Item, Item]]:
    if len(items) % 2:
        raise RdbFormatError("odd number of elements in a pair encoding")
    return zip(items[0::2], items[1::2], strict=True)


def read_value(r: BytesReader | QueueReader, rdb_type: int) -> tuple[str, bytes]:
    """Decode one value of ``rdb_type``; returns its type name and canonical digest."""
    if rdb_type == 0:
        return "string", _h(read_string(r))
    if rdb_type in (1, 10, 14, 18):
        ordered = _Ordered()
        if rdb_type == 1:
            for _ in range(read_length(r)):
                ordered.add(read_string(r))
        elif rdb_type == 10:
            for item in ziplist_items(read_string(r)):
                ordered.add(as_bytes(item))
        else:
            for _ in range(read_length(r)):
                container = read_length(r) if rdb_type == 18 else 2
                blob = read_string(r)
                if container == 1:  # a plain node: one large element
                    ordered.add(blob)
                else:
                    decode = listpack_items if rdb_type == 18 else ziplist_items
                    for item in decode(blob):
                        ordered.add(as_bytes(item))
        return "list", ordered.digest()
    if rdb_type in (2, 11, 20):
        members = _Unordered()
        if rdb_type == 2:
            for _ in range(read_length(r)):
                members.add(read_string(r))
        else:
            decode = intset_items if rdb_type == 11 else listpack_items
            for item in decode(read_string(r)):
                members.add(as_bytes(item))
        return "set", members.digest()
    if rdb_type in (4, 13, 16):
        fields = _Unordered()
        if rdb_type == 4:
            for _ in range(read_length(r)):
                fields.add(read_string(r), read_string(r))
        else:
            decode = ziplist_items if rdb_type == 13 else listpack_items
            for field, value in _pairs(decode(read_string(r))):
                fields.add(as_bytes(field), as_bytes(value))
        return "hash", fields.digest()
    if rdb_type in (3, 5, 12, 17):
        zset = _Unordered()
        if rdb_type in (3, 5):
            for _ in range(read_length(r)):
                plain = read_string(r)
                zset.add(plain, _score(_read_score(r, binary=rdb_type == 5)))
        else:
            decode = ziplist_items if rdb_type == 12 else listpack_items
            for member, score in _pairs(decode(read_string(r))):
                zset.add(as_bytes(member), _score(float(as_bytes(score))))
        return "zset", zset.digest()
    if rdb_type in (15, 19, 21):
        return "stream", _read_stream(r, rdb_type)
    if rdb_type == 7:
        return _read_module(r)
    raise RdbFormatError(f"unsupported RDB value type {rdb_type}")


def _read_score(r: BytesReader | QueueReader, *, binary: bool) -> float:
    if binary:
        value: float = struct.unpack("<d", r.read(8))[0]
        return value
    n = r.read(1)[0]
    special = {253: "nan", 254: "inf", 255: "-inf"}
    return float(special[n] if n in special else r.read(n))


def _read_stream(r: BytesReader | QueueReader, rdb_type: int) -> bytes:
    entries = _Ordered()
    for _ in range(read_length(r)):
        node_key = read_string(r)
        if len(node_key) != 16:
            raise RdbFormatError("bad stream node key")
        master_ms = int.from_bytes(node_key[:8], "big")
        master_seq = int.from_bytes(node_key[8:], "big")
        items = listpack_items(read_string(r))
        # master entry: count, deleted, number of fields, fields..., 0
        n_master = as_int(items[2])
        master_fields = [as_bytes(f) for f in items[3 : 3 + n_master]]
        i = 3 + n_master + 1
        while i < len(items):
            flags = as_int(items[i])
            ms = master_ms + as_int(items[i + 1])
            seq = master_seq + as_int(items[i + 2])
            i += 3
            if flags & 2:  # same fields as the master entry
                fields = master_fields
                values = [as_bytes(v) for v in items[i : i + len(fields)]]
                i += len(fields)
            else:
                n = as_int(items[i])
                pairs = items[i + 1 : i + 1 + 2 * n]
                fields, values = (
                    [as_bytes(f) for f in pairs[0::2]],
                    [as_bytes(v) for v in pairs[1::2]],
                )
                i += 1 + 2 * n
            i += 1  # lp-count of the entry
            if flags & 1:  # deleted
                continue
            parts = [ms.to_bytes(8, "big"), seq.to_bytes(8, "big")]
            for field, value in zip(fields, values, strict=True):
                parts += [field, value]
            entries.add(_h(*parts))
    read_length(r)  # number of entries (the digest counts them)
    last = read_length(r).to_bytes(8, "big") + read_length(r).to_bytes(8, "big")
    if rdb_type >= 19:
        for _ in range(5):  # first id, max deleted id, entries added
            read_length(r)
    for _ in range(read_length(r)):  # consumer groups
        read_string(r)
        read_length(r), read_length(r)
        if rdb_type >= 19:
            read_length(r)  # entries read
        for _ in range(read_length(r)):  # pending entries
            r.read(16 + 8)
            read_length(r)
        for _ in range(read_length(r)):  # consumers
            read_string(r)
            r.read(16 if rdb_type >= 21 else 8)  # seen (and active) time
            for _ in range(read_length(r)):
                r.read(16)
    return entries.digest() + last


def module_name(module_id: int) -> str:
    return "".join(MODULE_CHARSET[(module_id >> (64 - 6 * (k + 1))) & 63] for k in range(9))


def _read_module(r: BytesReader | QueueReader) -> tuple[str, bytes]:
    module_id = read_length(r)
    h = hashlib.blake2b(digest_size=16)
    _read_module_opcodes(r, h)
    return f"module:{module_name(module_id)}", h.digest()


def _read_module_opcodes(r: BytesReader | QueueReader, h: hashlib.blake2b | None = None) -> None:
    while True:
        opcode = read_length(r)
        if opcode == 0:
            return
        if opcode in (1, 2):
            data = str(read_length(r)).encode()
        elif opcode == 3:
            data = r.read(4)
        elif opcode == 4:
            data = r.read(8)
        elif opcode == 5:
            data = read_string(r)
        else:
            raise RdbFormatError(f"unknown module opcode {opcode}")
        if h is not None:
            h.update(bytes([opcode]) + len(data).to_bytes(8, "little") + data)


# -- DUMP payloads ---------------------------------------------------------------


def payload_rdb_version(payload: bytes) -> int:
    return int.from_bytes(payload[-10:-8], "little") if len(payload) >= 10 else 0


def digest_payload(payload: bytes) -> tuple[str, bytes]:
    """Type name and canonical digest of a ``DUMP`` payload."""
    r = BytesReader(payload)
    name, digest = read_value(r, r.read(1)[0])
    if len(payload) - r.pos != 10:
        raise RdbFormatError("DUMP payload has trailing bytes")
    return name, digest


# -- whole RDB files -----------------------------------------------------------


@dataclass
class RdbKey:
    db: int
    key: bytes
    type: str
    digest: bytes
    expire_ms: int | None


@dataclass
class RdbInfo:
    version: int = 0
    aux: dict[str, str] | None = None
    end_offset: int | None = None
    """Length of the RDB (up to and including its checksum)."""


def read_rdb(r: QueueReader, info: RdbInfo) -> Iterator[RdbKey]:
    """Every key of an RDB stream, in file order; fills ``info``."""
    magic = r.read(9)
    if magic[:5] != b"REDIS" or not magic[5:].isdigit():
        raise RdbFormatError("not an RDB file (no REDIS header)")
    info.version = int(magic[5:])
    if info.version > MAX_RDB_VERSION:
        raise RdbFormatError(f"RDB version {info.version} is newer than this reader knows")
    info.aux = {}
    db, expire_ms = 0, None
    while True:
        op = r.read(1)[0]
        if op == 0xFF:  # end of file, then the CRC64 (RDB 5+)
            if info.version >= 5:
                r.read(8)
            info.end_offset = r.offset
            return
        if op == 0xFA:
            name, value = read_string(r), read_string(r)
            info.aux[name.decode(errors="replace")] = value.decode(errors="replace")
        elif op == 0xFE:
            db = read_length(r)
        elif op == 0xFB:
            read_length(r), read_length(r)
        elif op == 0xFC:
            expire_ms = int.from_bytes(r.read(8), "little", signed=True)
        elif op == 0xFD:
            expire_ms = int.from_bytes(r.read(4), "little", signed=True) * 1000
        elif op == 0xF9:
            r.read(1)
        elif op == 0xF8:
            read_length(r)
        elif op == 0xF7:  # module aux data
            read_length(r)
            _read_module_opcodes(r)
        elif op == 0xF5:  # function library (Redis 7)
            read_string(r)
        elif op == 0xF4:  # slot info (Redis 7.4+)
            read_length(r), read_length(r), read_length(r)
        else:
            key = read_string(r)
            type_name, digest = read_value(r, op)
            yield RdbKey(db, key, type_name, digest, expire_ms)
            expire_ms = None
