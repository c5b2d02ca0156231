"""What a PostgreSQL database holds: the data fingerprint.

Fingerprint
    ``{"format": 2, "tables": {"schema.table": {"rows": n, "digest": "..."}},
    "sequences": {"schema.seq": [last_value, is_called]},
    "large_objects": {"count": n, "digest": "..."}}``

    * Tables are ordinary tables (relkind ``r``, leaf partitions included)
      outside the system schemas and not members of an extension. A
      partitioned table gets an entry too, aggregated from its leaf partitions,
      so ``restore --table parent`` can be verified by the parent's name.
    * ``digest`` is the sum (a multiset hash, independent of row order) of a
      64-bit hash of each of the table's own rows (``FROM ONLY``), as a
      decimal string; ``hash`` names how rows were hashed: ``record``
      (``hash_record_extended``, PostgreSQL 14+, each column by its type's
      hash function) or, where a column type has no hash function or the
      server is older, ``text`` (``hashtextextended(row::text, 0)``, with the
      row's text form made stable by fixed session settings: UTC, ISO dates,
      shortest-exact floats, hex bytea, a fixed ``search_path``). A restored
      copy on a server of the same capabilities picks the same method and
      gives the same digest.
    * What a restore keeps is hashed, not how the server stores it:
      - Columns whose values are OIDs of catalog rows (enums, ``regclass``,
        ``regtype`` and every other ``reg*`` type, ``aclitem``; also inside
        arrays, domains, ranges, multiranges and composite types) are hashed
        by their text form: a restore creates the enum labels, tables,
        types, ... anew under new OIDs and loads the values by name. A plain
        ``oid`` column is a number that a restore loads unchanged (large
        objects keep their OIDs too), so it is hashed as it is.
      - Columns are taken by name in the order a restore gives them: an
        inheritance child or partition takes its parents' columns first (in
        the parents' order), then its own, as ``pg_restore`` recreates it,
        whatever the source's physical order was. For every other table that
        is its own order, so its digest is what it always was.
      - ``numeric`` hashes NaN, Infinity and -Infinity alike, and like NULL,
        so ``record`` adds, for each row holding one of them (also inside an
        array, range or composite), a hash of which columns hold which; rows
        without them hash as before.
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
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from dbfleet.engines.postgresql.archive import split_table
from dbfleet.errors import EngineError

SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
    "SET lc_monetary = 'C'",
    # reg* values render qualified unless visible: the same for the source and
    # a restored copy (whose database and role settings may differ).
    "SET search_path = public",
    "SET row_security = off",
    # JIT compiling costs more than it saves here: scans whose cost is one
    # function call per row, and a catalog query whose recursive part the
    # planner overestimates (0.3 s compiled, a few ms not).
    "SET jit = off",
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
FINGERPRINT_FORMAT = 2
"""2 since OID-typed columns hash by their text, columns hash in the order a
restore creates them and numeric NaN/Infinity are told apart; snapshots of
format 1 verify where they agree and are "not comparable" where they do not."""
_ROW_ALIAS = "dbfleet_fingerprint_row"
_USER_COLUMNS = f"""
SELECT c.oid AS relid, n.nspname, c.relname, a.attnum, a.attname, a.atttypid
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND {_NOT_USER_SCHEMA}
"""
# Each column type with the types it is built from (array element, domain
# base, range subtype, a multirange's range, composite attributes), and
# whether one of them holds OIDs that a restore renumbers.
_COLUMNS = f"""
WITH RECURSIVE columns AS ({_USER_COLUMNS}),
parts(root, typid) AS (
    SELECT DISTINCT atttypid, atttypid FROM columns
  UNION
    SELECT p.root, sub.typid FROM parts p JOIN pg_type t ON t.oid = p.typid
    CROSS JOIN LATERAL (
        SELECT t.typelem WHERE t.typelem <> 0
        UNION ALL SELECT t.typbasetype WHERE t.typbasetype <> 0
        UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid
        {{multirange}}
        UNION ALL SELECT a.atttypid FROM pg_attribute a WHERE t.typrelid <> 0
            AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
    ) AS sub(typid)
),
oid_valued AS (
    SELECT DISTINCT p.root FROM parts p JOIN pg_type t ON t.oid = p.typid
    WHERE t.typtype = 'e' OR t.oid IN (
        SELECT to_regtype(n) FROM unnest(ARRAY['regclass', 'regtype', 'regproc',
            'regprocedure', 'regoper', 'regoperator', 'regconfig', 'regdictionary',
            'regnamespace', 'regrole', 'regcollation', 'aclitem']) AS n)
),
numeric_inside AS (SELECT DISTINCT root FROM parts WHERE typid = 'numeric'::regtype)
SELECT relid, nspname, relname, attname, atttypid IN (SELECT root FROM oid_valued),
    CASE WHEN atttypid = 'numeric'::regtype THEN 'plain'
         WHEN atttypid IN (SELECT root FROM numeric_inside) THEN 'inside' END
FROM columns ORDER BY relid, attnum
"""
_MULTIRANGE = "UNION ALL SELECT r.rngtypid FROM pg_range r WHERE r.rngmultitypid = t.oid"
_PARENTS = "SELECT inhrelid, inhparent FROM pg_inherits ORDER BY inhrelid, inhseqno"


@dataclass(frozen=True)
class _Column:
    name: str
    as_text: bool  # its values are OIDs: hashed by their text
    numeric: str | None  # "plain" numeric, numeric "inside" another type, or None


@dataclass(frozen=True)
class _RowPlan:
    """How to hash a table's rows when its own row will not do."""

    columns: list[_Column]  # in the order a restore creates them
    rebuild: bool  # hash ROW(columns) instead of the table's row
    numeric_specials: str  # NaN/Infinity test expressions: see _specials_term


def _row_plans(conn: psycopg.Connection[Any]) -> dict[str, _RowPlan]:
    """Per table whose rows cannot be hashed as stored: how to hash them (see
    the module docstring). Tables not named hash their own row."""
    multirange = _MULTIRANGE if conn.info.server_version >= 140000 else ""
    query = _COLUMNS.format(multirange=multirange)
    names: dict[int, str] = {}
    columns: dict[int, list[_Column]] = {}
    for relid, schema, table, column, as_text, numeric in conn.execute(query):
        names[relid] = f"{schema}.{table}"
        columns.setdefault(relid, []).append(_Column(column, bool(as_text), numeric))
    parents: dict[int, list[int]] = {}
    for child, parent in conn.execute(_PARENTS):
        if child in columns and parent in columns:  # not the indexes of partitioned tables
            parents.setdefault(child, []).append(parent)
    ordered: dict[int, list[_Column]] = {}

    def restore_order(relid: int) -> list[_Column]:
        # pg_restore creates a child with its parents' columns first, then its own.
        if relid not in ordered:
            own = {c.name: c for c in columns[relid]}
            order: dict[str, _Column] = {}
            for parent in parents.get(relid, []):
                for inherited in restore_order(parent):
                    if inherited.name in own:
                        order.setdefault(inherited.name, own[inherited.name])
            for column in columns[relid]:
                order.setdefault(column.name, column)
            ordered[relid] = list(order.values())
        return ordered[relid]

    specials = _SPECIALS_14 if conn.info.server_version >= 140000 else _SPECIALS_OLD
    plans = {}
    for relid, stored in columns.items():
        order = restore_order(relid)
        rebuild = order != stored or any(c.as_text for c in order)
        if rebuild or any(c.numeric and not c.as_text for c in order):
            plans[names[relid]] = _RowPlan(order, rebuild, specials)
    return plans


# numeric's hash function gives NaN, Infinity and -Infinity the hash of NULL.
_SPECIALS_14 = "IN ('NaN'::numeric, 'Infinity'::numeric, '-Infinity'::numeric)"
_SPECIALS_OLD = "= 'NaN'::numeric"  # no numeric infinity before PostgreSQL 14


def _row_expression(plan: _RowPlan | None) -> sql.Composable:
    """The row to hash: the table's own row, or one built from its columns."""
    if plan is None or not plan.rebuild:
        return sql.Identifier(_ROW_ALIAS)
    values = [
        sql.Identifier(_ROW_ALIAS, c.name) + (sql.SQL("::text") if c.as_text else sql.SQL(""))
        for c in plan.columns
    ]
    return sql.SQL("ROW({})").format(sql.SQL(", ").join(values))


def _specials_term(plan: _RowPlan | None) -> sql.Composable | None:
    """For the ``record`` method: per row, 0 unless a numeric value in it is
    NaN or infinite, else a hash of the text of those values by column, so
    that they differ from each other and from NULL. Rows without them (and
    tables without numeric columns) hash exactly as before this term."""
    if plan is None:
        return None
    tests, tags = [], []
    for c in plan.columns:
        if not c.numeric or c.as_text:
            continue
        column = sql.Identifier(_ROW_ALIAS, c.name)
        if c.numeric == "plain":
            test = column + sql.SQL(" " + plan.numeric_specials)
        else:  # inside an array, range or composite: its text shows them
            test = sql.SQL("({}::text ~ '(NaN|Infinity)')").format(column)
        tests.append(test)
        tags.append(sql.SQL("CASE WHEN {} THEN {}::text END").format(test, column))
    if not tests:
        return None
    return sql.SQL("CASE WHEN {} THEN hashtextextended(ROW({})::text, 0) ELSE 0 END").format(
        sql.SQL(" OR ").join(tests), sql.SQL(", ").join(tags)
    )


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
    plans = _row_plans(conn)
    kinds = {f"{s}.{n}": k for s, n, k in relations}
    wanted = {f"{s}.{t}" for s, t in map(split_table, tables)}
    result: dict[str, Any] = {"format": FINGERPRINT_FORMAT, "tables": {}}
    for schema, name, kind in relations:
        key = f"{schema}.{name}"
        if kind == "r" and (not wanted or key in wanted):
            result["tables"][key] = _table(conn, schema, name, plans.get(key))
    for schema, name, kind in relations:
        key = f"{schema}.{name}"
        if kind == "p" and (not wanted or key in wanted):
            leaves = [f"{s}.{n}" for s, n in conn.execute(_LEAVES, (_qualified(schema, name),))]
            for leaf in leaves:
                if leaf not in result["tables"] and kinds.get(leaf) == "r":
                    result["tables"][leaf] = _table(conn, *split_table(leaf), plans.get(leaf))
            result["tables"][key] = _aggregate([result["tables"][leaf] for leaf in leaves])
    if tables:
        return result
    if sequences:
        result["sequences"] = read_sequences(conn, relations)
    result["large_objects"] = _large_objects(conn)
    return result


def _qualified(schema: str, name: str) -> str:
    return '"{}"."{}"'.format(schema.replace('"', '""'), name.replace('"', '""'))


_DIGESTS = {
    # hash_record_extended (PostgreSQL 14+) hashes each column with its type's
    # own hash function: about 2.5x cheaper than rendering the row as text,
    # which matters because the fingerprint runs beside pg_dump.
    "record": "hash_record_extended({row}, 0)",
    # Fallback for older servers and for column types without a hash
    # function (json, point, xml, ...).
    "text": "hashtextextended(({row})::text, 0)",
}


def _table(
    conn: psycopg.Connection[Any], schema: str, name: str, plan: _RowPlan | None
) -> dict[str, Any]:
    for method, expression in _DIGESTS.items():
        total = sql.SQL("coalesce(sum(" + expression + ")::numeric, 0)").format(
            row=_row_expression(plan)
        )
        specials = _specials_term(plan) if method == "record" else None
        if specials is not None:
            total += sql.SQL(" + coalesce(sum({})::numeric, 0)").format(specials)
        query = sql.SQL("SELECT count(*), {} FROM ONLY {} AS {}").format(
            total, sql.Identifier(schema, name), sql.Identifier(_ROW_ALIAS)
        )
        try:
            with conn.transaction():
                rows, digest = conn.execute(query).fetchone() or (0, 0)
            return {"rows": rows, "digest": str(digest), "hash": method}
        except pg_errors.UndefinedFunction:
            continue  # no hash function for a column type: try the next method
        except pg_errors.InsufficientPrivilege as exc:
            if "row-level security" not in str(exc):
                raise EngineError(
                    f"cannot read table {schema}.{name}: {_first_line(exc)}"
                ) from None
        with conn.transaction():
            conn.execute("SET LOCAL row_security = on")
            rows, digest = conn.execute(query).fetchone() or (0, 0)
        return {"rows": rows, "digest": str(digest), "hash": method, "row_security": "applied"}
    raise EngineError(f"cannot fingerprint table {schema}.{name}: no usable hash function")


def _aggregate(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rows": sum(e["rows"] for e in entries),
        "digest": str(sum(int(e["digest"]) for e in entries)),
        "hash": "+".join(sorted({str(e.get("hash")) for e in entries})) or "none",
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


class FingerprintThread:
    """Fingerprint the exporting transaction's snapshot while pg_dump runs."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._result: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dbfleet-pg-fingerprint")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = compute(self._conn, sequences=False)
        except BaseException as exc:
            self._error = exc

    def stop(self) -> None:
        if self._thread.is_alive():
            self._conn.cancel()
        self._thread.join()

    def result(self) -> dict[str, Any]:
        self._thread.join()
        if isinstance(self._error, EngineError):
            raise self._error
        if self._error is not None or self._result is None:
            raise EngineError(f"fingerprint failed: {str(self._error).strip()}")
        return self._result
