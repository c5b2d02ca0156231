"""The logical backup of one Neo4j database, and its fingerprint.

Streams (format in docs/neo4j.md):

``schema``
    JSON: the format, server, the element-id prefix, constraints and
    indexes (``SHOW CONSTRAINTS``/``SHOW INDEXES`` rows with their
    ``createStatement``).
``graph``
    JSON lines: ``["h", {...}]``, then one ``["n", id, labels, props]`` per
    node, then one ``["r", type, start_id, end_id, props]`` per relationship,
    then ``["end", {"nodes": N, "relationships": M}]``. Property values are
    type-tagged (:mod:`dbfleet.engines.neo4j.values`). ``id`` is the node's
    ``elementId`` with the database's prefix cut off (an integer when the
    rest is one): only a key that ties relationships to nodes within this
    backup, never restored.
``summary``
    JSON written last: node count per label, relationship count per type,
    totals. Restore reads it first to check the target before writing.

Everything is read in one read transaction, nodes first, relationships
second (Community has read-committed isolation: see docs/neo4j.md for what
that means under concurrent writes). A relationship whose start or end node
was not in the node pass (created meanwhile) is left out and counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import neo4j

from dbfleet.engines.neo4j.values import encode_props, node_hash, rel_hash

FORMAT = "dbfleet-neo4j-graph/1"
MEDIA_TYPE = "application/x-ndjson"
PIECE_BYTES = 1 << 20
NO_LABEL = "()"
IMPORT_LABEL = "__DbfleetImport"
IMPORT_KEY = "__dbfleet_id"
IMPORT_INDEX = "__dbfleet_import"
_ELEMENT_ID = re.compile(r"^(.*:)(\d+)$")
NODES_QUERY = "MATCH (n) RETURN elementId(n) AS id, labels(n) AS l, properties(n) AS p"
RELS_QUERY = (
    "MATCH ()-[r]->() RETURN type(r) AS t, elementId(startNode(r)) AS s, "
    "elementId(endNode(r)) AS e, properties(r) AS p"
)


def rel_table(rel_type: str) -> str:
    """The fingerprint table of a relationship type: ``[TYPE]``."""
    return f"[{rel_type}]"


class Ids:
    """Compact node keys: ``elementId`` minus the database's common prefix,
    as an integer when possible (``4:<uuid>:123`` -> ``123``)."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix

    def key(self, element_id: str) -> int | str:
        match = _ELEMENT_ID.match(element_id)
        if match:
            if self.prefix is None:
                self.prefix = match.group(1)
            if match.group(1) == self.prefix:
                return int(match.group(2))
        return element_id


class NodeHashes:
    """Node key -> first 8 bytes of its content hash. Integer keys live in
    one flat bytearray (8 bytes per id up to the highest id: Neo4j's ids are
    dense), others in a dict. This is the backup's one structure that grows
    with the graph; relationships need it for their endpoints' content."""

    WIDTH = 8

    def __init__(self) -> None:
        self._flat = bytearray()
        self._other: dict[int | str, bytes] = {}

    def put(self, key: int | str, digest: bytes) -> None:
        value = digest[: self.WIDTH]
        if isinstance(key, int) and 0 <= key < 1 << 40:
            end = (key + 1) * self.WIDTH
            if end > len(self._flat):
                self._flat.extend(bytes(max(end - len(self._flat), len(self._flat) // 2)))
            # an all-zero slot means "no node": keep real hashes non-zero
            self._flat[end - self.WIDTH : end] = value if any(value) else b"\x01" * self.WIDTH
        else:
            self._other[key] = value

    def get(self, key: int | str) -> bytes | None:
        if isinstance(key, int) and 0 <= key < 1 << 40:
            end = (key + 1) * self.WIDTH
            if end > len(self._flat):
                return None
            value = bytes(self._flat[end - self.WIDTH : end])
            return value if any(value) else None
        return self._other.get(key)


class FingerprintBuilder:
    """Per label and per relationship type: count and an order-independent
    digest (sum of 128-bit content hashes mod 2**128), plus totals and the
    schema. ``tables`` restricts it to those tables."""

    def __init__(self, tables: tuple[str, ...] = ()) -> None:
        self.only = set(tables)
        self.tables: dict[str, list[int]] = {}
        self.nodes = 0
        self.relationships = 0

    def _add(self, table: str, digest: bytes) -> None:
        if self.only and table not in self.only:
            return
        entry = self.tables.setdefault(table, [0, 0])
        entry[0] += 1
        entry[1] = (entry[1] + int.from_bytes(digest, "big")) % (1 << 128)

    def add_node(self, labels: list[str], digest: bytes) -> None:
        self.nodes += 1
        for label in labels or [NO_LABEL]:
            self._add(label, digest)

    def add_rel(self, rel_type: str, digest: bytes) -> None:
        self.relationships += 1
        self._add(rel_table(rel_type), digest)

    def result(self, schema: list[str]) -> dict[str, Any]:
        tables = {
            name: {"count": count, "digest": f"{digest:032x}"}
            for name, (count, digest) in sorted(self.tables.items())
        }
        return {"tables": tables, "nodes": self.nodes, "relationships": self.relationships,
                "schema": schema}  # fmt: skip


def read_schema(tx: neo4j.Transaction) -> dict[str, list[dict[str, Any]]]:
    """Constraints and indexes (without dbfleet's own import index)."""
    constraints = [
        {
            k: r.get(k)
            for k in (
                "name",
                "type",
                "entityType",
                "labelsOrTypes",
                "properties",
                "ownedIndex",
                "createStatement",
            )
        }  # fmt: skip
        for r in tx.run("SHOW CONSTRAINTS YIELD *")
    ]
    indexes = [
        {
            k: r.get(k)
            for k in (
                "name",
                "type",
                "entityType",
                "labelsOrTypes",
                "properties",
                "owningConstraint",
                "createStatement",
                "options",
            )
        }  # fmt: skip
        for r in tx.run("SHOW INDEXES YIELD *")
        if r.get("name") != IMPORT_INDEX
    ]
    for index in indexes:
        index["options"] = _plain(index.get("options"))
    return {"constraints": constraints, "indexes": indexes}


def _plain(value: Any) -> Any:
    """Index options as JSON (vector options hold only numbers and strings)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def schema_signature(schema: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The schema as the fingerprint sees it: constraints and the indexes
    they do not own, by name and definition; token lookup indexes (which
    every new database has, under generated names) by kind only."""
    lines = []
    for c in schema["constraints"]:
        lines.append(f"constraint {c['name']} {c['type']} {c['entityType']} "
                     f"{c['labelsOrTypes']} {c['properties']}")  # fmt: skip
    for i in schema["indexes"]:
        if i.get("owningConstraint"):
            continue
        if i["type"] == "LOOKUP":
            lines.append(f"index LOOKUP {i['entityType']}")
        else:
            lines.append(f"index {i['name']} {i['type']} {i['entityType']} "
                         f"{i['labelsOrTypes']} {i['properties']}")  # fmt: skip
    return sorted(lines)


def _line(record: list[Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class GraphBackup:
    """Produces the ``graph`` stream from one read transaction, computing
    the fingerprint and summary from exactly the records it writes."""

    def __init__(self, tx: neo4j.Transaction, header: dict[str, Any]) -> None:
        self.tx = tx
        self.header = header
        self.ids = Ids()
        self.fingerprint = FingerprintBuilder()
        self.labels: dict[str, int] = {}
        self.types: dict[str, int] = {}
        self.skipped = 0

    def pieces(self) -> Iterator[bytes]:
        hashes = NodeHashes()
        batch: list[bytes] = [_line(["h", self.header])]
        size = 0
        for record in self.tx.run(NODES_QUERY):
            key = self.ids.key(record["id"])
            labels = sorted(record["l"])
            props = encode_props(record["p"])
            digest = node_hash(labels, props)
            hashes.put(key, digest)
            self.fingerprint.add_node(labels, digest)
            for label in labels or [NO_LABEL]:
                self.labels[label] = self.labels.get(label, 0) + 1
            line = _line(["n", key, labels, props])
            batch.append(line)
            size += len(line)
            if size >= PIECE_BYTES:
                yield b"".join(batch)
                batch, size = [], 0
        for record in self.tx.run(RELS_QUERY):
            start, end = self.ids.key(record["s"]), self.ids.key(record["e"])
            start_hash, end_hash = hashes.get(start), hashes.get(end)
            if start_hash is None or end_hash is None:
                self.skipped += 1  # an endpoint created after the node pass
                continue
            rel_type = record["t"]
            props = encode_props(record["p"])
            self.fingerprint.add_rel(rel_type, rel_hash(rel_type, props, start_hash, end_hash))
            self.types[rel_type] = self.types.get(rel_type, 0) + 1
            line = _line(["r", rel_type, start, end, props])
            batch.append(line)
            size += len(line)
            if size >= PIECE_BYTES:
                yield b"".join(batch)
                batch, size = [], 0
        totals = {"nodes": self.fingerprint.nodes, "relationships": self.fingerprint.relationships}
        yield b"".join(batch) + _line(["end", totals])

    def summary(self) -> dict[str, Any]:
        return {"labels": self.labels, "types": self.types, "nodes": self.fingerprint.nodes,
                "relationships": self.fingerprint.relationships,
                "skipped_relationships": self.skipped, "id_prefix": self.ids.prefix}  # fmt: skip


def live_fingerprint(tx: neo4j.Transaction, tables: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fingerprint of a database as it is now, computed exactly like the
    backup's (same passes, same hashes), in one read transaction."""
    builder = FingerprintBuilder(tables)
    ids = Ids()
    hashes = NodeHashes()
    for record in tx.run(NODES_QUERY):
        labels = sorted(record["l"])
        digest = node_hash(labels, encode_props(record["p"]))
        hashes.put(ids.key(record["id"]), digest)
        builder.add_node(labels, digest)
    for record in tx.run(RELS_QUERY):
        start, end = hashes.get(ids.key(record["s"])), hashes.get(ids.key(record["e"]))
        if start is None or end is None:
            continue
        props = encode_props(record["p"])
        builder.add_rel(record["t"], rel_hash(record["t"], props, start, end))
    return builder.result(schema_signature(read_schema(tx)))
