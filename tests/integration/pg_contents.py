"""What a PostgreSQL database holds, read with psycopg as plain text and
independently of dbfleet's fingerprint: to compare a source with a restored
copy in the generated-data and sample-dataset suites.

Rows are each column's text output (what the type's output function sends a
client, as psql shows it) under fixed session settings, columns taken by name
(a restore may recreate an inheritance child with another column order),
rows sorted (order is not data)."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from tests.integration.conftest import PG_PASSWORD_ENV, PgServer

SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
    "SET search_path = public",
)
_USER = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
    " AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'"
)
_TABLES = f"""
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND {_USER}
AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                AND d.objid = c.oid AND d.deptype = 'e')
"""
_COLUMNS = """
SELECT attname, format_type(atttypid, atttypmod), attnotnull, attidentity, attgenerated,
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
"""
CATALOG = {
    "relations": f"SELECT n.nspname, c.relname, c.relkind::text, c.relispartition,"
    f" pg_get_expr(c.relpartbound, c.oid) FROM pg_class c"
    f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','S','f')"
    f" AND {_USER}",
    "inherits": "SELECT inhrelid::regclass::text, inhparent::regclass::text, inhseqno"
    " FROM pg_inherits",
    "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
    " FROM pg_constraint WHERE connamespace::regnamespace::text NOT IN"
    " ('pg_catalog', 'information_schema')",
    "indexes": f"SELECT n.nspname, c.relname, pg_get_indexdef(c.oid) FROM pg_class c"
    f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('i', 'I') AND {_USER}",
    "views": "SELECT schemaname, viewname, definition FROM pg_views"
    " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    "matviews": "SELECT schemaname, matviewname, ispopulated, definition FROM pg_matviews",
    "functions": f"SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),"
    f" md5(pg_get_functiondef(p.oid)) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    f" WHERE p.prokind IN ('f', 'p') AND {_USER}"
    " AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass"
    " AND d.objid = p.oid AND d.deptype = 'e')",
    "triggers": "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger"
    " WHERE NOT tgisinternal",
    "types": f"SELECT n.nspname, t.typname, t.typtype::text,"
    f" format_type(t.typbasetype, t.typtypmod)"
    f" FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
    f" WHERE t.typtype IN ('e', 'd', 'c', 'r', 'm') AND {_USER}"
    " AND (t.typtype <> 'c' OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')",
    # The labels' order (a restore renumbers enumsortorder after ALTER TYPE ... ADD VALUE).
    "enum_labels": "SELECT enumtypid::regtype::text, enumlabel,"
    " rank() OVER (PARTITION BY enumtypid ORDER BY enumsortorder) FROM pg_enum",
    "sequences": "SELECT schemaname, sequencename, data_type::text, start_value, min_value,"
    " max_value, increment_by, cycle, last_value FROM pg_sequences",
    "large_objects": "SELECT oid::bigint, md5(lo_get(oid)) FROM pg_largeobject_metadata",
    "extensions": "SELECT extname FROM pg_extension",
    "comments": "SELECT classoid::regclass::text, CASE WHEN classoid = 'pg_class'::regclass"
    " THEN objoid::regclass::text END, objsubid, description FROM pg_description"
    " WHERE objoid >= 16384",
}


def connect_as_text(server: PgServer, dbname: str) -> psycopg.Connection[Any]:
    """A connection to ``dbname`` that reads every value as the text the
    server sends, under :data:`SETTINGS`."""
    conn = psycopg.connect(
        server.url, dbname=dbname, password=os.environ[PG_PASSWORD_ENV], autocommit=True
    )
    for statement in SETTINGS:
        conn.execute(statement)
    for (oid,) in conn.execute("SELECT oid FROM pg_type").fetchall():
        conn.adapters.register_loader(oid, TextLoader)
    return conn


def _sort_key(row: tuple[Any, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is None, "" if value is None else str(value)) for value in row)


def table_rows(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, Any]:
    """A table's columns (by name) and its rows as text, sorted."""
    ident = sql.Identifier(schema, table)
    columns = sorted(conn.execute(_COLUMNS, (ident.as_string(conn),)).fetchall())
    names = [c[0] for c in columns]
    select = sql.SQL(", ").join(map(sql.Identifier, names))
    rows = conn.execute(sql.SQL("SELECT {} FROM ONLY {}").format(select, ident)).fetchall()
    return {"columns": columns, "rows": sorted(rows, key=_sort_key)}


def database_contents(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Every user table's rows and the catalog entries a restore must keep."""
    tables = {
        f"{s}.{t}": table_rows(conn, s, t) for s, t in sorted(conn.execute(_TABLES).fetchall())
    }
    catalog = {
        key: sorted(conn.execute(query).fetchall(), key=_sort_key) for key, query in CATALOG.items()
    }
    return {"tables": tables, "catalog": catalog}


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Readable differences between two ``database_contents`` (empty: equal)."""
    found = []
    for kind in ("tables", "catalog"):
        for key in sorted(set(expected[kind]) | set(actual[kind])):
            want, got = expected[kind].get(key), actual[kind].get(key)
            if want == got:
                continue
            if kind == "tables" and want and got and want["columns"] == got["columns"]:
                names = [c[0] for c in want["columns"]]
                found.append(f"{key}: {_row_differences(names, want['rows'], got['rows'])}")
            elif kind == "catalog" and want is not None and got is not None:
                found.append(f"{kind} {key}: only in the source {_summary(_only_in(want, got))},"
                             f" only in the copy {_summary(_only_in(got, want))}")  # fmt: skip
            else:
                found.append(f"{kind} {key}: {_summary(want)} != {_summary(got)}")
    return found


def _only_in(rows: list[Any], other: list[Any]) -> list[Any]:
    rest = list(other)
    out = []
    for row in rows:
        if row in rest:
            rest.remove(row)
        else:
            out.append(row)
    return out


def _row_differences(names: list[str], source: list[Any], copy: list[Any]) -> str:
    """The columns in which the first differing source row differs from the
    copy's closest row."""
    only_source, only_copy = _only_in(source, copy), _only_in(copy, source)
    if not only_source or not only_copy:
        return f"{len(only_source)} rows only in the source, {len(only_copy)} only in the copy"
    row = only_source[0]
    closest = max(only_copy, key=lambda other: sum(a == b for a, b in zip(row, other, strict=True)))
    changed = {n: (a, b) for n, a, b in zip(names, row, closest, strict=True) if a != b}
    return f"{len(only_source)} rows differ; first: (source, copy) {_summary(changed)}"


def _summary(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 600 else text[:600] + "..."
