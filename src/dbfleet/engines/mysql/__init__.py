"""MySQL and MariaDB: one database per inventory entry, dumped with mysqldump.

Backup
    ``dump``: ``mariadb-dump`` (or ``mysqldump``) ``--single-transaction``:
    one consistent InnoDB snapshot, writers are never blocked (tables of
    non-transactional engines such as MyISAM are read as they are at that
    moment). Routines, events and triggers are included, binary columns are
    written as hex (``--hex-blob``), the connection uses ``utf8mb4`` and
    TIMESTAMP values UTC; ``--skip-add-locks``, because MariaDB cannot
    replay ``LOCK TABLES`` dumps of tables whose defaults use a sequence.
    ``--skip-extended-insert``: one INSERT per row, so a changed row changes
    only its line and the chunks after it deduplicate (mysqldump cuts
    extended INSERTs by length: one longer row would move every later cut);
    the dump is ~15% larger before compression and the same after, and a
    restore joins the rows into statements of about 1 MiB again.
    With the binary log on, ``--master-data=2`` (``--source-data=2`` for
    MySQL 8.0.26+) has the tool write the binlog file and position of its own
    snapshot into the dump (MariaDB takes it from the consistent snapshot,
    without FLUSH TABLES WITH READ LOCK), plus the GTID position; both are
    recorded as the snapshot's consistency point, the start for
    point-in-time recovery (option ``binlog_position: false`` leaves it out,
    e.g. for a MySQL account without RELOAD).

    The fingerprint is computed from the dump itself as it streams past
    (:mod:`dbfleet.engines.mysql.dump`): rows and an order-independent digest
    per table over the literal text of each row. mysqldump cannot join a
    snapshot that dbfleet opens (there is no snapshot export as in
    PostgreSQL), and reading the tables a second time beside the dump would
    double the load on the server and need FLUSH TABLES WITH READ LOCK to
    line up two snapshots; the dump's own rows are by construction exactly
    what the backup holds. :meth:`MySQLEngine.fingerprint` of a live or
    restored database dumps it with the same tool and options (output
    discarded) and reads it with the same code, so equal data gives an equal
    fingerprint. A dump that fails (tool exit status, lost connection) or
    lacks its ``-- Dump completed`` trailer fails the backup.

    ``catalog``: a small JSON stream listing the dump's tables, sequences,
    views, routines and events and the database's character set, used by
    restores to check for conflicts up front.

    ``globals`` (with ``globals: true``, :mod:`dbfleet.engines.mysql.globals`):
    accounts, roles and grants as SQL, read with ``SHOW CREATE USER`` and
    ``SHOW GRANTS`` per account. Accounts are written as ``CREATE USER IF
    NOT EXISTS`` / ``CREATE ROLE IF NOT EXISTS``, GRANTs without their
    ``IDENTIFIED`` clause; built-in accounts (root@localhost, mariadb.sys,
    mysql.*, debian-sys-maint, anonymous) are left out. Needs SELECT on
    ``mysql.user``.

Restore (into this engine's database, created with the source's character
set if missing)
    The dump is replayed with the ``mariadb``/``mysql`` client. MySQL DDL
    is not transactional, so all-or-nothing is approximated:
    * Without ``clean``, every object the restore would create (tables,
      sequences, views, routines, events) is checked first; if any exists
      already the restore fails and nothing is changed. If the replay fails
      later, a database the restore created is dropped again, and in an
      existing database the objects it created are dropped again.
    * With ``clean``, each object *in the backup* is dropped and recreated
      (the dump's own ``DROP ... IF EXISTS``; foreign key checks are off
      while the dump replays); objects not in the backup are left alone.
      A failure part way leaves the objects restored so far replaced.
    * Routines, triggers, views and events keep their ``DEFINER`` when the
      restoring account may set one (SUPER, SET USER or ALL on ``*.*``),
      else the clause is removed and they belong to the restoring account;
      option ``no_definer`` forces either.
    * Sequence references that MariaDB qualifies with the source database
      (``DEFAULT nextval(`src`.`seq`)``) are made relative, so a copy under
      another name uses its own sequence.
    * ``include_globals`` replays the ``globals`` stream first: accounts that
      exist already keep their authentication (logged), grants are applied
      (those already in place are skipped).

Restore of tables (``tables=("orders", ...)``: table or sequence names)
    The preamble and the selected tables' sections: definition, rows and the
    table's triggers. A sequence that a selected table's default uses is
    restored along when the target lacks it. Views, routines and events are
    not restored. A foreign key to a table that is not restored is created
    anyway (checks are off). Conflict check and ``clean`` as above, for the
    selected tables only.

Values the dump tools cannot carry: FLOAT values with more than 6
significant digits (the tools write 6) and ENUM/SET members with 4-byte
characters (``SHOW CREATE TABLE`` writes them as ``?``) are restored
changed, and no fingerprint of the dump can tell the first. The backup checks
for them (one scan of each table with such columns; option ``check_lossy:
false`` skips it), warns, and records ``options.lossy_columns`` (table ->
column -> why) in the snapshot. DEFAULT values and COMMENTs with 4-byte
characters lose them the same way (not checked). Tables whose names hold a
line break are dumped and restored, but the tools write the name across
lines, so the dump's fingerprint does not see their rows and ``--table``
cannot find them: warned, recorded as ``options.unfingerprinted_tables``.

Options (``options:``): ``bin_dir`` (where the client tools live),
``connect_timeout`` (seconds, default 10), ``no_definer``,
``binlog_position``, ``check_lossy``. URL parameters: ``socket``, ``ssl_ca``, ``ssl_cert``,
``ssl_key``.

Secrets: the password reaches the tools only through a temporary option
file (mode 0600, in a private directory) passed as ``--defaults-extra-file``,
and PyMySQL in-process; never an argument, never in an error message.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, ClassVar, cast

import pymysql

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.process import dump_process, restore_process
from dbfleet.engines.base import (
    BackupMeta,
    Capabilities,
    Health,
    RestoreOptions,
    StreamSink,
    StreamSource,
    server_url,
)
from dbfleet.engines.mysql.dump import DumpScanner, ScanTap, filter_dump, quote
from dbfleet.engines.mysql.globals import read_globals, replay_globals
from dbfleet.engines.mysql.restore import (
    CATALOG_FORMAT,
    add_required_sequences,
    check_conflicts,
    create_database,
    read_catalog,
    wanted_objects,
)
from dbfleet.engines.mysql.server import (
    Location,
    ServerInfo,
    Tool,
    can_set_definer,
    connect_error,
    health_details,
    lossy_columns,
    names_with_line_breaks,
    restore_hint,
    server_info,
    with_dbname,
)
from dbfleet.errors import EngineError, UsageError
from dbfleet.secrets import secret_from

log = logging.getLogger(__name__)

OPTIONS = {"bin_dir", "connect_timeout", "no_definer", "binlog_position", "check_lossy"}
SYSTEM_DATABASES = {"mysql", "information_schema", "performance_schema", "sys"}
MAX_NAME_CHARS = 64
_READ_SIZE = 1 << 20


class MySQLEngine:
    name: ClassVar[str] = "mysql"
    capabilities: ClassVar[Capabilities] = Capabilities(
        subset_restore=True,
        globals=True,
        consistency_point=True,
        scratch_targets=True,
        server_entries=True,
        point_in_time=True,
        health_sample=True,
    )

    def __init__(self, config: DatabaseConfig) -> None:
        url = server_url(config, "mysql", OPTIONS)
        self.config = config
        self.location = Location.parse(url)
        self._tools: dict[str, Tool] = {}

    # -- locations -------------------------------------------------------

    def target(self, name: str) -> DatabaseConfig:
        assert self.config.url is not None
        return self.config.with_changes(url=with_dbname(self.config.url, name))

    def scratch(self, label: str) -> DatabaseConfig:
        return self.target(f"{self.location.dbname}_dbfleet_{label}"[:MAX_NAME_CHARS])

    def list_databases(self) -> list[str]:
        """User databases on the server (system schemas excluded)."""
        with self._connect(database=False) as conn, conn.cursor() as cur:
            cur.execute("SHOW DATABASES")
            names = [str(row[0]) for row in cur.fetchall()]
        return sorted(n for n in names if n.lower() not in SYSTEM_DATABASES)

    def drop(self) -> None:
        dbname = self.location.dbname
        if dbname.lower() in SYSTEM_DATABASES:
            raise UsageError(f"refusing to drop the system database {dbname!r}")
        with self._connect(database=False) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {quote(dbname)}")

    # -- connections -----------------------------------------------------

    def _password(self) -> str | None:
        return secret_from(self.config.password_env, self.config.password_file)

    def _timeout(self) -> int:
        return int(self.config.options.get("connect_timeout", 10))

    @contextmanager
    def _connect(self, *, database: bool = True) -> Iterator[pymysql.connections.Connection[Any]]:
        """An autocommit utf8mb4 connection (to the database unless
        ``database=False``); ``EngineError`` saying what to check, also for
        statements of the block that fail."""
        loc, password = self.location, self._password()
        try:
            conn = pymysql.connect(**loc.pymysql_args(
                password=password, database=loc.dbname if database else None,
                timeout=self._timeout(),
            ))  # fmt: skip
        except pymysql.Error as exc:
            raise connect_error(exc, self.config, loc, password, database) from None
        try:
            yield conn
        except pymysql.Error as exc:
            where = loc.describe(None if database else "")
            raise EngineError(f"MySQL {where}: {exc.args[-1]}") from None
        finally:
            conn.close()

    # -- tools -----------------------------------------------------------

    def _tool(self, kind: str) -> Tool:
        if kind not in self._tools:
            self._tools[kind] = Tool.find(kind, self.config.options.get("bin_dir"))
        return self._tools[kind]

    @contextmanager
    def _option_file(self) -> Iterator[tuple[str, dict[str, str | None]]]:
        """A private ``[client]`` option file with host, user and password,
        and the environment for the tools (without the password variable)."""
        text = self.location.option_file(self._password(), self._timeout())
        with tempfile.TemporaryDirectory(prefix="dbfleet-mysql-") as directory:
            path = os.path.join(directory, "client.cnf")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            hidden: dict[str, str | None] = {
                name: None for name in ("MYSQL_PWD", self.config.password_env) if name
            }
            yield path, hidden

    # -- health ----------------------------------------------------------

    def health(self) -> Health:
        try:
            with self._connect() as conn:
                info = server_info(conn, self.location.dbname)
                details = health_details(conn, info)
            return Health(ok=True, version=info.version, size_bytes=info.size, details=details)
        except (EngineError, UsageError) as exc:
            return Health(ok=False, error=str(exc))
        except pymysql.Error as exc:
            return Health(ok=False, error=f"health query failed: {exc.args[-1]}")

    # -- backup ----------------------------------------------------------

    def backup(self, sink: StreamSink) -> BackupMeta:
        loc = self.location
        with self._connect() as conn:
            info = server_info(conn, loc.dbname)
            globals_sql = read_globals(conn, info) if self.config.globals else None
            caveats = self._caveats(conn)
        tool = self._tool("dump")
        binlog = info.log_bin and self.config.options.get("binlog_position", True) is not False
        argv = tool.dump_args(info, binlog=binlog)
        scanner = DumpScanner()
        with self._option_file() as (optfile, env):
            if globals_sql is not None:
                sink.write_stream("globals", io.BytesIO(globals_sql.encode()), "application/sql")
            full = [tool.path, f"--defaults-extra-file={optfile}", *argv, "--", loc.dbname]
            try:
                with dump_process(full, env) as stdout:
                    tap = ScanTap(cast(io.BufferedIOBase, stdout), scanner)
                    sink.write_stream("dump", cast(BinaryIO, tap), "application/sql")
            except EngineError as exc:
                if "insufficient privileges to SHOW CREATE" in exc.message:
                    exc.hint = exc.hint or (
                        "dumping routines and events of other definers needs SELECT on "
                        "mysql.proc (MariaDB) or SHOW_ROUTINE (MySQL)"
                    )
                raise
        scanner.finish()
        if not scanner.completed:
            raise EngineError(f"{tool.name} output ended before its '-- Dump completed' trailer")
        catalog = {"format": CATALOG_FORMAT, "database": loc.dbname, "charset": info.charset,
                   "collation": info.collation, **scanner.catalog,
                   "requires": scanner.requires}  # fmt: skip
        sink.write_stream("catalog", io.BytesIO(json.dumps(catalog).encode()), "application/json")
        point: dict[str, Any] = {"log_bin": info.log_bin, "server_id": info.server_id}
        if scanner.binlog:
            point.update(
                binlog_file=scanner.binlog["file"], binlog_position=scanner.binlog["position"]
            )
        if scanner.gtid is not None:
            point["gtid"] = scanner.gtid
        return BackupMeta(
            server_version=info.version,
            tool=tool.name,
            tool_version=tool.version_text,
            fingerprint=scanner.fingerprint(),
            consistency_point=point,
            options={
                "database": loc.dbname,
                "flavor": info.flavor,
                "globals": self.config.globals,
                "single_transaction": True,
                "binlog_position": bool(binlog),
                "database_size_bytes": info.size,
                "dump_bytes": scanner.size,
                **caveats,
            },
        )

    def _caveats(self, conn: pymysql.connections.Connection[Any]) -> dict[str, Any]:
        """What the dump will not carry as it is (see the module docstring):
        logged as warnings, and returned for the snapshot's options."""
        dbname = self.location.dbname
        found: dict[str, Any] = {}
        if self.config.options.get("check_lossy", True) is not False:
            try:
                if lossy := lossy_columns(conn, dbname):
                    found["lossy_columns"] = lossy
            except pymysql.Error as exc:  # e.g. a server without CAST(... AS FLOAT)
                log.warning("%s: columns not checked for loss: %s", dbname, exc.args[-1])
        for table, columns in found.get("lossy_columns", {}).items():
            for column, why in columns.items():
                log.warning("%s: column %s of table %s holds %s: they will be restored changed",
                            dbname, column, table, why)  # fmt: skip
        if unreadable := names_with_line_breaks(conn, dbname):
            found["unfingerprinted_tables"] = unreadable
            log.warning("%s: table(s) %s: a name with a line break is not fingerprinted (and "
                        "cannot be restored alone); rename it", dbname,
                        ", ".join(repr(n) for n in unreadable))  # fmt: skip
        return found

    # -- restore ---------------------------------------------------------

    def restore(self, source: StreamSource, options: RestoreOptions) -> None:
        names = source.stream_names()
        if "dump" not in names:
            raise EngineError("the snapshot has no 'dump' stream: not a MySQL backup")
        catalog = read_catalog(source) if "catalog" in names else None
        wanted = wanted_objects(catalog, options.tables)
        dbname = self.location.dbname
        if dbname.lower() in SYSTEM_DATABASES:
            raise UsageError(f"refusing to restore into the system database {dbname!r}")
        with self._connect(database=False) as conn:
            created = create_database(conn, dbname, catalog)
            if not created and not options.clean:
                check_conflicts(conn, dbname, wanted)
            if options.tables and catalog is not None and wanted is not None:
                add_required_sequences(conn, dbname, catalog, wanted, created)
            strip = self.config.options.get("no_definer")
            if strip is None:
                strip = not can_set_definer(conn)
        try:
            if options.include_globals:
                if "globals" in names:
                    self._restore_globals(source)
                else:
                    log.warning("the snapshot has no globals stream (backed up without globals)")
            tables = None
            if options.tables and wanted is not None:
                tables = frozenset(wanted["tables"] + wanted["sequences"])
            chunks = filter_dump(source.open_stream("dump"), tables=tables,
                                 source_db=catalog.get("database") if catalog else None,
                                 strip_definers=bool(strip))  # fmt: skip
            with self._option_file() as (optfile, env):
                argv = [self._tool("client").path, f"--defaults-extra-file={optfile}",
                        *Tool.CLIENT_ARGS, f"--database={dbname}"]  # fmt: skip
                try:
                    restore_process(argv, chunks, env)
                except EngineError as exc:
                    exc.hint = exc.hint or restore_hint(exc.message)
                    raise
        except BaseException:
            self._undo(created, options.clean, wanted)
            raise

    def _undo(self, created: bool, clean: bool, wanted: dict[str, list[str]] | None) -> None:
        """After a failed replay: drop what the restore created."""
        try:
            if created:
                self.drop()
            elif not clean and wanted is not None:
                self._drop_objects(wanted)
        except Exception as exc:  # keep the restore's own error
            log.warning("could not undo the failed restore into %s: %s", self.location, exc)

    def _drop_objects(self, wanted: dict[str, list[str]]) -> None:
        statements = {
            "views": "VIEW", "tables": "TABLE", "sequences": "SEQUENCE",
            "functions": "FUNCTION", "procedures": "PROCEDURE", "events": "EVENT",
        }  # fmt: skip
        with self._connect() as conn, conn.cursor() as cur:
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            for kind, keyword in statements.items():
                for name in wanted.get(kind, []):
                    cur.execute(f"DROP {keyword} IF EXISTS {quote(name)}")

    def _restore_globals(self, source: StreamSource) -> None:
        script = b"".join(source.open_stream("globals")).decode()
        with self._connect(database=False) as conn, conn.cursor() as cur:
            replay_globals(cur, script)

    # -- fingerprint -----------------------------------------------------

    def fingerprint(self, tables: tuple[str, ...] = ()) -> dict[str, Any]:
        with self._connect() as conn:
            info = server_info(conn, self.location.dbname)
        tool = self._tool("dump")
        scanner = DumpScanner()
        with self._option_file() as (optfile, env):
            argv = [tool.path, f"--defaults-extra-file={optfile}",
                    *tool.dump_args(info, binlog=False, programs=False),
                    "--", self.location.dbname, *tables]  # fmt: skip
            with dump_process(argv, env) as stdout:
                while data := stdout.read(_READ_SIZE):
                    scanner.feed(data)
        scanner.finish()
        if not scanner.completed:
            raise EngineError(f"{tool.name} output ended before its '-- Dump completed' trailer")
        result = scanner.fingerprint()
        if tables:
            result["sequences"] = {k: v for k, v in result["sequences"].items() if k in tables}
        return result


__all__ = ["MySQLEngine", "ServerInfo"]
