"""PostgreSQL: one database per inventory entry, dumped with pg_dump.

Backup
    ``dump``: ``pg_dump --format=custom --compress=0`` (compression would
    defeat deduplication; the repository compresses chunks itself), taken in a
    snapshot exported by a ``REPEATABLE READ READ ONLY`` transaction that stays
    open until pg_dump has finished. The fingerprint (see
    :mod:`dbfleet.engines.postgresql.fingerprint`) is computed in that same
    transaction, in a thread, while pg_dump runs: it describes exactly the rows
    in the dump. The snapshot's WAL position is recorded as the consistency
    point (``pg_last_wal_replay_lsn()`` on a standby).
    ``globals`` (with ``globals: true``): ``pg_dumpall --globals-only``, roles,
    memberships and tablespaces; ``--no-role-passwords`` when the backup role
    is not a superuser (it cannot read password hashes).

Restore (into this engine's database, created from ``template0`` if missing;
a database created by a restore that fails is dropped again)
    * ``pg_restore --single-transaction --exit-on-error``: all or nothing.
    * Without ``clean``, objects are created next to what the database already
      holds; if any object of the backup already exists the restore fails and
      nothing is changed.
    * With ``clean``, every object *in the backup* is dropped (``IF EXISTS``,
      never ``CASCADE``) and recreated; objects that are not in the backup are
      left alone. If one of them depends on a dropped object (a view on a
      restored table, a table in a restored schema) the drop fails and,
      again, nothing is changed. dbfleet orders the entries so that indexes
      of partitions are dropped after their parent's index (plain
      ``pg_restore --clean`` fails on partitioned tables with keys).
    * Ownership is restored when the restoring role is a superuser, else
      ``--no-owner`` (objects belong to the restoring role); option
      ``no_owner`` overrides. ``no_privileges: true`` skips GRANTs.
    * ``include_globals`` replays the ``globals`` stream with psql first.
      Roles and tablespaces that already exist are not created again (each is
      logged) but their ``ALTER ROLE`` attributes are applied; any other error
      fails the restore. Needs a superuser (or CREATEROLE).

Restore of tables (``tables=("schema.table", ...)``, via ``pg_restore -L``)
    Restores each table's definition and rows with what belongs to it: its
    partitions (or inheritance children), column defaults, owned and identity
    sequences with their values, constraints, indexes, triggers, row-level
    security and policies, rules, statistics objects, comments and grants.
    * Into an empty (or newly created) database the objects the tables need
      are created too: schemas, types, functions, extensions, other sequences
      (without values), a partition's parent table (without rows). Foreign
      keys to tables that are not restored are left out.
    * Into a database with objects, those prerequisites must exist already and
      are not touched. Foreign keys are restored, also those of other tables
      that reference the restored ones (with ``clean`` they are dropped and
      re-added, so the other tables' rows are checked against the restored
      ones). A partition restored alone is attached to its existing parent,
      which recreates its copies of the parent's indexes.
    * With ``clean`` each selected object is dropped first; a view or
      materialized view on the table makes that fail (nothing is changed):
      restore into a new database and copy the rows instead.

Options (``options:`` in the inventory): ``maintenance_db`` (default
``postgres``), ``bin_dir`` (where pg_dump etc. live), ``no_owner``,
``no_privileges``, ``connect_timeout`` (seconds, default 10).

Secrets: the password (``password_env``/``password_file``) reaches the tools
only through a private temporary ``PGPASSFILE`` (mode 0600) and psycopg
in-process, never an argument; error messages never contain it.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar, cast

import psycopg
from psycopg import sql

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.process import (
    close_iterator,
    dump_process,
    restore_process,
)
from dbfleet.engines.base import (
    BackupMeta,
    Capabilities,
    Health,
    RestoreOptions,
    StreamSink,
    StreamSource,
    server_url,
)
from dbfleet.engines.postgresql.archive import (
    ArchiveFormatError,
    TocTap,
    drop_safe_order,
    read_toc,
    select_tables,
)
from dbfleet.engines.postgresql.client import connect_error, find_pg_tool, tool_env, tool_version
from dbfleet.engines.postgresql.fingerprint import (
    FingerprintThread,
    apply_session_settings,
    compute,
    read_sequences,
)
from dbfleet.engines.postgresql.location import Location, truncate_name, with_dbname
from dbfleet.engines.postgresql.restore import is_empty, table_restore_hint
from dbfleet.errors import EngineError, UsageError
from dbfleet.secrets import secret_from

log = logging.getLogger(__name__)

OPTIONS = {"maintenance_db", "bin_dir", "no_owner", "no_privileges", "connect_timeout"}
SYSTEM_DATABASES = {"postgres", "template0", "template1"}


@dataclass(frozen=True)
class _ServerInfo:
    version: str
    major: int
    superuser: bool
    in_recovery: bool


class PostgreSQLEngine:
    name: ClassVar[str] = "postgresql"
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
        url = server_url(config, "postgresql", OPTIONS)
        self.config = config
        self.location = Location.parse(url)
        self._tool_versions: dict[str, str] = {}

    # -- locations -------------------------------------------------------

    def target(self, name: str) -> DatabaseConfig:
        assert self.config.url is not None
        return self.config.with_changes(url=with_dbname(self.config.url, name))

    def scratch(self, label: str) -> DatabaseConfig:
        return self.target(truncate_name(f"{self.location.dbname}_dbfleet_{label}"))

    def list_databases(self) -> list[str]:
        """Databases that accept connections, except the system ones and the
        maintenance database (an ``all_databases`` entry names that one)."""
        with self._connect_maintenance() as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
            ).fetchall()
        skip = SYSTEM_DATABASES | {self._maintenance_db()}
        return sorted(name for (name,) in rows if name not in skip)

    def drop(self) -> None:
        dbname = self.location.dbname
        if dbname in SYSTEM_DATABASES or dbname == self._maintenance_db():
            raise UsageError(f"refusing to drop the system database {dbname!r}")
        with self._connect_maintenance() as conn:
            force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)) + force
            )

    # -- connections -----------------------------------------------------

    def _password(self) -> str | None:
        return secret_from(self.config.password_env, self.config.password_file)

    def _maintenance_db(self) -> str:
        return str(self.config.options.get("maintenance_db", "postgres"))

    def _open(self, dbname: str | None = None) -> psycopg.Connection[Any]:
        """An autocommit connection; ``EngineError`` saying what to check."""
        loc, password = self.location, self._password()
        kwargs: dict[str, Any] = dict(loc.params)
        kwargs.update(
            host=loc.host, port=loc.port, user=loc.user, dbname=dbname or loc.dbname,
            password=password, application_name="dbfleet",
            connect_timeout=int(self.config.options.get("connect_timeout", 10)),
        )  # fmt: skip
        try:
            return psycopg.connect(
                autocommit=True, **{k: v for k, v in kwargs.items() if v is not None}
            )
        except psycopg.Error as exc:
            raise connect_error(exc, dbname or loc.dbname, password, self.config, loc) from None

    @contextmanager
    def _connect(self, dbname: str | None = None) -> Iterator[psycopg.Connection[Any]]:
        with self._open(dbname) as conn:
            yield conn

    @contextmanager
    def _connect_maintenance(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection to the maintenance database (``template1`` if there is
        no ``postgres`` database), for CREATE and DROP DATABASE."""
        try:
            conn = self._open(self._maintenance_db())
        except EngineError as exc:
            if "maintenance_db" in self.config.options or "does not exist" not in exc.message:
                raise
            conn = self._open("template1")
        with conn:
            yield conn

    def _server_info(self, conn: psycopg.Connection[Any]) -> _ServerInfo:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
            " rolsuper, pg_is_in_recovery() FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row is not None
        return _ServerInfo(row[0], row[1] // 10000, bool(row[2]), bool(row[3]))

    def _tool(self, name: str, min_major: int | None = None) -> str:
        return find_pg_tool(name, min_major, self.config, self._tool_versions)

    # -- health ----------------------------------------------------------

    def health(self) -> Health:
        try:
            with self._connect() as conn:
                info = self._server_info(conn)
                row = conn.execute(
                    "SELECT pg_database_size(current_database()),"
                    " (SELECT count(*) FROM pg_stat_activity"
                    "  WHERE backend_type = 'client backend'),"
                    " current_setting('max_connections')::int,"
                    " (SELECT sum(blks_hit)::float8 / nullif(sum(blks_hit) + sum(blks_read), 0)"
                    "  FROM pg_stat_database WHERE datname = current_database())"
                ).fetchone()
                assert row is not None
                details: dict[str, Any] = {
                    "connections": row[1],
                    "max_connections": row[2],
                    "cache_hit_ratio": None if row[3] is None else round(row[3], 4),
                    "in_recovery": info.in_recovery,
                    "superuser": info.superuser,
                }
                if info.in_recovery:
                    lag = conn.execute(
                        "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp()),"
                        " pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())"
                    ).fetchone()
                    assert lag is not None
                    details["replay_lag_seconds"] = None if lag[0] is None else float(lag[0])
                    details["replay_lag_bytes"] = None if lag[1] is None else int(lag[1])
                else:
                    replicas = conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()
                    details["replicas"] = replicas[0] if replicas else 0
                return Health(ok=True, version=info.version, size_bytes=row[0], details=details)
        except (EngineError, UsageError) as exc:
            return Health(ok=False, error=str(exc))
        except psycopg.Error as exc:
            return Health(ok=False, error=f"health query failed: {str(exc).strip()}")

    # -- backup ----------------------------------------------------------

    def backup(self, sink: StreamSink) -> BackupMeta:
        loc = self.location
        with self._connect() as conn, tool_env(self.config, self.location, self._password()) as env:
            info = self._server_info(conn)
            pg_dump = self._tool("pg_dump", info.major)
            apply_session_settings(conn)
            size_row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = conn.execute(
                "SELECT pg_export_snapshot(), CASE WHEN pg_is_in_recovery()"
                " THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text"
            ).fetchone()
            assert row is not None and size_row is not None
            snapshot_id, lsn = row
            fingerprint = FingerprintThread(conn)
            try:
                no_role_passwords = False
                if self.config.globals:
                    no_role_passwords = not info.superuser
                    argv = [self._tool("pg_dumpall", info.major), *loc.tool_args(), "-l",
                            loc.dbname, "--globals-only", "--no-password"]  # fmt: skip
                    argv += ["--no-role-passwords"] if no_role_passwords else []
                    with dump_process(argv, env) as stdout:
                        sink.write_stream("globals", cast(BinaryIO, stdout), "application/sql")
                argv = [pg_dump, *loc.tool_args(), "-d", loc.dbname_arg(), "--no-password",
                        "--format=custom", "--compress=0", f"--snapshot={snapshot_id}"]  # fmt: skip
                with dump_process(argv, env) as stdout:
                    tap = TocTap(cast(io.BufferedIOBase, stdout))
                    sink.write_stream("dump", cast(BinaryIO, tap), "application/x-pg-dump-custom")
            except BaseException:
                fingerprint.stop()
                raise
            result = fingerprint.result()
            if tap.toc is not None:
                result["sequences"] = tap.toc.sequences()
            else:  # not transactional: may differ from the dump under concurrent use
                log.warning("cannot read the archive's TOC (%s); sequences read live", tap.error)
                result["sequences"] = read_sequences(conn)
            conn.execute("COMMIT")
        return BackupMeta(
            server_version=info.version,
            tool="pg_dump",
            tool_version=tool_version(pg_dump, self._tool_versions),
            fingerprint=result,
            consistency_point={"lsn": lsn, "snapshot": snapshot_id, "standby": info.in_recovery},
            options={
                "format": "custom",
                "compress": 0,
                "globals": self.config.globals,
                "no_role_passwords": no_role_passwords,
                "database": loc.dbname,
                "database_size_bytes": size_row[0],
            },
        )

    # -- restore ---------------------------------------------------------

    def restore(self, source: StreamSource, options: RestoreOptions) -> None:
        names = source.stream_names()
        if "dump" not in names:
            raise EngineError("the snapshot has no 'dump' stream: not a PostgreSQL backup")
        created = self._create_database()
        try:
            self._restore(source, options, created, names)
        except BaseException:
            if created:
                try:
                    self.drop()
                except Exception as exc:  # keep the restore's own error
                    log.warning("could not drop %s after failed restore: %s", self.location, exc)
            raise

    def _restore(
        self, source: StreamSource, options: RestoreOptions, created: bool, names: list[str]
    ) -> None:
        loc = self.location
        with self._connect() as conn:
            info = self._server_info(conn)
            empty = created or is_empty(conn)
        if options.include_globals:
            if "globals" in names:
                self._restore_globals(source)
            else:
                log.warning("the snapshot has no globals stream (backed up without globals)")
        clean = options.clean and not created
        toc = None
        if options.tables or clean:
            chunks = source.open_stream("dump")
            try:
                toc = read_toc(chunks)
            except ArchiveFormatError as exc:
                if options.tables:
                    raise EngineError(f"cannot select tables in this dump: {exc}") from None
                log.warning("cannot read the dump's TOC (%s): plain pg_restore --clean", exc)
            finally:
                close_iterator(chunks)
        no_owner = self.config.options.get("no_owner")
        argv = [self._tool("pg_restore"), *loc.tool_args(), "-d", loc.dbname_arg(),
                "--no-password", "--exit-on-error", "--single-transaction"]  # fmt: skip
        argv += ["--clean", "--if-exists"] if clean else []
        argv += ["--no-owner"] if (not info.superuser if no_owner is None else no_owner) else []
        argv += ["--no-privileges"] if self.config.options.get("no_privileges") else []
        with (
            tool_env(self.config, self.location, self._password()) as env,
            tempfile.TemporaryDirectory(prefix="dbfleet-pg-") as tmp,
        ):
            if toc is not None:
                entries = (
                    select_tables(toc, options.tables, with_prerequisites=empty)
                    if options.tables
                    else list(toc.entries)
                )
                listfile = os.path.join(tmp, "restore.list")
                with open(listfile, "w") as f:
                    f.writelines(f"{e.dump_id};\n" for e in drop_safe_order(entries))
                argv += ["-L", listfile]
            try:
                restore_process(argv, source.open_stream("dump"), env)
            except EngineError as exc:
                exc.hint = exc.hint or table_restore_hint(exc.message, options, clean)
                raise

    def _create_database(self) -> bool:
        dbname = self.location.dbname
        with self._connect_maintenance() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                return False
            try:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(dbname))
                )
            except psycopg.Error as exc:
                raise EngineError(
                    f"cannot create database {dbname}: {str(exc).strip()}",
                    hint="the role needs CREATEDB, or create the database first",
                ) from None
        return True

    def _restore_globals(self, source: StreamSource) -> None:
        script = b"".join(source.open_stream("globals")).decode()
        with self._connect_maintenance() as conn:
            roles = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles")}
            spaces = {s for (s,) in conn.execute("SELECT spcname FROM pg_tablespace")}
        kept: list[str] = []
        for line in script.splitlines():
            match = re.match(r'CREATE (ROLE|TABLESPACE) ("(?:[^"]|"")+"|[^\s;]+)[\s;]', line)
            if match:
                kind, ident = match.group(1), match.group(2)
                name = ident[1:-1].replace('""', '"') if ident.startswith('"') else ident
                if name in (roles if kind == "ROLE" else spaces):
                    log.info("globals: %s %s already exists, not created", kind.lower(), name)
                    line = f"-- dbfleet: {kind.lower()} {ident} already exists"
            kept.append(line)
        argv = [self._tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password",
                *self.location.tool_args(), "-d", self.location.dbname_arg(self._maintenance_db()),
                "-f", "-"]  # fmt: skip
        with tool_env(self.config, self.location, self._password()) as env:
            restore_process(argv, [("\n".join(kept) + "\n").encode()], env)

    # -- fingerprint -----------------------------------------------------

    def fingerprint(self, tables: tuple[str, ...] = ()) -> dict[str, Any]:
        with self._connect() as conn:
            apply_session_settings(conn)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                return compute(conn, tables)
            except psycopg.Error as exc:
                raise EngineError(f"fingerprint failed: {str(exc).strip()}") from None
            finally:
                conn.execute("ROLLBACK")
