"""PostgreSQL migrations: history in ``dbfleet_migrations`` (the search
path's first schema), transactional DDL, an advisory-lock lease.

- Statements are split and classified with pglast (libpg_query, the server's
  own grammar): ``CREATE INDEX CONCURRENTLY``, ``DROP INDEX CONCURRENTLY``,
  ``REINDEX ... CONCURRENTLY``, ``ALTER TYPE ... ADD VALUE``, ``VACUUM``,
  ``CREATE/DROP DATABASE``, ``CREATE/DROP TABLESPACE`` and ``ALTER SYSTEM``
  run outside a transaction, each alone; the statements between them run in
  one transaction together with the history write. A migration without such
  statements therefore rolls back whole. ``BEGIN``/``COMMIT`` in a file are
  refused: dbfleet owns the transactions.
- A failed concurrent build leaves an ``INVALID`` index: ``leftovers`` lists
  them (the failure message and ``status`` name them).
- The lease is ``pg_try_advisory_lock`` polled on a session of its own,
  never ``pg_advisory_lock``: a waiting second run holds no transaction open,
  so the first run's ``CREATE INDEX CONCURRENTLY`` (which waits for every
  open transaction) cannot deadlock with it, and the lock ends with the
  holder's session (``kill -9`` included). The holder's name is the lease
  session's ``application_name``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import psycopg
from pglast import ast as pg_ast
from pglast import parse_sql, split
from pglast.parser import ParseError

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.sql_migrations import SessionLeasedMigrations
from dbfleet.engines.postgresql import PostgreSQLEngine
from dbfleet.errors import ConfigError, EngineError, one_line
from dbfleet.migrate.model import HISTORY_TABLE

LOCK_KEYS = (0x64626674, 0x6D696772)
"""``pg_try_advisory_lock(int4, int4)`` keys: 'dbft', 'migr'."""
APPLICATION_PREFIX = "dbfleet-migrate:"
_ALONE = (
    pg_ast.AlterEnumStmt, pg_ast.CreatedbStmt, pg_ast.DropdbStmt, pg_ast.AlterSystemStmt,
    pg_ast.CreateTableSpaceStmt, pg_ast.DropTableSpaceStmt,
)  # fmt: skip


def _classify(statement: str) -> Any:
    try:
        parsed = parse_sql(statement)
    except ParseError as exc:
        raise ConfigError(f"PostgreSQL cannot parse {statement[:60]!r}: {exc}") from None
    return parsed[0].stmt if parsed else None


class PostgreSQLMigrations(SessionLeasedMigrations):
    transactional_ddl: ClassVar[bool] = True
    dialect: ClassVar[str] = "postgres"

    def __init__(self, config: DatabaseConfig) -> None:
        super().__init__(config)
        self.engine = PostgreSQLEngine(config)

    def _open(self) -> Any:
        conn = self.engine._open()
        if conn.info.server_version >= 140000:
            # a killed dbfleet's backend stops its statement (and rolls back)
            # within seconds instead of running on while holding its locks
            conn.execute("SET client_connection_check_interval = '2s'")
        return conn

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (psycopg.Error,)

    def _table_exists(self) -> bool:
        return self._run("SELECT to_regclass(%s) IS NOT NULL", (HISTORY_TABLE,))[0][0] is True

    def _create_table(self) -> str:
        return (
            f"CREATE TABLE {HISTORY_TABLE} (version bigint PRIMARY KEY, name text NOT NULL,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL,"
            " duration_seconds double precision, applied_by text,"
            " statements_done integer NOT NULL, status text NOT NULL,"
            " statement_checksums text, error text)"
        )

    def split(self, text: str) -> list[str]:
        try:
            statements = [s.strip() for s in split(text) if s.strip()]
        except ParseError as exc:
            raise ConfigError(f"PostgreSQL cannot parse the migration: {exc}") from None
        for statement in statements:
            if isinstance(_classify(statement), pg_ast.TransactionStmt):
                raise ConfigError(
                    f"{statement!r}: remove transaction control from migrations "
                    "(dbfleet runs each in a transaction, and non-transactional statements "
                    "outside it)"
                )
        return statements

    def non_transactional(self, statement: str) -> bool:
        node = _classify(statement)
        if isinstance(node, pg_ast.IndexStmt | pg_ast.DropStmt):
            return bool(node.concurrent)
        if isinstance(node, pg_ast.ReindexStmt):
            return any(p.defname == "concurrently" for p in node.params or ())
        if isinstance(node, pg_ast.VacuumStmt):
            return bool(node.is_vacuumcmd)
        return isinstance(node, _ALONE)

    def leftovers(self) -> list[str]:
        rows = self._run(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE NOT i.indisvalid ORDER BY 1"
        )
        return [f"INVALID index {name} (a failed concurrent build: drop it)" for (name,) in rows]

    # -- lease -------------------------------------------------------------

    def lease(self, holder: str, ttl: float) -> str | None:
        if self._lease is not None:
            self._lease.execute("SELECT 1")  # the session (and its lock) is alive
            return None
        conn = self.engine._open()
        try:
            name = (APPLICATION_PREFIX + holder)[:63]
            conn.execute("SELECT set_config('application_name', %s, false)", (name,))
            got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", LOCK_KEYS).fetchone()
            if got and got[0]:
                self._lease, conn = conn, None  # type: ignore[assignment]
                return None
            return self._holder(conn) or "another session"
        except psycopg.Error as exc:
            raise self._error(exc) from None
        finally:
            if conn is not None:
                conn.close()

    def holder(self) -> str | None:
        if self._lease is not None:
            return None
        return self._holder(self.connection, free=None)

    def _holder(self, conn: psycopg.Connection[Any], free: str | None = "") -> str | None:
        row = conn.execute(
            "SELECT l.pid, a.application_name FROM pg_locks l"
            " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            LOCK_KEYS,
        ).fetchone()
        if row is None:
            return "another session (it just ended)" if free == "" else free
        pid, application = row
        if application and str(application).startswith(APPLICATION_PREFIX):
            return f"{str(application)[len(APPLICATION_PREFIX) :]} (server pid {pid})"
        return f"server pid {pid}"

    def _error(self, exc: psycopg.Error) -> Exception:
        return EngineError(f"PostgreSQL migration lease: {one_line(str(exc))}")
