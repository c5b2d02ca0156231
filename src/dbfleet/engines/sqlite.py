"""SQLite: consistent online copies through SQLite's backup API.

Backup: the backup API copies the live database page by page into a staging
file in a private temporary directory (``options.staging_dir`` chooses where),
restarting automatically if a writer changes the source meanwhile, so the
copy is one consistent state even while the application writes. The
fingerprint is taken from that copy (exactly what is stored), the copy is
streamed into the repository and deleted. SQLite is the one engine that
stages: the backup API's destination must itself be a database file.

Restore: the stream is written next to the target path, checked with
``PRAGMA integrity_check``, then renamed into place, so the target is either
untouched or complete. An existing target file is replaced only with
``--clean``. ``--table`` restores the named tables (with their indexes and
triggers) into a new file.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, ClassVar

from dbfleet.config import DatabaseConfig
from dbfleet.engines.base import (
    BackupMeta,
    Capabilities,
    Health,
    RestoreOptions,
    StreamSink,
    StreamSource,
)
from dbfleet.errors import EngineError, UsageError

MEDIA_TYPE = "application/vnd.sqlite3"
PAGES_PER_STEP = 1024


class SQLiteEngine:
    name: ClassVar[str] = "sqlite"
    capabilities: ClassVar[Capabilities] = Capabilities(subset_restore=True)

    def __init__(self, config: DatabaseConfig) -> None:
        if config.path is None:
            raise UsageError("sqlite database needs a 'path'")
        self.config = config
        self.path = Path(config.path).expanduser()

    # -- helpers ---------------------------------------------------------

    def _connect_source(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise EngineError(f"SQLite database {self.path} does not exist")
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise EngineError(f"cannot open SQLite database {self.path}: {exc}") from exc
        return conn

    # -- Engine ----------------------------------------------------------

    def health(self) -> Health:
        try:
            with closing(self._connect_source()) as conn:
                quick = conn.execute("PRAGMA quick_check").fetchone()[0]
                tables = conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                ).fetchone()[0]
                journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        except EngineError as exc:
            return Health(ok=False, error=str(exc))
        return Health(
            ok=quick == "ok",
            version=sqlite3.sqlite_version,
            size_bytes=self.path.stat().st_size,
            details={"quick_check": quick, "tables": tables, "journal_mode": journal},
            error=None if quick == "ok" else f"quick_check: {quick}",
        )

    def backup(self, sink: StreamSink) -> BackupMeta:
        staging_root = self.config.options.get("staging_dir")
        with tempfile.TemporaryDirectory(prefix="dbfleet-sqlite-", dir=staging_root) as tmp:
            copy = Path(tmp) / "copy.db"
            with closing(self._connect_source()) as source, closing(sqlite3.connect(copy)) as dest:
                try:
                    source.backup(dest, pages=PAGES_PER_STEP)
                except sqlite3.Error as exc:
                    raise EngineError(f"SQLite backup of {self.path} failed: {exc}") from exc
                fingerprint = _fingerprint(dest, ())
            with open(copy, "rb") as stream:
                sink.write_stream("database", stream, MEDIA_TYPE)
        return BackupMeta(
            server_version=sqlite3.sqlite_version,
            tool="sqlite3-backup-api",
            tool_version=sqlite3.sqlite_version,
            fingerprint=fingerprint,
        )

    def restore(self, source: StreamSource, options: RestoreOptions) -> None:
        if self.path.exists() and not options.clean:
            raise EngineError(
                f"{self.path} exists", hint="restore to a new path, or pass --clean to replace it"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(f".{self.path.name}.dbfleet-restore")
        try:
            with open(staging, "wb") as out:
                for chunk in source.open_stream("database"):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            with closing(sqlite3.connect(staging)) as conn:
                result = conn.execute("PRAGMA integrity_check").fetchone()[0]
                if result != "ok":
                    raise EngineError(f"restored database fails integrity_check: {result}")
            if options.tables:
                subset = staging.with_name(staging.name + "-subset")
                try:
                    _copy_tables(staging, subset, options.tables)
                except sqlite3.Error as exc:
                    subset.unlink(missing_ok=True)
                    raise EngineError(f"restoring table(s) {', '.join(options.tables)} "
                                      f"failed: {exc}") from None  # fmt: skip
                os.replace(subset, staging)
            os.replace(staging, self.path)
        finally:
            staging.unlink(missing_ok=True)

    def fingerprint(self, tables: tuple[str, ...] = ()) -> dict[str, Any]:
        with closing(self._connect_source()) as conn:
            conn.execute("BEGIN")
            return _fingerprint(conn, tables)

    def target(self, name: str) -> DatabaseConfig:
        path = Path(name).expanduser()
        if not path.is_absolute() and "/" not in name:
            path = self.path.with_name(name if name.endswith(".db") else f"{name}.db")
        return self.config.with_changes(path=path, scratch=None)

    def scratch(self, label: str) -> DatabaseConfig:
        return self.config.with_changes(
            path=self.path.with_name(f".{self.path.stem}.dbfleet-{label}.db"), scratch=None
        )

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def _user_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    ).fetchall()
    return [r[0] for r in rows]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _fingerprint(conn: sqlite3.Connection, tables: tuple[str, ...]) -> dict[str, Any]:
    """Per table: row count and the sum (mod 2^64) of a hash of each row, so
    row order does not matter and duplicate rows still count."""
    result: dict[str, Any] = {}
    names = _user_tables(conn)
    for name in tables:
        if name not in names:
            raise EngineError(f"table {name!r} does not exist")
    for name in tables or tuple(names):
        try:
            result[name] = _table_fingerprint(conn, name)
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc):
                raise EngineError(f"cannot read table {name!r}: {exc}") from None
            # TEXT that is not UTF-8 (SQLite stores what it is given): again,
            # decoding what decodes as before, so valid text digests the same.
            conn.text_factory = _text_or_raw
            try:
                result[name] = _table_fingerprint(conn, name)
            finally:
                conn.text_factory = str
        except sqlite3.Error as exc:
            raise EngineError(f"cannot read table {name!r}: {exc}") from None
    return {"tables": result}


def _table_fingerprint(conn: sqlite3.Connection, name: str) -> dict[str, Any]:
    rows, digest = 0, 0
    for row in _rows(conn, name):
        rows += 1
        h = hashlib.blake2b(repr(row).encode(), digest_size=8).digest()
        digest = (digest + int.from_bytes(h, "little")) % 2**64
    return {"rows": rows, "digest": f"{digest:016x}"}


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
    cursor = conn.execute(f"SELECT * FROM {_quote(table)}")
    while batch := cursor.fetchmany(1000):
        yield from batch


def _copy_tables(full: Path, subset: Path, tables: tuple[str, ...]) -> None:
    subset.unlink(missing_ok=True)
    with closing(sqlite3.connect(subset)) as conn:
        conn.execute("ATTACH DATABASE ? AS src", (str(full),))
        known = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM src.sqlite_master WHERE type = 'table'"
            ).fetchall()
        }
        for table in tables:
            if table not in known:
                raise EngineError(
                    f"table {table!r} is not in the backup",
                    hint=f"tables: {', '.join(sorted(known))}",
                )
        with conn:
            for table in tables:
                (ddl,) = conn.execute(
                    "SELECT sql FROM src.sqlite_master WHERE type = 'table' AND name = ?", (table,)
                ).fetchone()
                conn.execute(ddl)
                columns = _copied_columns(conn, table)
                conn.execute(f"INSERT INTO main.{_quote(table)} ({columns}) "
                             f"SELECT {columns} FROM src.{_quote(table)}")  # fmt: skip
                _copy_sequence(conn, table)
                for (extra,) in conn.execute(
                    "SELECT sql FROM src.sqlite_master WHERE tbl_name = ? "
                    "AND type IN ('index', 'trigger') AND sql IS NOT NULL",
                    (table,),
                ).fetchall():
                    conn.execute(extra)
        conn.execute("DETACH DATABASE src")


def _copied_columns(conn: sqlite3.Connection, table: str) -> str:
    """The column list that copies ``table`` from ``src`` as it is: every
    stored column but generated ones (SQLite computes those, and refuses
    values for them), and the rowid of a rowid table (``SELECT *`` leaves it
    out, and a copy would renumber the rows: references to rowids, such as
    an FTS index's external content, would point at other rows)."""
    columns = [
        name
        for name, hidden in conn.execute(
            "SELECT name, hidden FROM pragma_table_xinfo(?, 'src')", (table,)
        )
        if hidden == 0
    ]
    names = [_quote(c) for c in columns]
    taken = {c.lower() for c in columns}
    alias = next((a for a in ("rowid", "_rowid_", "oid") if a not in taken), None)
    if alias is not None:
        try:
            conn.execute(f"SELECT {alias} FROM src.{_quote(table)} LIMIT 0")
        except sqlite3.OperationalError:  # a WITHOUT ROWID table
            alias = None
    return ", ".join(([alias] if alias else []) + names)


def _copy_sequence(conn: sqlite3.Connection, table: str) -> None:
    """An AUTOINCREMENT table's counter (``sqlite_sequence``), which may run
    ahead of its rows: without it, ids of deleted rows would be handed out
    again."""
    has = "SELECT 1 FROM {}.sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    if not (conn.execute(has.format("src")).fetchone() and conn.execute(has.format("main"))
            .fetchone()):  # fmt: skip
        return
    conn.execute("DELETE FROM main.sqlite_sequence WHERE name = ?", (table,))
    conn.execute("INSERT INTO main.sqlite_sequence (name, seq) "
                 "SELECT name, seq FROM src.sqlite_sequence WHERE name = ?", (table,))  # fmt: skip
