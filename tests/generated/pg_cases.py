"""Generated PostgreSQL databases: a case is a schema with odd names, the
case's own enum/domain/composite types, tables of several shapes (plain,
identity, generated column, range-partitioned with a partition in another
column order, inheritance child recreated in another order, empty, many
columns, no columns) with rows drawn from :mod:`tests.generated.pg_types`,
and large objects. :func:`statements` turns a case into SQL."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import strategies as st

from tests.generated.pg_types import (
    BUILTIN,
    SAFE_CHARS,
    TEXT,
    PgType,
    Value,
    array_element,
    array_of,
    builtin,
    quote_ident,
    quote_literal,
)

SHAPES = ("plain", "identity", "generated", "partitioned", "inherited")
ODD_IDENTIFIERS = (
    "select", "User", "with space", 'quo"te', "o'brien", "ünïcødé", "🐘", "a.b", "123", " lead",
    "trail ", "$1", "--", "x" * 63, "é" * 31, "Order", "NULL",
)  # fmt: skip
ODD_SCHEMAS = ("public", "Sales Ü", 'odd"schema', "ß" * 31, "order")
SYSTEM_COLUMNS = {"tableoid", "cmax", "xmax", "cmin", "xmin", "ctid"}


def _fits(name: str) -> bool:
    return 0 < len(name.encode()) <= 63 and name not in SYSTEM_COLUMNS


IDENTIFIERS = st.one_of(
    st.sampled_from(ODD_IDENTIFIERS), st.text(SAFE_CHARS, min_size=1, max_size=16)
).filter(_fits)


def derived(name: str, suffix: str) -> str:
    """``name`` + ``suffix`` within PostgreSQL's 63 bytes (never cut by the server)."""
    while len((name + suffix).encode()) > 63:
        name = name[:-1]
    return name + suffix


@dataclass(frozen=True)
class CaseTypes:
    """The types a case defines: an enum, a domain and a composite, with odd
    names and labels; their values, and regclass values naming the case's own
    tables."""

    schema: str
    enum: str
    labels: tuple[str, ...]
    types: tuple[PgType, ...] = field(default=())


def case_types(
    schema: str, enum: str, labels: tuple[str, ...], tables: tuple[str, ...]
) -> CaseTypes:
    qualified = f"{quote_ident(schema)}.{quote_ident(enum)}"
    label = st.sampled_from(labels)
    domain, composite = f"{quote_ident(schema)}.dbf_posint", f"{quote_ident(schema)}.dbf_pair"
    pair = st.builds(
        lambda n, m, note: f"({n},{array_element(m)},{array_element(note)})",
        st.integers(-5, 5),
        label,
        TEXT,
    )
    table_refs = st.sampled_from(tables) if tables else st.just("pg_class")
    defined = (
        PgType(qualified, label, labels[:2]),
        PgType(f"{qualified}[]", array_of(st.none() | label), ("{}",)),
        PgType(domain, st.integers(1, 2**31 - 1).map(str), ("1", "2147483647")),
        PgType(composite, pair, ("(,,)", '(1,"' + labels[0].replace('"', '\\"') + '","")')),
        PgType(f"{composite}[]", array_of(st.none() | pair), ("{}",)),
        PgType("regclass", table_refs, ("pg_class", "0")),
        PgType("regclass[]", array_of(st.none() | table_refs), ("{pg_class,NULL}",)),
    )
    return CaseTypes(schema, enum, labels, defined)


def case_type_definitions(types: CaseTypes) -> list[str]:
    schema = quote_ident(types.schema)
    labels = ", ".join(quote_literal(label) for label in types.labels)
    enum = f"{schema}.{quote_ident(types.enum)}"
    first = quote_literal(types.labels[0])
    return [
        f"CREATE TYPE {enum} AS ENUM ({labels})",
        # A label between others: a fractional sort order that a restore renumbers.
        f"ALTER TYPE {enum} ADD VALUE IF NOT EXISTS 'dbf added' AFTER {first}",
        f"CREATE DOMAIN {schema}.dbf_posint AS integer CHECK (VALUE > 0)",
        f"CREATE TYPE {schema}.dbf_pair AS (n integer, m {schema}.{quote_ident(types.enum)},"
        " note text)",
    ]


@dataclass(frozen=True)
class TableSpec:
    name: str
    shape: str
    columns: tuple[tuple[str, PgType], ...]
    rows: tuple[tuple[Value, ...], ...]
    keys: tuple[int, ...]  # per row: partition key / generated base / inheritance side


@dataclass(frozen=True)
class Case:
    types: CaseTypes
    tables: tuple[TableSpec, ...]
    large_objects: tuple[bytes, ...] = ()
    mutate: int = 0

    @property
    def schema(self) -> str:
        return self.types.schema

    def qualified(self, table: str) -> str:
        return f"{self.schema}.{table}"

    def physical(self, table: TableSpec) -> list[tuple[str, str | None]]:
        """Tables that hold the rows of ``table``: (name, partitioned parent)."""
        if table.shape == "partitioned":
            return [
                (derived(table.name, "_neg"), table.name),
                (derived(table.name, "_pos"), table.name),
            ]
        if table.shape == "inherited":
            return [(table.name, None), (derived(table.name, "_child"), None)]
        return [(table.name, None)]

    def without(self, extensions: set[str]) -> Case:
        """The case with the columns of unavailable extensions' types left out."""
        tables = []
        for t in self.tables:
            keep = [
                i
                for i, (_, typ) in enumerate(t.columns)
                if typ.needs is None or typ.needs in extensions
            ]
            columns = tuple(t.columns[i] for i in keep)
            rows = tuple(tuple(r[i] for i in keep) for r in t.rows)
            tables.append(replace(t, columns=columns, rows=rows))
        return replace(self, tables=tuple(tables))


@st.composite
def cases(draw: st.DrawFn, min_tables: int = 3, max_tables: int = 5) -> Case:
    schema = draw(st.sampled_from(ODD_SCHEMAS))
    names = draw(
        st.lists(IDENTIFIERS, min_size=min_tables + 1, max_size=max_tables + 1, unique_by=str)
    )
    enum, table_names = names[0], names[1:]
    labels = tuple(draw(st.lists(IDENTIFIERS, min_size=1, max_size=4, unique=True)))
    types = case_types(schema, derived(enum, "_enum"), labels, ("pg_class", "pg_catalog.pg_type"))
    all_types = BUILTIN + types.types
    tables = []
    for name in table_names:
        shape = draw(st.sampled_from(SHAPES))
        column_names = draw(st.lists(IDENTIFIERS.filter(lambda n: n not in ("k", "own", "row id")),
                                     min_size=1, max_size=5, unique=True))  # fmt: skip
        column_types = [draw(st.sampled_from(all_types)) for _ in column_names]
        row = st.tuples(*[t.values() for t in column_types])
        rows = tuple(draw(st.lists(row, max_size=5)))
        keys = tuple(
            draw(st.lists(st.integers(-1000, 1000), min_size=len(rows), max_size=len(rows)))
        )
        tables.append(
            TableSpec(name, shape, tuple(zip(column_names, column_types, strict=True)), rows, keys)
        )
    blobs = tuple(draw(st.lists(st.binary(max_size=3000), max_size=2)))
    return Case(types, tuple(tables), blobs, draw(st.integers(0, 10**6)))


def everything() -> Case:
    """One case with every type and every extreme value, a table with 300
    columns, an empty table and one with no columns: the fixed example."""
    types = case_types(
        "Sales Ü", "mood enum", ("sad", "ok ", "😀", 'it\'s "x"', "é" * 31), ("pg_class",)
    )
    all_types = BUILTIN + types.types
    columns = tuple((derived(f"c{i} {t.sql}", ""), t) for i, t in enumerate(all_types))
    depth = max(len(t.extremes) for t in all_types)
    rows = [
        tuple(t.extreme_values()[i] if i < len(t.extremes) else None for t in all_types)
        for i in range(depth)
    ]
    rows.append(tuple(None for _ in all_types))
    integer, text = builtin("integer"), builtin("text")
    wide = tuple((f"w{i}", integer) for i in range(300))
    wide_rows = (tuple(str(i) for i in range(300)), tuple(None for _ in range(300)))
    tables = (
        TableSpec("everything", "plain", columns, tuple(rows), tuple(range(len(rows)))),
        TableSpec("wide", "identity", wide, wide_rows, (0, 1)),
        TableSpec("empty", "plain", (("e", text),), (), ()),
        TableSpec("no columns", "plain", (), ((), (), ()), (0, 1, 2)),
        TableSpec("events", "partitioned", (("at", builtin("date")), ("what", text)),
                  (("'2024-01-01'::date", "'x'::text"), ("'infinity'::date", None)), (-5, 5)),
        TableSpec("parent", "inherited", (("a", integer), ("b", text)),
                  (("1", "'p'::text"), ("2", "'c'::text")), (0, 1)),
        TableSpec("doubled", "generated", (("n", text),), (("'one'::text",), (None,)), (1, -7)),
    )  # fmt: skip
    big_object = bytes((i * 7919) % 251 for i in range(300_000))  # many 2 kB pages
    return Case(types, tables, (b"", bytes(range(256)) * 20, big_object), mutate=0)


def _create(case: Case, table: TableSpec) -> list[str]:
    """The statements that create ``table`` in its shape."""
    schema = quote_ident(case.schema)
    q = f"{schema}.{quote_ident(table.name)}"
    cols = [f"{quote_ident(name)} {typ.sql}" for name, typ in table.columns]
    after = "".join(", " + c for c in cols)  # the columns after a first one
    if table.shape == "identity":
        identity = "GENERATED ALWAYS AS IDENTITY (START WITH -5 MINVALUE -100 INCREMENT BY 3)"
        return [f'CREATE TABLE {q} ("row id" bigint {identity} PRIMARY KEY{after})']
    if table.shape == "generated":
        twice = '"k twice" bigint GENERATED ALWAYS AS ("k"::bigint * 2) STORED'
        return [f'CREATE TABLE {q} ("k" integer{after}, {twice})']
    if table.shape == "partitioned":
        neg, pos = (f"{schema}.{quote_ident(derived(table.name, s))}" for s in ("_neg", "_pos"))
        reversed_cols = "".join(c + ", " for c in reversed(cols))
        return [
            f'CREATE TABLE {q} ("k" integer NOT NULL{after}) PARTITION BY RANGE ("k")',
            f"CREATE TABLE {neg} PARTITION OF {q} FOR VALUES FROM (MINVALUE) TO (0)",
            # Another column order than the parent's, then attached.
            f'CREATE TABLE {pos} ({reversed_cols}"k" integer NOT NULL)',
            f"ALTER TABLE {q} ATTACH PARTITION {pos} FOR VALUES FROM (0) TO (MAXVALUE)",
        ]
    if table.shape == "inherited":
        child = f"{schema}.{quote_ident(derived(table.name, '_child'))}"
        return [
            f"CREATE TABLE {q} ({', '.join(cols)})",
            f"CREATE TABLE {child} (\"own\" text DEFAULT 'mine') INHERITS ({q})",
            # The child has it after "own"; a restore creates it before.
            f'ALTER TABLE {q} ADD COLUMN "k" integer',
        ]
    return [f"CREATE TABLE {q} ({', '.join(cols)})"]


def _inserts(case: Case, table: TableSpec) -> list[str]:
    schema = quote_ident(case.schema)
    out = []
    for row, k in zip(table.rows, table.keys, strict=True):
        columns = [quote_ident(n) for n, _ in table.columns]
        values = ["NULL" if v is None else v for v in row]
        if table.shape in ("generated", "partitioned", "inherited"):
            columns, values = ['"k"', *columns], [str(k), *values]
        name = table.name
        if table.shape == "inherited" and k % 2:
            name = derived(table.name, "_child")
        into = f"{schema}.{quote_ident(name)}"
        if columns:
            out.append(f"INSERT INTO {into} ({', '.join(columns)}) VALUES ({', '.join(values)})")
        else:
            out.append(f"INSERT INTO {into} DEFAULT VALUES")
    return out


def statements(case: Case) -> list[str]:
    """SQL that creates the case's database contents."""
    schema = quote_ident(case.schema)
    out = [] if case.schema == "public" else [f"CREATE SCHEMA {schema}"]
    needs = sorted({t.needs for table in case.tables for _, t in table.columns if t.needs})
    out += [f"CREATE EXTENSION IF NOT EXISTS {quote_ident(n)}" for n in needs]
    out += case_type_definitions(case.types)
    for table in case.tables:
        out += _create(case, table)
    for table in case.tables:
        out += _inserts(case, table)
    for blob in case.large_objects:
        out.append(f"SELECT lo_from_bytea(0, {quote_literal(chr(92) + 'x' + blob.hex())}::bytea)")
    return out
