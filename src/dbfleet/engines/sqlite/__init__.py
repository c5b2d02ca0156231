"""SQLite: consistent online copies through SQLite's backup API.

Backup: the backup API copies the live database page by page into a staging
file in a private temporary directory (``options.staging_dir`` chooses where),
restarting automatically if a writer changes the source meanwhile, so the
copy is one consistent state even while the application writes. The
fingerprint is taken from that copy (exactly what is stored), the copy is
streamed into the repository and deleted. SQLite is the one engine that
stages: the backup API's destination must itself be a database file. A
staging directory (``dbfleet-sqlite-*``) holds a lock while in use: a backup
stopped by a signal removes its own on the way out (the CLI turns SIGTERM
and SIGHUP into an exception), and every SQLite backup first removes the
ones whose lock nobody holds any more (their backup was killed outright).

Restore: the stream is written next to the target path, checked with
``PRAGMA integrity_check``, then renamed into place, so the target is either
untouched or complete. An existing target file is replaced only with
``--clean``. ``--table`` restores the named tables (with their indexes and
triggers) into a new file. A failed restore leaves no staging file behind.

Targets (``--target NAME``): a file name, placed next to the source
(``.db`` appended when missing), or an absolute path; never a relative path
that could climb out of the source's directory, never a URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
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
from dbfleet.validation import target_name_problem

MEDIA_TYPE = "application/vnd.sqlite3"
PAGES_PER_STEP = 1024
OPTIONS = ("staging_dir",)
STAGING_PREFIX = "dbfleet-sqlite-"
STAGING_LOCK = ".in-use"
UNLOCKED_GRACE_SECONDS = 3600
"""A staging directory without its lock file yet is being created (or is from
an older dbfleet): removed only once it is this old."""


class SQLiteEngine:
    name: ClassVar[str] = "sqlite"
    capabilities: ClassVar[Capabilities] = Capabilities(subset_restore=True, health_sample=True)

    def __init__(self, config: DatabaseConfig) -> None:
        if config.path is None:
            raise UsageError("sqlite database needs a 'path'")
        unknown = set(config.options) - set(OPTIONS)
        if unknown:
            raise UsageError(
                f"unknown sqlite option(s) {', '.join(sorted(map(str, unknown)))} "
                f"(known: {', '.join(OPTIONS)})"
            )
        staging = config.options.get("staging_dir")
        if staging is not None and (not isinstance(staging, str) or not staging.strip()):
            raise UsageError("sqlite option staging_dir must be a directory path")
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
        with _staging_directory(self.config.options.get("staging_dir")) as tmp:
            copy = tmp / "copy.db"
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
        if self.path.is_dir():
            raise UsageError(f"{self.path} is a directory", hint="name the database file to write")
        if self.path.exists() and not options.clean:
            raise EngineError(
                f"{self.path} exists", hint="restore to a new path, or pass --clean to replace it"
            )
        staging = self.path.with_name(f".{self.path.name}.dbfleet-restore")
        subset = staging.with_name(staging.name + "-subset")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
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
                try:
                    _copy_tables(staging, subset, options.tables)
                except sqlite3.Error as exc:
                    raise EngineError(f"restoring table(s) {', '.join(options.tables)} "
                                      f"failed: {exc}") from None  # fmt: skip
                os.replace(subset, staging)
            # a -wal or -journal left by the replaced file would be replayed
            # into the restored one on its first open
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            os.replace(staging, self.path)
        except OSError as exc:
            raise EngineError(
                f"cannot restore to {self.path}: {exc.strerror or exc}"
                + (f" ({exc.filename})" if exc.filename else "")
            ) from exc
        finally:
            for leftover in (staging, subset):
                for suffix in ("", "-journal", "-wal", "-shm"):
                    with contextlib.suppress(OSError):  # the restore's own error is the one
                        Path(f"{leftover}{suffix}").unlink()

    def fingerprint(self, tables: tuple[str, ...] = ()) -> dict[str, Any]:
        with closing(self._connect_source()) as conn:
            conn.execute("BEGIN")
            return _fingerprint(conn, tables)

    def target(self, name: str) -> DatabaseConfig:
        problem = target_name_problem(name)
        if problem:
            raise UsageError(f"SQLite target {name!r}: {problem}")
        if "://" in name:
            raise UsageError(
                f"SQLite target {name!r} is a URL; SQLite restores to a file",
                hint="give a file name (placed next to the source) or an absolute path",
            )
        path = Path(name).expanduser()
        if not path.is_absolute():
            if "/" in name or "\\" in name or name in (".", "~"):
                raise UsageError(
                    f"SQLite target {name!r}: a relative path is ambiguous",
                    hint="give a file name, placed next to the source; an absolute path; "
                    "or --to PATH",
                )
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
                raise UsageError(
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


@contextmanager
def _staging_directory(root: str | None) -> Iterator[Path]:
    """A private directory for the backup API's copy, locked while in use;
    abandoned ones (their lock free: the backup was killed) go first."""
    parent = Path(root).expanduser() if root else Path(tempfile.gettempdir())
    _remove_abandoned(parent)
    with _signals_held():  # a SIGTERM between mkdir and lock would orphan it
        try:
            tmp = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent))
        except OSError as exc:
            raise EngineError(
                f"cannot create a staging directory in {parent}: {exc.strerror or exc}"
            ) from exc
        lock = os.open(tmp / STAGING_LOCK, os.O_CREAT | os.O_WRONLY, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield tmp
    finally:
        with _signals_held():  # nor may one cut the removal short
            shutil.rmtree(tmp, ignore_errors=True)
            os.close(lock)  # after the directory is gone: never swept while in use


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP for a few system calls: their handlers
    (the CLI's, serve's worker's) raise, and run right after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only: nothing to hold here
        return
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _remove_abandoned(parent: Path) -> None:
    try:
        candidates = [p for p in parent.glob(f"{STAGING_PREFIX}*") if p.is_dir()]
    except OSError:
        return
    for directory in candidates:
        try:
            if directory.stat().st_uid != os.getuid():
                continue
            fd = os.open(directory / STAGING_LOCK, os.O_RDONLY)
        except FileNotFoundError:
            try:
                if time.time() - directory.stat().st_mtime > UNLOCKED_GRACE_SECONDS:
                    shutil.rmtree(directory, ignore_errors=True)
            except OSError:
                pass
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a running backup holds it
        else:
            shutil.rmtree(directory, ignore_errors=True)
        finally:
            os.close(fd)


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
