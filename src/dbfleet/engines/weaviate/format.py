"""The ``objects/<collection>`` stream format and the Weaviate fingerprint.

Stream (docs/weaviate.md has the byte layout): a magic line, then records,
each a kind byte and a big-endian u32 length:

* ``H`` + JSON header ``{"format", "collection", "source"}``;
* ``O`` + JSON ``{"id", "tenant"?, "properties", "vectors": [[name, *shape]]}``
  followed by the vectors' float32 little-endian bytes in that order
  (``name`` ``""`` is a collection's unnamed legacy vector; ``shape`` is
  ``[dims]`` or ``[rows, dims]`` for a multi-vector);
* ``E`` + JSON ``{"objects": N}``: the trailer; a stream without it is
  truncated and refused.

Fingerprint per collection (by its name within the namespace): object count,
an order-independent digest (sum mod 2**128 of a BLAKE2b-128 per object over
its id, its canonical properties and its vectors' float32 bytes), a digest of
the collection's normalized schema, and for multi-tenant collections the same
count and digest per tenant.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dbfleet.errors import EngineError

MAGIC = b"DBFLEET-WEAVIATE-OBJECTS/1\n"
MEDIA_TYPE = "application/x-dbfleet-weaviate-objects"
BEACON = "weaviate://localhost/"
_LEN = struct.Struct(">I")
MOD = 1 << 128
# Server-kept counters and derived settings that a restore cannot (and need
# not) reproduce; everything else of a collection's config is restored and
# compared.
VOLATILE_SHARDING = ("actualCount", "actualVirtualCount")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def is_reference(data_type: list[str]) -> bool:
    """A property whose ``dataType`` names collections (primitive types are
    lower case: text, int, number[], object, geoCoordinates, ...)."""
    return bool(data_type) and all(t[:1].isupper() for t in data_type)


def reference_properties(config: dict[str, Any]) -> set[str]:
    return {
        str(p["name"])
        for p in config.get("properties") or []
        if is_reference(list(p.get("dataType") or []))
    }


def rename_refs(
    properties: dict[str, Any], refs: set[str], rename: Callable[[str], str]
) -> dict[str, Any]:
    """``properties`` with every beacon of the ``refs`` properties pointing at
    ``rename(collection)``, ``href`` dropped (the server derives it)."""
    if not refs:
        return properties
    out = dict(properties)
    for name in refs & set(properties):
        beacons = []
        for ref in properties[name] or []:
            beacon = str(ref.get("beacon", ""))
            rest = beacon.removeprefix(BEACON)
            collection, slash, uuid = rest.partition("/")
            if beacon.startswith(BEACON) and slash:
                beacon = f"{BEACON}{rename(collection)}/{uuid}"
            beacons.append({"beacon": beacon})
        out[name] = beacons
    return out


def normalize_schema(config: dict[str, Any], rename: Callable[[str], str]) -> dict[str, Any]:
    """A collection's config without its name, with reference targets renamed
    by ``rename``, properties in name order and without server-kept counters."""
    doc = json.loads(json.dumps(config))
    doc.pop("class", None)
    for prop in doc.get("properties") or []:
        types = list(prop.get("dataType") or [])
        if is_reference(types):
            prop["dataType"] = [rename(t) for t in types]
    # By name: a restore adds reference properties after the others, and
    # the order of properties means nothing to Weaviate.
    doc["properties"] = sorted(doc.get("properties") or [], key=lambda p: str(p["name"]))
    sharding = doc.get("shardingConfig")
    if isinstance(sharding, dict):
        for key in VOLATILE_SHARDING:
            sharding.pop(key, None)
    return dict(doc)


def schema_digest(normalized: dict[str, Any]) -> str:
    return hashlib.blake2b(canonical_json(normalized), digest_size=8).hexdigest()


# -- vectors ---------------------------------------------------------------


def vectors_of(obj: dict[str, Any]) -> list[tuple[str, list[int], bytes]]:
    """An object's vectors from the REST answer as ``(name, shape, float32
    bytes)``, sorted by name; ``""`` is the unnamed legacy vector."""
    found: dict[str, Any] = {}
    if obj.get("vector"):
        found[""] = obj["vector"]
    for name, value in (obj.get("vectors") or {}).items():
        if value and name not in found:
            found[str(name)] = value
    out = []
    for name in sorted(found):
        value = found[name]
        if value and isinstance(value[0], list):  # a multi-vector
            dims = len(value[0])
            flat = [x for row in value for x in row]
            shape = [len(value), dims]
        else:
            flat, shape = value, [len(value)]
        out.append((name, shape, struct.pack(f"<{len(flat)}f", *flat)))
    return out


def unpack_vector(shape: list[int], data: bytes) -> list[float] | list[list[float]]:
    values = list(struct.unpack(f"<{len(data) // 4}f", data))
    if len(shape) == 1:
        return values
    dims = shape[1]
    return [values[i : i + dims] for i in range(0, len(values), dims)]


# -- records ---------------------------------------------------------------


def _frame(kind: bytes, doc: dict[str, Any]) -> bytes:
    body = canonical_json(doc)
    return kind + _LEN.pack(len(body)) + body


def encode_header(doc: dict[str, Any]) -> bytes:
    return MAGIC + _frame(b"H", doc)


def encode_trailer(count: int) -> bytes:
    return _frame(b"E", {"objects": count})


@dataclass
class Record:
    id: str
    tenant: str | None
    properties: dict[str, Any]
    vectors: list[tuple[str, list[int], bytes]]

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "id": self.id,
            "properties": self.properties,
            "vectors": [[name, *shape] for name, shape, _ in self.vectors],
        }
        if self.tenant is not None:
            doc["tenant"] = self.tenant
        return _frame(b"O", doc) + b"".join(data for _, _, data in self.vectors)

    def object_hash(self, canonical_props: dict[str, Any]) -> int:
        h = hashlib.blake2b(digest_size=16)
        h.update(self.id.encode() + b"\0" + canonical_json(canonical_props) + b"\0")
        for name, shape, data in self.vectors:
            h.update(canonical_json([name, *shape]) + data)
        return int.from_bytes(h.digest(), "big")


class _Buffer:
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = bytearray()

    def take(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise EngineError("truncated Weaviate objects stream")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def at_end(self) -> bool:
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return True
            self._buf += chunk
        return False


def read_stream(chunks: Iterable[bytes]) -> tuple[dict[str, Any], Iterator[Record]]:
    """The header and a lazy iterator over the records; the iterator raises
    ``EngineError`` if the stream is truncated or its count is wrong."""
    buf = _Buffer(chunks)
    if buf.take(len(MAGIC)) != MAGIC:
        raise EngineError("not a dbfleet Weaviate objects stream")

    def frame() -> tuple[bytes, dict[str, Any]]:
        kind = buf.take(1)
        (size,) = _LEN.unpack(buf.take(4))
        return kind, json.loads(buf.take(size))

    kind, header = frame()
    if kind != b"H":
        raise EngineError("Weaviate objects stream without a header")

    def records() -> Iterator[Record]:
        count = 0
        while True:
            kind, doc = frame()
            if kind == b"E":
                if int(doc["objects"]) != count:
                    raise EngineError(
                        f"Weaviate objects stream holds {count} objects, trailer says "
                        f"{doc['objects']}"
                    )
                if not buf.at_end():
                    raise EngineError("data after the end of a Weaviate objects stream")
                return
            if kind != b"O":
                raise EngineError(f"unknown record kind {kind!r} in a Weaviate objects stream")
            vectors = []
            for name, *shape in doc.get("vectors") or []:
                size = 4
                for n in shape:
                    size *= int(n)
                vectors.append((str(name), [int(n) for n in shape], buf.take(size)))
            count += 1
            yield Record(str(doc["id"]), doc.get("tenant"), doc.get("properties") or {}, vectors)

    return header, records()


# -- fingerprint -----------------------------------------------------------


@dataclass
class _Sum:
    objects: int = 0
    digest: int = 0

    def add(self, value: int) -> None:
        self.objects += 1
        self.digest = (self.digest + value) % MOD

    def entry(self) -> dict[str, Any]:
        return {"objects": self.objects, "digest": f"{self.digest:032x}"}


@dataclass
class CollectionPrint:
    """The fingerprint of one collection, built object by object."""

    schema: str
    multi_tenant: bool
    tenants: list[str] = field(default_factory=list)
    total: _Sum = field(default_factory=_Sum)
    per_tenant: dict[str, _Sum] = field(default_factory=dict)

    def add(self, record: Record, canonical_props: dict[str, Any]) -> None:
        value = record.object_hash(canonical_props)
        self.total.add(value)
        if self.multi_tenant:
            self.per_tenant.setdefault(record.tenant or "", _Sum()).add(value)

    def entry(self) -> dict[str, Any]:
        out = {**self.total.entry(), "schema": self.schema}
        if self.multi_tenant:
            out["tenants"] = {
                t: self.per_tenant.get(t, _Sum()).entry() for t in sorted(self.tenants)
            }
        return out
