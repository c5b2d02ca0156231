"""MySQL/MariaDB migrations: history in ``dbfleet_migrations`` (InnoDB),
no transactional DDL, a ``GET_LOCK`` lease.

- DDL commits implicitly, so every statement runs alone and the history row
  is updated after each one (``statements_done``, and the SHA-256 of each
  statement that ran). A failure leaves status ``failed`` naming the
  statement; the next ``up`` resumes after the statements that ran if they
  are unchanged in the file (otherwise that is drift and ``up`` refuses).
- Statements are split with sqlglot's MySQL tokenizer (strings, comments and
  backquotes respected). ``DELIMITER`` blocks (procedure bodies with inner
  semicolons) are not supported yet.
- The lease is ``GET_LOCK('dbfleet_migrate:<database>', 0)`` polled on a
  session of its own: it never blocks and it ends with that session. The
  holder's name is kept in ``dbfleet_migrations_lease`` (for messages only;
  the lock is the server's).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pymysql

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.sql_migrations import SessionLeasedMigrations
from dbfleet.engines.mysql import MySQLEngine
from dbfleet.engines.mysql.server import connect_error
from dbfleet.errors import EngineError, one_line
from dbfleet.migrate.model import HISTORY_TABLE, LEASE_NAME

LEASE_TABLE = "dbfleet_migrations_lease"


class MySQLMigrations(SessionLeasedMigrations):
    transactional_ddl: ClassVar[bool] = False
    dialect: ClassVar[str] = "mysql"

    def __init__(self, config: DatabaseConfig) -> None:
        super().__init__(config)
        self.engine = MySQLEngine(config)
        self._lock_name = f"{LEASE_NAME}:{self.engine.location.dbname}"[:64]

    def _open(self) -> Any:
        loc, password = self.engine.location, self.engine._password()
        try:
            return pymysql.connect(
                **loc.pymysql_args(
                    password=password, database=loc.dbname, timeout=self.engine._timeout()
                )
            )
        except pymysql.Error as exc:
            raise connect_error(exc, self.config, loc, password, True) from None

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (pymysql.Error,)

    def _table_exists(self, table: str = HISTORY_TABLE) -> bool:
        return bool(
            self._run(
                "SELECT 1 FROM information_schema.tables"
                " WHERE table_schema = DATABASE() AND table_name = %s",
                (table,),
            )
        )

    def _create_table(self) -> str:
        return (
            f"CREATE TABLE {HISTORY_TABLE} (version BIGINT PRIMARY KEY,"
            " name VARCHAR(255) NOT NULL, checksum CHAR(64) NOT NULL,"
            " applied_at DATETIME(6) NOT NULL, duration_seconds DOUBLE,"
            " applied_by VARCHAR(255), statements_done INT NOT NULL,"
            " status VARCHAR(16) NOT NULL, statement_checksums LONGTEXT, error TEXT)"
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )

    def _time_value(self, when: Any) -> Any:
        return when.replace(tzinfo=None)  # DATETIME holds UTC without a zone

    # -- lease ---------------------------------------------------------------

    def lease(self, holder: str, ttl: float) -> str | None:
        if self._lease is not None:
            self._lease.ping(reconnect=False)  # the session (and its lock) is alive
            return None
        conn = self._open()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT GET_LOCK(%s, 0)", (self._lock_name,))
                row = cur.fetchone()
                if row and row[0] == 1:
                    self._note_holder(cur, holder)
                    self._lease, conn = conn, None
                    return None
                return self._holder(cur) or "another session"
        except pymysql.Error as exc:
            raise EngineError(f"MySQL migration lease: {one_line(str(exc.args[-1]))}") from None
        finally:
            if conn is not None:
                conn.close()

    def _note_holder(self, cur: Any, holder: str) -> None:
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (name VARCHAR(64) PRIMARY KEY,"
            " holder VARCHAR(255) NOT NULL, connection_id BIGINT NOT NULL) ENGINE=InnoDB"
        )
        cur.execute(
            f"REPLACE INTO {LEASE_TABLE} VALUES (%s, %s, CONNECTION_ID())",
            (self._lock_name, holder[:255]),
        )

    def holder(self) -> str | None:
        if self._lease is not None:
            return None
        with self.connection.cursor() as cur:
            return self._holder(cur, free=None)

    def _holder(self, cur: Any, free: str | None = "") -> str | None:
        cur.execute("SELECT IS_USED_LOCK(%s)", (self._lock_name,))
        row = cur.fetchone()
        if not row or row[0] is None:
            return "another session (it just ended)" if free == "" else free
        connection_id = int(row[0])
        name = None
        if self._table_exists(LEASE_TABLE):
            cur.execute(
                f"SELECT holder FROM {LEASE_TABLE} WHERE name = %s AND connection_id = %s",
                (self._lock_name, connection_id),
            )
            found = cur.fetchone()
            name = found[0] if found else None
        return f"{name} (connection {connection_id})" if name else f"connection {connection_id}"
