"""What a PostgreSQL database holds, and what a pg_dump archive holds.

Fingerprint
    ``{"tables": {"schema.table": {"rows": n, "digest": "..."}},
    "sequences": {"schema.seq": [last_value, is_called]},
    "large_objects": {"count": n, "digest": "..."}}``

    * Tables are ordinary tables (relkind ``r``, leaf partitions included)
      outside the system schemas and not members of an extension. A
      partitioned table gets an entry too, aggregated from its leaf partitions,
      so ``restore --table parent`` can be verified by the parent's name.
    * ``digest`` is the sum (a multiset hash, independent of row order) of
      ``hashtextextended(row::text, 0)`` over the table's own rows
      (``FROM ONLY``), as a decimal string. The row's text form is made stable
      by fixed session settings (UTC, ISO dates, shortest-exact floats, hex
      bytea), so a restored copy gives the same digest on any server of the
      same hash function (PostgreSQL 11 and later).
    * Rows are read with ``row_security = off``, like pg_dump, so a table
      owner or superuser sees every row. When row-level security would still
      hide rows (a non-owner, or ``FORCE ROW LEVEL SECURITY`` for an owner
      without BYPASSRLS), pg_dump itself fails; the fingerprint falls back to
      the visible rows and marks the entry ``"row_security": "applied"``.
    * Sequences are not transactional, so reading them "in the snapshot" is
      impossible. A backup therefore takes their values from the archive
      itself (the ``SEQUENCE SET`` entries pg_dump wrote); a live database
      reports ``last_value, is_called``. Both describe what a restore sets.
    * Large objects: their count and a sum of hashes over
      ``(oid, md5(content))``; ``digest`` is ``None`` when the role cannot
      read them.

Archive table of contents
    pg_dump's custom format starts with a header and the table of contents
    (TOC) of every object, followed by the data. :func:`parse_toc` reads the
    TOC (archive versions 1.12 to 1.16, pg_dump 9.0 to 17) so that backups
    can fingerprint the dumped sequence values, and restores can select the
    entries of single tables (:func:`select_tables`) and order entries so that
    ``pg_restore --clean`` can drop partitioned indexes
    (:func:`drop_safe_order`), for ``pg_restore -L``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from dbfleet.errors import EngineError, UsageError

SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
    "SET lc_monetary = 'C'",
    "SET row_security = off",
)

_NOT_USER_SCHEMA = """
    n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
    AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
"""
_RELATIONS = f"""
SELECT n.nspname, c.relname, c.relkind FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S') AND c.relpersistence <> 't' AND {_NOT_USER_SCHEMA}
ORDER BY 1, 2
"""
_LEAVES = """
SELECT n.nspname, c.relname FROM pg_partition_tree(%s::regclass) t
JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE t.isleaf AND c.relkind = 'r'
"""
_ROW_ALIAS = "dbfleet_fingerprint_row"


def split_table(name: str) -> tuple[str, str]:
    """``schema.table`` -> (schema, table); a bare name means ``public``."""
    schema, dot, table = name.partition(".")
    return (schema, table) if dot else ("public", name)


def apply_session_settings(conn: psycopg.Connection[Any]) -> None:
    for statement in SESSION_SETTINGS:
        conn.execute(statement)


def compute(
    conn: psycopg.Connection[Any], tables: tuple[str, ...] = (), *, sequences: bool = True
) -> dict[str, Any]:
    """Fingerprint the database of ``conn`` in its current transaction.

    The caller applies :data:`SESSION_SETTINGS` and opens the (repeatable
    read) transaction; this function only reads, using savepoints so one
    unreadable table does not abort the transaction."""
    relations = conn.execute(_RELATIONS).fetchall()
    kinds = {f"{s}.{n}": k for s, n, k in relations}
    wanted = {f"{s}.{t}" for s, t in map(split_table, tables)}
    result: dict[str, Any] = {"tables": {}}
    for schema, name, kind in relations:
        key = f"{schema}.{name}"
        if kind == "r" and (not wanted or key in wanted):
            result["tables"][key] = _table(conn, schema, name)
    for schema, name, kind in relations:
        key = f"{schema}.{name}"
        if kind == "p" and (not wanted or key in wanted):
            leaves = [f"{s}.{n}" for s, n in conn.execute(_LEAVES, (_qualified(schema, name),))]
            for leaf in leaves:
                if leaf not in result["tables"] and kinds.get(leaf) == "r":
                    result["tables"][leaf] = _table(conn, *split_table(leaf))
            result["tables"][key] = _aggregate([result["tables"][leaf] for leaf in leaves])
    if tables:
        return result
    if sequences:
        result["sequences"] = read_sequences(conn, relations)
    result["large_objects"] = _large_objects(conn)
    return result


def _qualified(schema: str, name: str) -> str:
    return '"{}"."{}"'.format(schema.replace('"', '""'), name.replace('"', '""'))


def _table(conn: psycopg.Connection[Any], schema: str, name: str) -> dict[str, Any]:
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(hashtextextended({row}::text, 0)::numeric), 0) "
        "FROM ONLY {table} AS {row}"
    ).format(table=sql.Identifier(schema, name), row=sql.Identifier(_ROW_ALIAS))
    try:
        with conn.transaction():
            rows, digest = conn.execute(query).fetchone() or (0, 0)
        return {"rows": rows, "digest": str(digest)}
    except pg_errors.InsufficientPrivilege as exc:
        if "row-level security" not in str(exc):
            raise EngineError(f"cannot read table {schema}.{name}: {_first_line(exc)}") from None
    with conn.transaction():
        conn.execute("SET LOCAL row_security = on")
        rows, digest = conn.execute(query).fetchone() or (0, 0)
    return {"rows": rows, "digest": str(digest), "row_security": "applied"}


def _aggregate(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rows": sum(e["rows"] for e in entries),
        "digest": str(sum(int(e["digest"]) for e in entries)),
    }


def read_sequences(
    conn: psycopg.Connection[Any], relations: list[tuple[str, str, str]] | None = None
) -> dict[str, list[Any]]:
    """``{"schema.seq": [last_value, is_called]}`` as the database has them now."""
    if relations is None:
        relations = conn.execute(_RELATIONS).fetchall()
    return {f"{s}.{n}": _sequence(conn, s, n) for s, n, k in relations if k == "S"}


def _sequence(conn: psycopg.Connection[Any], schema: str, name: str) -> list[Any]:
    query = sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name))
    try:
        with conn.transaction():
            last_value, is_called = conn.execute(query).fetchone() or (None, None)
    except pg_errors.InsufficientPrivilege as exc:
        raise EngineError(f"cannot read sequence {schema}.{name}: {_first_line(exc)}") from None
    return [last_value, is_called]


def _large_objects(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    (count,) = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() or (0,)
    if not count:
        return {"count": 0, "digest": "0"}
    try:
        with conn.transaction():
            (digest,) = conn.execute(
                "SELECT sum(hashtextextended(oid::text || ':' || md5(lo_get(oid)), 0)::numeric)"
                " FROM pg_largeobject_metadata"
            ).fetchone() or (0,)
    except pg_errors.InsufficientPrivilege:
        return {"count": count, "digest": None}
    return {"count": count, "digest": str(digest)}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# -- pg_dump custom-format archive: table of contents -------------------------

SECTION_PRE_DATA, SECTION_DATA, SECTION_POST_DATA = 2, 3, 4
_MIN_VERSION, _MAX_VERSION = (1, 12), (1, 16)
_SETVAL = re.compile(r"setval\('(?:[^']|'')*',\s*(-?\d+),\s*(true|false)\)")


class ArchiveFormatError(Exception):
    """The bytes are not a pg_dump custom-format archive dbfleet can read."""


class IncompleteArchiveError(ArchiveFormatError):
    """The archive's table of contents continues past the bytes given."""


@dataclass(frozen=True)
class TocEntry:
    dump_id: int
    desc: str
    namespace: str | None
    tag: str
    section: int
    defn: str
    deps: tuple[int, ...]


@dataclass(frozen=True)
class ArchiveToc:
    version: tuple[int, int, int]
    dbname: str | None
    server_version: str | None
    dump_version: str | None
    entries: tuple[TocEntry, ...]

    def sequences(self) -> dict[str, list[Any]]:
        """``{"schema.seq": [last_value, is_called]}`` as the dump sets them."""
        values: dict[str, list[Any]] = {}
        for entry in self.entries:
            match = _SETVAL.search(entry.defn) if entry.desc == "SEQUENCE SET" else None
            if match:
                values[f"{entry.namespace}.{entry.tag}"] = [
                    int(match.group(1)),
                    match.group(2) == "true",
                ]
        return dict(sorted(values.items()))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.int_size = 4

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise IncompleteArchiveError("archive ends inside its table of contents")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def int_(self) -> int:
        negative = self.byte()
        value = int.from_bytes(self.take(self.int_size), "little")
        return -value if negative else value

    def str_(self) -> str | None:
        length = self.int_()
        return None if length < 0 else self.take(length).decode("utf-8", errors="replace")


def parse_toc(data: bytes) -> ArchiveToc:
    """Parse the header and TOC at the start of a custom-format archive."""
    r = _Reader(data)
    if r.take(5) != b"PGDMP":
        raise ArchiveFormatError("not a pg_dump custom-format archive (no PGDMP header)")
    version = (r.byte(), r.byte(), r.byte())
    if not _MIN_VERSION <= version[:2] <= _MAX_VERSION:
        raise ArchiveFormatError(f"archive version {version[0]}.{version[1]} is not supported")
    r.int_size, offset_size, archive_format = r.byte(), r.byte(), r.byte()
    if archive_format != 1:
        raise ArchiveFormatError(f"archive format {archive_format} is not the custom format")
    if version[:2] >= (1, 15):
        r.byte()  # compression algorithm
    else:
        r.int_()  # compression level
    for _ in range(7):  # creation time
        r.int_()
    dbname, server_version, dump_version = r.str_(), r.str_(), r.str_()
    entries = []
    for _ in range(r.int_()):
        dump_id = r.int_()
        r.int_()  # had dumper
        r.str_(), r.str_()  # catalog id: tableoid, oid
        tag, desc = r.str_() or "", r.str_() or ""
        section = r.int_()
        defn = r.str_() or ""
        r.str_(), r.str_()  # drop statement, copy statement
        namespace = r.str_()
        r.str_()  # tablespace
        if version[:2] >= (1, 14):
            r.str_()  # table access method
        if version[:2] >= (1, 16):
            r.int_()  # relkind
        r.str_(), r.str_()  # owner, "with oids"
        deps = []
        while (dep := r.str_()) is not None:
            deps.append(int(dep))
        r.take(1 + offset_size)  # data offset
        entries.append(TocEntry(dump_id, desc, namespace, tag, section, defn, tuple(deps)))
    return ArchiveToc(version, dbname, server_version, dump_version, tuple(entries))


def read_toc(chunks: Iterable[bytes], limit: int = 1 << 28) -> ArchiveToc:
    """Parse the TOC from the first chunks of an archive stream; reads no further."""
    head = bytearray()
    next_try = 1 << 16
    for chunk in chunks:
        head += chunk
        if len(head) >= next_try:
            try:
                return parse_toc(bytes(head))
            except IncompleteArchiveError:
                if len(head) > limit:
                    raise ArchiveFormatError(f"archive TOC larger than {limit} bytes") from None
                next_try = len(head) * 2
    return parse_toc(bytes(head))


class TocTap:
    """A reader over a dump tool's output that parses the archive TOC from the
    bytes flowing past, without holding more than the TOC in memory."""

    def __init__(self, inner: io.BufferedIOBase, limit: int = 1 << 28) -> None:
        self._inner = inner
        self._head: bytearray | None = bytearray()
        self._next_try = 1 << 16
        self._limit = limit
        self.toc: ArchiveToc | None = None
        self.error: str | None = None

    def readinto(self, buffer: memoryview) -> int:
        n = self._inner.readinto(buffer)
        if self._head is not None:
            self._head += buffer[:n]
            if n == 0 or len(self._head) >= self._next_try:
                self._try(final=n == 0)
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        if self._head is not None:
            self._head += data
            if not data or len(self._head) >= self._next_try:
                self._try(final=not data)
        return data

    def _try(self, final: bool) -> None:
        assert self._head is not None
        try:
            self.toc = parse_toc(bytes(self._head))
        except IncompleteArchiveError as exc:
            if not final and len(self._head) <= self._limit:
                self._next_try = len(self._head) * 2
                return
            self.error = str(exc)
        except (ArchiveFormatError, ValueError) as exc:
            self.error = str(exc)
        self._head = None


# TOC entries that belong to a table and travel with it in a table restore.
ATTACHED = {
    "TABLE DATA", "CONSTRAINT", "CHECK CONSTRAINT", "FK CONSTRAINT", "INDEX", "INDEX ATTACH",
    "TABLE ATTACH", "TRIGGER", "POLICY", "ROW SECURITY", "DEFAULT", "COMMENT", "ACL",
    "SECURITY LABEL", "RULE", "STATISTICS", "SEQUENCE OWNED BY", "SEQUENCE SET",
}  # fmt: skip


_INDEX_DESCS = ("INDEX", "CONSTRAINT")


def select_tables(
    toc: ArchiveToc, tables: tuple[str, ...], *, with_prerequisites: bool
) -> list[TocEntry]:
    """The TOC entries a restore of ``tables`` needs, in archive order."""
    by_id = {e.dump_id: e for e in toc.entries}
    selected: set[int] = set()
    for schema, name in map(split_table, tables):
        found = [
            e for e in toc.entries if e.desc == "TABLE" and (e.namespace, e.tag) == (schema, name)
        ]
        if not found:
            raise UsageError(f"table {schema}.{name} is not in the backup")
        selected.update(e.dump_id for e in found)
    tables_selected = set(selected)
    changed = True
    while changed:  # what hangs off the selection, to a fixed point
        changed = False
        for e in toc.entries:
            if e.dump_id in selected:
                continue
            if e.desc in ("TABLE", "SEQUENCE"):  # children, owned and identity sequences
                join = any(d in tables_selected for d in e.deps)
            else:
                join = e.desc in ATTACHED and any(d in selected for d in e.deps)
            if join:
                selected.add(e.dump_id)
                tables_selected.update([e.dump_id] if e.desc == "TABLE" else [])
                changed = True
    if not with_prerequisites:
        # Into existing objects. A partition restored without its parent: ATTACH PARTITION recreates
        # the partition's copies of the parent's indexes, so leave those out.
        for e in toc.entries:
            if e.desc != "INDEX ATTACH" or e.dump_id not in selected:
                continue
            indexes = [d for d in e.deps if d in by_id and by_id[d].desc in _INDEX_DESCS]
            if not all(d in selected for d in indexes):
                selected -= {e.dump_id, *indexes}
    else:
        # Empty target: leave out foreign keys to tables not restored, and add
        # what the selection depends on (definitions only).
        selected -= {
            e.dump_id
            for e in toc.entries
            if e.dump_id in selected and e.desc == "FK CONSTRAINT"
            and not all(d in selected for d in e.deps)
        }  # fmt: skip
        pending = list(selected)
        while pending:
            for dep in by_id[pending.pop()].deps:
                if dep in by_id and dep not in selected:
                    selected.add(dep)
                    pending.append(dep)
    return [e for e in toc.entries if e.dump_id in selected]


def drop_safe_order(entries: list[TocEntry]) -> list[TocEntry]:
    """Move indexes attached to a partitioned parent's index before the
    post-data section, deepest first, so that ``--clean`` (which drops in
    reverse order) drops a parent index before its partitions' indexes."""
    by_id = {e.dump_id: e for e in entries}
    parent_of: dict[int, int] = {}
    for attach in entries:
        if attach.desc != "INDEX ATTACH":
            continue
        indexes = [by_id[d] for d in attach.deps if d in by_id and by_id[d].desc in _INDEX_DESCS]
        child = next(
            (i for i in indexes if i.namespace == attach.namespace
             and (i.tag == attach.tag or i.tag.endswith(" " + attach.tag))),
            None,
        )  # fmt: skip
        parent = next((i for i in indexes if i is not child), None)
        if child and parent:
            parent_of[child.dump_id] = parent.dump_id

    def depth(dump_id: int) -> int:
        seen = 0
        while dump_id in parent_of and seen < len(parent_of):
            dump_id, seen = parent_of[dump_id], seen + 1
        return seen

    if not parent_of:
        return entries
    moved = sorted((e for e in entries if e.dump_id in parent_of), key=lambda e: -depth(e.dump_id))
    rest = [e for e in entries if e.dump_id not in parent_of]
    at = next((i for i, e in enumerate(rest) if e.section == SECTION_POST_DATA), len(rest))
    return rest[:at] + moved + rest[at:]


def close_iterator(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if callable(close):
        close()
