"""What a SQLite database holds: the data fingerprint.

Fingerprint (format 2)::

    {"format": 2,
     "tables": {name: {"rows": n, "digest": "...", "schema": "..."}},
     "schema": {"views": "...", "user_version": n, "application_id": n}}

* ``digest`` is the sum (mod 2^64) of a hash of each row, so row order does
  not matter and duplicate rows still count.
* A table's ``schema`` hashes its ``CREATE TABLE`` text with the text of its
  indexes and triggers (what ``restore --table`` copies along), so a restore
  that loses an index or changes a column type is a difference; SQLite keeps
  the DDL text verbatim, so equal schemas have equal text.
* The top-level ``schema`` covers what belongs to no table (views) and the
  header fields applications use as schema versions (``PRAGMA
  user_version``, ``application_id``).

Format 1 (before the schemas) had only ``rows`` and ``digest``: its snapshots
still verify, compared on what they have (see
:func:`dbfleet.engines.base.compare_fingerprints`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from typing import Any

from dbfleet.errors import EngineError

FINGERPRINT_FORMAT = 2


def user_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    ).fetchall()
    return [r[0] for r in rows]


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def fingerprint(conn: sqlite3.Connection, tables: tuple[str, ...]) -> dict[str, Any]:
    """The fingerprint of ``conn``'s database (only ``tables`` when given:
    then without the top-level ``schema``, which no table restore carries)."""
    result: dict[str, Any] = {}
    names = user_tables(conn)
    for name in tables:
        if name not in names:
            raise EngineError(f"table {name!r} does not exist")
    for name in tables or tuple(names):
        try:
            result[name] = _table(conn, name)
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc):
                raise EngineError(f"cannot read table {name!r}: {exc}") from None
            # TEXT that is not UTF-8 (SQLite stores what it is given): again,
            # decoding what decodes as before, so valid text digests the same.
            conn.text_factory = _text_or_raw
            try:
                result[name] = _table(conn, name)
            finally:
                conn.text_factory = str
        except sqlite3.Error as exc:
            raise EngineError(f"cannot read table {name!r}: {exc}") from None
    out: dict[str, Any] = {"format": FINGERPRINT_FORMAT, "tables": result}
    if not tables:
        out["schema"] = _database_schema(conn)
    return out


def _digest(texts: list[str]) -> str:
    return hashlib.blake2b("\0".join(texts).encode(), digest_size=16).hexdigest()


def _table(conn: sqlite3.Connection, name: str) -> dict[str, Any]:
    rows, digest = 0, 0
    for row in _rows(conn, name):
        rows += 1
        h = hashlib.blake2b(repr(row).encode(), digest_size=8).digest()
        digest = (digest + int.from_bytes(h, "little")) % 2**64
    return {"rows": rows, "digest": f"{digest:016x}", "schema": _table_schema(conn, name)}


def _table_schema(conn: sqlite3.Connection, name: str) -> str:
    (table_sql,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    attached = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name",
        (name,),
    ).fetchall()
    return _digest([table_sql, *(f"{kind}\0{n}\0{sql}" for kind, n, sql in attached)])


def _database_schema(conn: sqlite3.Connection) -> dict[str, Any]:
    views = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY name"
    ).fetchall()
    return {
        "views": _digest([f"{n}\0{sql}" for n, sql in views]),
        "user_version": conn.execute("PRAGMA user_version").fetchone()[0],
        "application_id": conn.execute("PRAGMA application_id").fetchone()[0],
    }


class _RawText(bytes):
    """A TEXT value that is not UTF-8: its bytes, never equal in ``repr`` to
    a BLOB of the same bytes or to any decodable text."""

    def __repr__(self) -> str:
        return f"text({bytes(self)!r})"


def _text_or_raw(value: bytes) -> str | _RawText:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return _RawText(value)


def _rows(conn: sqlite3.Connection, table: str) -> Iterator[tuple[Any, ...]]:
    cursor = conn.execute(f"SELECT * FROM {quote(table)}")
    while batch := cursor.fetchmany(1000):
        yield from batch
