"""Generated SQLite databases: every storage class and affinity, extremes,
odd identifiers and the schema objects SQLite has, through a real backup and
restore (whole, and ``--table`` of the first, middle or last table).

Each case builds a database file from a drawn schema (rowid, ``WITHOUT
ROWID`` and ``STRICT`` tables; typeless columns and every affinity; virtual
and stored generated columns; ``AUTOINCREMENT``; foreign keys; indexes,
triggers, views) and drawn rows (NULL, 64-bit integer extremes, integers
beyond 64 bits (stored as REAL), NaN/±Inf/-0.0/subnormal REALs, unicode
and NUL-carrying TEXT, TEXT that is not UTF-8, BLOBs). The restored file is
compared with the source through ``sqlite3`` itself (every value with its
storage class, rowids, the schema in ``sqlite_master``, ``sqlite_sequence``),
independently of dbfleet's fingerprint; then the fingerprint must agree:
equal after the restore, and naming exactly the table whose value the test
changes in the restored copy.
"""

from __future__ import annotations

import sqlite3
import struct
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dbfleet.config import DatabaseConfig
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.sqlite import SQLiteEngine
from tests.conftest import generated_examples
from tests.generated.roundtrip import backed_up, restore_as

# Declared types and the affinity SQLite derives from each (section 3.1 of
# "Datatypes In SQLite"); "" is a typeless column (BLOB affinity).
DECLARED_TYPES = ["INTEGER", "INT", "BIGINT", "TEXT", "VARCHAR(20)", "CLOB", "BLOB", "",
                  "REAL", "DOUBLE", "FLOAT", "NUMERIC", "DECIMAL(10,5)", "BOOLEAN", "DATETIME",
                  "STRING", "CHARINT"]  # fmt: skip
STRICT_TYPES = ["INT", "INTEGER", "REAL", "TEXT", "BLOB", "ANY"]
INT64 = (-(2**63), 2**63 - 1)
ODD_TABLE_NAMES = ["order", "select", "a b", 'quo"te', "semi;colon", "ünïcödé", "表",
                   "x.y", "[brackets]", "`tick`", "-dash", "123", "café ☕", "MixedCase",
                   "tab\tname", "'single'", "percent%_"]  # fmt: skip


@dataclass(frozen=True)
class Raw:
    """A value written as an SQL expression (what a Python value cannot
    express: integers beyond 64 bits, TEXT that is not UTF-8)."""

    sql: str


@dataclass
class Column:
    name: str
    declared: str
    generated: str | None = None  # "VIRTUAL" / "STORED"

    def ddl(self, source: str) -> str:
        text = f"{quote(self.name)} {self.declared}".rstrip()
        if self.generated:
            text += f" GENERATED ALWAYS AS (typeof({quote(source)}) || 'g') {self.generated}"
        return text


@dataclass
class Table:
    name: str
    kind: str  # "rowid", "autoincrement", "without rowid", "strict"
    columns: list[Column]
    rows: list[list[Any]]
    index: bool
    trigger: bool
    view: bool
    references: str | None = None
    keys: list[Any] = field(default_factory=list)

    @property
    def data_columns(self) -> list[Column]:
        return [c for c in self.columns if not c.generated]

    def ddl(self) -> str:
        first = self.data_columns[0].name
        parts = []
        if self.kind == "autoincrement":
            parts.append('"id" INTEGER PRIMARY KEY AUTOINCREMENT')
        elif self.kind == "without rowid":
            parts.append('"id" TEXT PRIMARY KEY')
        elif self.kind == "strict":
            parts.append('"id" INTEGER PRIMARY KEY')
        parts += [c.ddl(first) for c in self.columns]
        if self.references:
            parts.append(f'"ref" INTEGER REFERENCES {quote(self.references)}("id")')
        suffix = {"without rowid": " WITHOUT ROWID", "strict": " STRICT"}.get(self.kind, "")
        return f"CREATE TABLE {quote(self.name)} ({', '.join(parts)}){suffix}"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- strategies ----------------------------------------------------------------

floats = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 1.7976931348623157e308,
                     -1.7976931348623157e308, 5e-324, 2.2250738585072014e-308, 1.0, 0.1]),
    st.floats(allow_nan=True, allow_infinity=True),
)  # fmt: skip
integers = st.one_of(
    st.sampled_from([INT64[0], INT64[1], 0, -1, 1, 2**31 - 1, -(2**31), 2**53 + 1]),
    st.integers(*INT64),
)
texts = st.one_of(
    st.sampled_from(["", "0", "1.5", "  42  ", "NULL", "0x1F", "1e999", "ü\x00nul", "\U0001f600",
                     "x" * 70000, "-0", "9223372036854775808"]),
    st.text(max_size=30),
)  # fmt: skip
blobs = st.one_of(st.sampled_from([b"", b"\x00", b"\xff" * 3, bytes(range(256)) * 80]),
                  st.binary(max_size=40))  # fmt: skip
raws = st.sampled_from([Raw("9223372036854775808"), Raw("-99999999999999999999999"),
                        Raw("CAST(x'ff00fe' AS TEXT)"), Raw("CAST(x'c3' AS TEXT)"),
                        Raw("1e400"), Raw("-1e400"), Raw("zeroblob(3)")])  # fmt: skip
any_value = st.one_of(st.none(), integers, floats, texts, blobs, raws)
STRICT_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "INT": st.one_of(st.none(), integers),
    "INTEGER": st.one_of(st.none(), integers),
    "REAL": st.one_of(st.none(), floats.filter(lambda f: f == f)),  # NaN binds as NULL anyway
    "TEXT": st.one_of(st.none(), texts),
    "BLOB": st.one_of(st.none(), blobs),
    "ANY": any_value,
}
names = st.one_of(st.sampled_from(ODD_TABLE_NAMES),
                  st.text(min_size=1, max_size=10).filter(lambda s: "\x00" not in s))  # fmt: skip


@st.composite
def databases(draw: st.DrawFn) -> list[Table]:
    table_names = draw(
        st.lists(
            names.filter(lambda s: not s.lower().startswith("sqlite_")),
            min_size=1,
            max_size=4,
            unique_by=lambda s: s.lower(),
        )  # fmt: skip
    )
    tables: list[Table] = []
    for name in table_names:
        kind = draw(st.sampled_from(["rowid", "autoincrement", "without rowid", "strict"]))
        width = draw(st.integers(1, 4))
        types = STRICT_TYPES if kind == "strict" else DECLARED_TYPES
        columns = [Column(f"c{i} {draw(st.sampled_from(['', 'ö', 'a b', 'x'])) }".strip(),
                          draw(st.sampled_from(types))) for i in range(width)]  # fmt: skip
        if draw(st.booleans()):
            columns.append(Column("gen", "TEXT", draw(st.sampled_from(["VIRTUAL", "STORED"]))))
        strategies = [STRICT_VALUES[c.declared] if kind == "strict" else any_value
                      for c in columns if not c.generated]  # fmt: skip
        count = draw(st.integers(0, 6))
        rows = [[draw(s) for s in strategies] for _ in range(count)]
        references = tables[-1].name if tables and draw(st.booleans()) else None
        table = Table(name, kind, columns, rows, index=draw(st.booleans()),
                      trigger=draw(st.booleans()), view=draw(st.booleans()),
                      references=references)  # fmt: skip
        if kind == "without rowid":
            table.keys = draw(st.lists(texts, min_size=count, max_size=count, unique=True))
        elif kind in ("autoincrement", "strict"):
            # room above the keys: the build runs an AUTOINCREMENT counter ahead
            keys = integers if kind == "strict" else st.integers(-(2**62), 2**62)
            table.keys = draw(st.lists(keys, min_size=count, max_size=count, unique=True))
        tables.append(table)
    return tables


# -- building and reading ------------------------------------------------------


def build(path: Path, tables: list[Table]) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        for table in tables:
            conn.execute(table.ddl())
            target = quote(table.name)
            first = quote(table.data_columns[0].name)
            for n, row in enumerate(table.rows):
                names = [quote(c.name) for c in table.data_columns]
                values: list[Any] = list(row)
                if table.keys:
                    names.insert(0, '"id"')
                    values.insert(0, table.keys[n])
                if table.references:
                    names.append('"ref"')
                    values.append(n)
                exprs = [v.sql if isinstance(v, Raw) else "?" for v in values]
                params = [v for v in values if not isinstance(v, Raw)]
                conn.execute(f"INSERT INTO {target} ({', '.join(names)}) "
                             f"VALUES ({', '.join(exprs)})", params)  # fmt: skip
            if table.kind == "rowid" and len(table.rows) > 1:
                # a gap in the rowids (a copy that renumbers rows is caught)
                conn.execute(f"DELETE FROM {target} WHERE _rowid_ = (SELECT min(_rowid_) "
                             f"FROM {target})")  # fmt: skip
            if table.kind == "autoincrement" and table.rows:
                # the sequence runs ahead of the rows (deleted at the top)
                conn.execute(f"INSERT INTO {target} (\"id\") VALUES ((SELECT max(\"id\") + 5 "
                             f"FROM {target}))")  # fmt: skip
                conn.execute(f'DELETE FROM {target} WHERE "id" = (SELECT max("id") FROM {target})')
            if table.index:
                conn.execute(f"CREATE INDEX {quote('ix ' + table.name)} ON {target} ({first})")
                conn.execute(f"CREATE INDEX {quote('ix2 ' + table.name)} ON {target} "
                             f"(typeof({first}), length({first}))")  # fmt: skip
            if table.trigger:
                conn.execute(f"CREATE TRIGGER {quote('tr ' + table.name)} AFTER UPDATE ON "
                             f"{target} BEGIN SELECT 1; END")  # fmt: skip
            if table.view:
                conn.execute(f"CREATE VIEW {quote('v ' + table.name)} AS SELECT * FROM {target}")


def _text(raw: bytes) -> tuple[str, bytes]:
    return ("text", raw)


def contents(path: Path, tables: list[str] | None = None) -> dict[str, Any]:
    """Everything ``sqlite3`` shows of the file: the schema (``sqlite_master``
    rows but root pages), per table every row with its rowid and each
    value's storage class (TEXT as its raw bytes, REAL as its bits), and
    ``sqlite_sequence``. ``tables``: only those tables, their indexes and
    triggers."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        schema = sorted(
            row for row in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
            if tables is None or (row[2] in tables and row[0] != "view")
        )  # fmt: skip
        names = [n for (t, n, _tb, _s) in schema if t == "table" and not n.startswith("sqlite_")]
        data: dict[str, Any] = {"schema": schema}
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            data["sqlite_sequence"] = sorted(  # (an empty one is not there in a subset)
                (n, seq) for n, seq in conn.execute("SELECT * FROM sqlite_sequence")
                if tables is None or n in tables
            )  # fmt: skip
            if not data["sqlite_sequence"]:
                del data["sqlite_sequence"]
        conn.text_factory = _text
        for table in names:
            rowid = conn.execute(
                "SELECT 1 FROM pragma_table_list WHERE name = ? AND wr = 0", (table,)
            ).fetchone()
            select = "SELECT _rowid_, * " if rowid else "SELECT * "
            rows = conn.execute(select + f"FROM {quote(table)}").fetchall()
            data[table] = sorted(repr(tuple(_exact(v) for v in row)) for row in rows)
        return data


def _exact(value: Any) -> Any:
    if isinstance(value, float):
        return ("real", struct.pack("<d", value))
    return value


# -- the round trip ------------------------------------------------------------


@settings(max_examples=generated_examples(25))
@given(tables=databases(), data=st.data())
@example(tables=[Table("t", "rowid", [Column("x", "")], [[Raw("CAST(x'ff00fe' AS TEXT)")]],
                       index=False, trigger=False, view=False)], data=None)  # fmt: skip
@example(tables=[Table("g", "without rowid", [Column("x", "INTEGER"), Column("gen", "TEXT",
                       "VIRTUAL")], [[1]], index=True, trigger=False, view=False, keys=["k"])],
         data=None)  # fmt: skip
@example(tables=[Table("seq", "autoincrement", [Column("x", "")], [[1], [2]], index=False,
                       trigger=False, view=False, keys=[1, 2])], data=None)  # fmt: skip
@example(tables=[Table("gap", "rowid", [Column("x", "")], [[1], [2], [3]], index=False,
                       trigger=True, view=True)], data=None)  # fmt: skip
def test_sqlite_round_trip(
    tables: list[Table], data: st.DataObject | None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("sqlite-gen")
    source = root / "source.db"
    build(source, tables)
    repo, snapshot = backed_up(SQLiteEngine(DatabaseConfig(engine="sqlite", path=source)))
    assert snapshot.fingerprint is not None

    whole = restore_as(SQLiteEngine, repo, snapshot,
                       DatabaseConfig(engine="sqlite", path=root / "whole.db"))  # fmt: skip
    assert contents(root / "whole.db") == contents(source)
    assert compare_fingerprints(snapshot.fingerprint, whole.fingerprint()) == []

    # subset: the first, middle or last table of the file
    position = 0 if data is None else data.draw(st.sampled_from([0, len(tables) // 2, -1]))
    chosen = tables[position].name
    subset = restore_as(SQLiteEngine, repo, snapshot,
                        DatabaseConfig(engine="sqlite", path=root / "subset.db"),
                        tables=(chosen,))  # fmt: skip
    assert contents(root / "subset.db", [chosen]) == contents(source, [chosen])
    assert compare_fingerprints(snapshot.fingerprint, subset.fingerprint((chosen,)),
                                (chosen,)) == []  # fmt: skip

    # one value changed in the restored copy: exactly its table differs
    filled = [t for t in tables if t.rows]
    if filled:
        table = filled[0] if data is None else data.draw(st.sampled_from(filled))
        change_one_value(root / "whole.db", table)
        differences = compare_fingerprints(snapshot.fingerprint, whole.fingerprint())
        assert len(differences) == 1 and differences[0].startswith(f"{table.name}: "), differences


def change_one_value(path: Path, table: Table) -> None:
    """Set the last stored column of one row of ``table`` to a value of
    another storage class (NULL, or 1 / a value its STRICT type takes)."""
    column = quote(table.data_columns[-1].name)
    key = 'CAST("id" AS BLOB)' if table.kind == "without rowid" else "_rowid_"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.text_factory = bytes  # TEXT need not be UTF-8
        row_key, old = conn.execute(f"SELECT {key}, {column} FROM {quote(table.name)} "
                                    "LIMIT 1").fetchone()  # fmt: skip
        declared = table.data_columns[-1].declared
        new = None if old is not None else 1
        if table.kind == "strict" and old is None:
            new = _typed(declared)
        changed = conn.execute(f"UPDATE {quote(table.name)} SET {column} = ? WHERE {key} = ?",
                               (new, row_key)).rowcount  # fmt: skip
        assert changed == 1


def _typed(declared: str) -> Any:
    return {"INT": 1, "INTEGER": 1, "REAL": 1.5, "TEXT": "t", "BLOB": b"b", "ANY": 1}[declared]
