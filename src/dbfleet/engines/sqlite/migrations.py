"""SQLite migrations: history in ``dbfleet_migrations`` inside the database
file, transactional DDL, a lease row in a sidecar file.

- Every statement but ``VACUUM`` runs inside one transaction with the
  history write: a failure rolls the migration back whole.
- The lease is a row (holder, heartbeat, expiry) in
  ``<database file>.dbfleet-lease``, a small SQLite file next to the
  database. Not in the database itself: SQLite has one writer, and a long
  migration transaction would keep the heartbeat from renewing a lease kept
  there. A holder killed with ``kill -9`` stops renewing; its lease expires
  after its TTL and the next run takes it. No manual unlock.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.sql_migrations import SqlMigrations
from dbfleet.errors import EngineError, UsageError
from dbfleet.migrate.model import HISTORY_TABLE, LEASE_NAME, Step


class SQLiteMigrations(SqlMigrations):
    transactional_ddl: ClassVar[bool] = True
    dialect: ClassVar[str] = "sqlite"
    param: ClassVar[str] = "?"

    def __init__(self, config: DatabaseConfig) -> None:
        super().__init__(config)
        if config.path is None:
            raise UsageError("sqlite database needs a 'path'")
        self.path = Path(config.path).expanduser()
        self.lease_path = self.path.with_name(self.path.name + ".dbfleet-lease")

    def _open(self) -> Any:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=30, check_same_thread=False
            )
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise EngineError(f"cannot open SQLite database {self.path}: {exc}") from None
        return conn

    def _errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def history(self) -> list[Any]:
        if not self.path.exists():
            return []  # reading must not create the file
        return super().history()

    def trial(self, steps: list[Step]) -> list[tuple[int, int]]:
        if self.path.exists():
            return super().trial(steps)
        # a dry run must not create the file: an empty in-memory database is the same start
        self.close()
        self._connection = sqlite3.connect(":memory:", isolation_level=None)
        try:
            return super().trial(steps)
        finally:
            self.close()

    def _table_exists(self) -> bool:
        return bool(
            self._run(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (HISTORY_TABLE,)
            )
        )

    def _create_table(self) -> str:
        return (
            f"CREATE TABLE {HISTORY_TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " checksum TEXT NOT NULL, applied_at TEXT NOT NULL, duration_seconds REAL,"
            " applied_by TEXT, statements_done INTEGER NOT NULL, status TEXT NOT NULL,"
            " statement_checksums TEXT, error TEXT)"
        )

    def _time_value(self, when: datetime) -> Any:
        return when.isoformat(timespec="seconds")

    # -- lease ---------------------------------------------------------------

    def _lease_db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.lease_path, isolation_level=None, timeout=10)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL,"
            " heartbeat REAL NOT NULL, expires REAL NOT NULL)"
        )
        return conn

    def lease(self, holder: str, ttl: float) -> str | None:
        try:
            conn = self._lease_db()
        except sqlite3.Error as exc:
            raise EngineError(f"cannot open the lease file {self.lease_path}: {exc}") from None
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT holder, expires FROM lease WHERE name = ?", (LEASE_NAME,)
            ).fetchone()
            now = time.time()
            if row is not None and row[0] != holder and row[1] > now:
                conn.execute("ROLLBACK")
                return f"{row[0]} (lease expires in {row[1] - now:.0f}s unless renewed)"
            conn.execute(
                "INSERT OR REPLACE INTO lease VALUES (?, ?, ?, ?)",
                (LEASE_NAME, holder, now, now + ttl),
            )
            conn.execute("COMMIT")
            return None
        except sqlite3.Error as exc:
            raise EngineError(f"SQLite migration lease {self.lease_path}: {exc}") from None
        finally:
            conn.close()

    def holder(self) -> str | None:
        if not self.lease_path.exists():
            return None
        conn = self._lease_db()
        try:
            row = conn.execute(
                "SELECT holder, expires FROM lease WHERE name = ?", (LEASE_NAME,)
            ).fetchone()
        finally:
            conn.close()
        now = time.time()
        if row is None or row[1] <= now:
            return None
        return f"{row[0]} (lease expires in {row[1] - now:.0f}s unless renewed)"

    def release(self, holder: str) -> None:
        if not self.lease_path.exists():
            return
        conn = self._lease_db()
        try:
            conn.execute("DELETE FROM lease WHERE name = ? AND holder = ?", (LEASE_NAME, holder))
        finally:
            conn.close()
