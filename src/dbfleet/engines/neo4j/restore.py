"""Restore a logical Neo4j backup with batched ``UNWIND`` writes.

Order (see docs/neo4j.md): read ``schema`` and ``summary``; check the target
(without ``clean`` any node with a label of the backup, relationship of one
of its types, or constraint/index of the same name fails the restore before
anything is written); with ``clean`` delete those first; create a temporary
index on ``(:__DbfleetImport {__dbfleet_id})``; create nodes in batches
(grouped by label set, carrying the backup's node key in that temporary
label and property); create relationships in batches (grouped by type,
endpoints found through the index); remove the temporary label, property and
index; then create constraints and indexes (after the data: building an
index once is faster than maintaining it per batch) and wait for them.

A restore that fails while writing data deletes the nodes it created (they
still carry the temporary label) before raising, so the target is as before.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import neo4j

from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.neo4j.graph import (
    FORMAT,
    IMPORT_INDEX,
    IMPORT_KEY,
    IMPORT_LABEL,
    NO_LABEL,
    rel_table,
)
from dbfleet.engines.neo4j.values import decode_props
from dbfleet.errors import EngineError, UsageError

log = logging.getLogger(__name__)

BATCH_ROWS = 5000
BATCH_BYTES = 4 << 20
DELETE_BATCH = 10000
INDEX_WAIT_SECONDS = 3600
ErrorFn = Callable[[BaseException, str], EngineError]
OpenStream = Callable[[str], Iterator[bytes]]


def ident(name: str) -> str:
    """A backtick-quoted Cypher name (labels, types, index names)."""
    return "`" + name.replace("`", "``") + "`"


def read_json(chunks: Iterator[bytes]) -> Any:
    return json.loads(b"".join(chunks))


def read_lines(chunks: Iterator[bytes]) -> Iterator[tuple[list[Any], int]]:
    """The ``graph`` stream's records with their size in bytes;
    ``EngineError`` if the stream is cut short."""
    pending = b""
    ended = False
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            record = json.loads(line)
            if record[0] == "end":
                ended = True
            yield record, len(line)
    if pending.strip() or not ended:
        raise EngineError("the graph stream ends without its trailer: the backup is incomplete")


class GraphRestore:
    """Restores the streams of one logical snapshot into ``session``'s database."""

    def __init__(self, driver: neo4j.Driver, database: str | None, where: str,
                 error: ErrorFn, batch_rows: int = BATCH_ROWS) -> None:  # fmt: skip
        self.driver = driver
        self.database = database
        self.where = where
        self.error = error
        self.batch_rows = batch_rows

    def _session(self) -> neo4j.Session:
        return self.driver.session(database=self.database)

    def _write(self, query: str, **params: Any) -> neo4j.SummaryCounters:
        """One statement in its own explicit transaction (no driver retries:
        a failure is reported, not repeated behind the caller's back)."""
        with self._session() as session, session.begin_transaction() as tx:
            counters = tx.run(query, params).consume().counters
            tx.commit()
        return counters

    def _exists(self, query: str) -> bool:
        with self._session() as session:
            return session.run(query).single() is not None

    # -- plan --------------------------------------------------------------

    def run(self, open_stream: OpenStream, options: RestoreOptions) -> None:
        schema = read_json(open_stream("schema"))
        if schema.get("format") != FORMAT:
            raise EngineError(f"not a {FORMAT} backup (format {schema.get('format')!r})")
        summary = read_json(open_stream("summary"))
        labels = set(summary["labels"])
        selected = self._selection(options.tables, labels)
        subset = bool(options.tables)
        types = set() if subset else set(summary["types"])
        statements = self._schema_statements(schema, selected, subset)
        try:
            if options.clean:
                self._clean(selected, types, [s[1] for s in statements])
            else:
                self._check(selected, types, [s[1] for s in statements])
            self._write(f"CREATE INDEX {ident(IMPORT_INDEX)} IF NOT EXISTS "
                        f"FOR (n:{ident(IMPORT_LABEL)}) ON (n.{ident(IMPORT_KEY)})")  # fmt: skip
            self._write(f"CALL db.awaitIndex('{IMPORT_INDEX}', 300)")
        except neo4j.exceptions.Neo4jError as exc:
            raise self.error(exc, f"preparing the restore into {self.where} failed") from None
        try:
            nodes, rels = self._data(open_stream("graph"), selected if subset else None)
            self._finish_import()
        except BaseException as exc:
            self._undo()
            if isinstance(exc, neo4j.exceptions.Neo4jError | neo4j.exceptions.DriverError):
                raise self.error(exc, f"restore into {self.where} failed; the nodes it had "
                                 "created were deleted again") from None  # fmt: skip
            raise
        try:
            self._create_schema(statements)
        except neo4j.exceptions.Neo4jError as exc:
            raise self.error(exc, f"the data is restored into {self.where}, but creating "
                             "its constraints and indexes failed") from None  # fmt: skip
        log.info("restored %d nodes and %d relationships into %s", nodes, rels, self.where)

    @staticmethod
    def _selection(tables: tuple[str, ...], labels: set[str]) -> set[str]:
        if not tables:
            return labels
        for table in tables:
            if table.startswith("[") and table.endswith("]"):
                raise UsageError(
                    f"--table {table}: a subset restore selects labels, not relationship types",
                    hint="name labels: their nodes come back with the relationships among them",
                )
        missing = sorted(set(tables) - labels)
        if missing:
            raise UsageError(
                f"no node in the backup has label(s) {', '.join(missing)}",
                hint=f"it has {', '.join(sorted(labels)) or 'no nodes'}",
            )
        return set(tables)

    @staticmethod
    def _schema_statements(
        schema: dict[str, Any], selected: set[str], subset: bool
    ) -> list[tuple[str, str, str]]:
        """(kind, name, create statement) to run after the data: constraints,
        then the indexes they do not own; for a subset only those on selected
        labels. Token lookup indexes only when the target lacks one."""
        out = []
        for c in schema["constraints"]:
            if subset and (c["entityType"] != "NODE" or not set(c["labelsOrTypes"]) <= selected):
                continue
            out.append(("constraint", c["name"], c["createStatement"]))
        for i in schema["indexes"]:
            if i.get("owningConstraint"):
                continue
            if i["type"] == "LOOKUP":
                if not subset:
                    out.append(("lookup", i["entityType"], i["createStatement"]))
                continue
            if subset and (i["entityType"] != "NODE" or not set(i["labelsOrTypes"]) <= selected):
                continue
            out.append(("index", i["name"], i["createStatement"]))
        return out

    # -- target checks -------------------------------------------------------

    def _label_query(self, label: str) -> str:
        if label == NO_LABEL:
            return "MATCH (n) WHERE size(labels(n)) = 0"
        return f"MATCH (n:{ident(label)})"

    def _existing_schema(self) -> set[str]:
        with self._session() as session:
            names = {r["name"] for r in session.run("SHOW CONSTRAINTS YIELD name")}
            names |= {r["name"] for r in session.run("SHOW INDEXES YIELD name, type")
                      if r["type"] != "LOOKUP"}  # fmt: skip
        return names

    def _check(self, labels: set[str], types: set[str], names: list[str]) -> None:
        found = [label for label in sorted(labels)
                 if self._exists(self._label_query(label) + " RETURN 1 LIMIT 1")]  # fmt: skip
        found += [rel_table(t) for t in sorted(types)
                  if self._exists(f"MATCH ()-[r:{ident(t)}]->() RETURN 1 LIMIT 1")]  # fmt: skip
        clash = sorted(set(names) & self._existing_schema())
        if self._exists(f"MATCH (n:{ident(IMPORT_LABEL)}) RETURN 1 LIMIT 1"):
            found.append(f"{IMPORT_LABEL} (left by an interrupted restore)")
        if found or clash:
            what = ", ".join(found + [f"schema {n}" for n in clash])
            raise EngineError(
                f"{self.where} already holds data of the backup ({what}); nothing was restored",
                hint="restore into an empty database, or pass --clean to replace it",
            )

    def _delete(self, match: str) -> None:
        """Delete in batches (auto-commit ``CALL {} IN TRANSACTIONS``), so a
        large label does not need one huge transaction."""
        with self._session() as session:
            session.run(f"{match} CALL {{ WITH n DETACH DELETE n }} "
                        f"IN TRANSACTIONS OF {DELETE_BATCH} ROWS").consume()  # fmt: skip

    def _clean(self, labels: set[str], types: set[str], names: list[str]) -> None:
        for label in sorted(labels) + [IMPORT_LABEL]:
            self._delete(self._label_query(label))
        for rel_type in sorted(types):
            with self._session() as session:
                session.run(f"MATCH ()-[r:{ident(rel_type)}]->() CALL {{ WITH r DELETE r }} "
                            f"IN TRANSACTIONS OF {DELETE_BATCH} ROWS").consume()  # fmt: skip
        existing = self._existing_schema()
        with self._session() as session:
            constraints = {r["name"] for r in session.run("SHOW CONSTRAINTS YIELD name")}
        for name in names:
            if name in constraints:
                self._write(f"DROP CONSTRAINT {ident(name)} IF EXISTS")
        for name in names:
            if name in existing and name not in constraints:
                self._write(f"DROP INDEX {ident(name)} IF EXISTS")

    # -- data ------------------------------------------------------------------

    def _data(self, chunks: Iterator[bytes], selected: set[str] | None) -> tuple[int, int]:
        nodes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        rels: dict[str, list[dict[str, Any]]] = {}
        counts = {"nodes": 0, "rels": 0, "expected_rels": 0, "rows": 0, "bytes": 0}

        def flush() -> None:
            with self._session() as session, session.begin_transaction() as tx:
                for labels, rows in nodes.items():
                    names = "".join(f":{ident(label)}" for label in (IMPORT_LABEL, *labels))
                    tx.run(f"UNWIND $rows AS row CREATE (n{names} {{{ident(IMPORT_KEY)}: row.i}}) "
                           "SET n += row.p", rows=rows).consume()  # fmt: skip
                    counts["nodes"] += len(rows)
                for rel_type, rows in rels.items():
                    summary = tx.run(
                        f"UNWIND $rows AS row MATCH (a:{ident(IMPORT_LABEL)} "
                        f"{{{ident(IMPORT_KEY)}: row.s}}) MATCH (b:{ident(IMPORT_LABEL)} "
                        f"{{{ident(IMPORT_KEY)}: row.e}}) CREATE (a)-[r:{ident(rel_type)}]->(b) "
                        "SET r = row.p", rows=rows).consume()  # fmt: skip
                    counts["rels"] += summary.counters.relationships_created
                tx.commit()
            nodes.clear()
            rels.clear()
            counts["rows"] = counts["bytes"] = 0

        for record, size in read_lines(chunks):
            kind = record[0]
            if kind == "n":
                _, key, labels, props = record
                if selected is not None and not selected & set(labels or [NO_LABEL]):
                    continue
                nodes.setdefault(tuple(labels), []).append({"i": key, "p": decode_props(props)})
            elif kind == "r":
                _, rel_type, start, end, props = record
                if selected is None:
                    counts["expected_rels"] += 1
                rels.setdefault(rel_type, []).append(
                    {"s": start, "e": end, "p": decode_props(props)})  # fmt: skip
            else:
                continue
            counts["rows"] += 1
            counts["bytes"] += size
            if counts["rows"] >= self.batch_rows or counts["bytes"] >= BATCH_BYTES:
                flush()
        if counts["rows"]:
            flush()
        if selected is None and counts["rels"] != counts["expected_rels"]:
            raise EngineError(
                f"only {counts['rels']} of {counts['expected_rels']} relationships found "
                "their nodes: the backup's graph stream is inconsistent")  # fmt: skip
        return counts["nodes"], counts["rels"]

    def _finish_import(self) -> None:
        """Remove the temporary label and key, batch by batch."""
        query = (f"MATCH (n:{ident(IMPORT_LABEL)}) WITH n LIMIT {DELETE_BATCH} "
                 f"REMOVE n:{ident(IMPORT_LABEL)} REMOVE n.{ident(IMPORT_KEY)} "
                 "RETURN count(*) AS c")  # fmt: skip
        while True:
            with self._session() as session, session.begin_transaction() as tx:
                record = tx.run(query).single()
                tx.commit()
            if record is None or record["c"] == 0:
                break
        self._write(f"DROP INDEX {ident(IMPORT_INDEX)} IF EXISTS")

    def _undo(self) -> None:
        """After a failed data phase: delete the nodes this restore created."""
        try:
            self._delete(f"MATCH (n:{ident(IMPORT_LABEL)})")
            self._write(f"DROP INDEX {ident(IMPORT_INDEX)} IF EXISTS")
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as exc:
            log.error("could not delete the partly restored nodes in %s: %s", self.where, exc)

    def _create_schema(self, statements: list[tuple[str, str, str]]) -> None:
        with self._session() as session:
            lookups = {r["entityType"] for r in session.run(
                "SHOW INDEXES YIELD type, entityType WHERE type = 'LOOKUP'")}  # fmt: skip
        for kind, name, statement in statements:
            if kind == "lookup" and name in lookups:
                continue
            self._write(statement)
        if statements:
            self._write(f"CALL db.awaitIndexes({INDEX_WAIT_SECONDS})")
