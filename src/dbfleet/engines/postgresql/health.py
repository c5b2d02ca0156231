"""PostgreSQL health sample: what postgres_exporter reads, in one query
round per view, on the entry's own database.

Readings: client backends (``pg_stat_activity``) against ``max_connections``
minus the slots reserved for superusers (and ``reserved_connections`` on 16+);
``pg_stat_database`` block hits/reads and deadlocks of this database; lock
waits (``pg_locks`` not granted); the longest open transaction (other
backends' ``xact_start``); replay lag on a standby (0 when everything
received is replayed, so an idle primary does not look like lag);
``pg_database_size``; ``pg_stat_archiver`` with the pending segments (the
``.ready`` files of ``archive_status``, read from the data directory when
this host can, else through ``pg_ls_archive_statusdir()``, else ``None``).
Slow queries: ``None`` (PostgreSQL keeps no such counter).
"""

from __future__ import annotations

import math
import os
from typing import Any

import psycopg

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.health import number, take_sample, with_options
from dbfleet.engines.base import HealthSample
from dbfleet.engines.postgresql import PostgreSQLEngine

_MAIN = """
SELECT current_setting('server_version'),
       pg_is_in_recovery(),
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
       current_setting('max_connections')::int
         - current_setting('superuser_reserved_connections')::int
         - coalesce((SELECT setting::int FROM pg_settings WHERE name = 'reserved_connections'), 0),
       d.blks_hit, d.blks_read, d.deadlocks, d.xact_commit, d.xact_rollback, d.temp_bytes,
       (SELECT count(*) FROM pg_locks WHERE NOT granted),
       (SELECT extract(epoch FROM max(now() - xact_start))::float8 FROM pg_stat_activity
         WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
           AND backend_type = 'client backend'),
       pg_database_size(current_database()),
       current_setting('archive_mode')
  FROM pg_stat_database d WHERE d.datname = current_database()
"""
_REPLICA = """
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8
"""
_ARCHIVER = """
SELECT archived_count, failed_count, last_archived_time, last_failed_time, last_archived_wal
  FROM pg_stat_archiver
"""


class PostgreSQLHealthSampler:
    """:class:`~dbfleet.engines.base.HealthSampler` for a PostgreSQL entry."""

    def __init__(self, database: str, config: DatabaseConfig) -> None:
        self.database = database
        self.config = config

    def sample(self, timeout: float) -> HealthSample:
        return take_sample(self.database, "postgresql", self.config, timeout, self._collect)

    def _collect(self, sample: HealthSample, timeout: float) -> None:
        # psycopg's connect_timeout is whole seconds (libpq treats 1 as 2)
        config = with_options(self.config, connect_timeout=max(2, math.ceil(timeout)))
        engine = PostgreSQLEngine(config)
        with engine._connect() as conn:  # noqa: SLF001 - same package
            conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
            conn.execute("SET default_transaction_read_only = on")
            row = conn.execute(_MAIN).fetchone()
            assert row is not None, "pg_stat_database has a row for every database"
            sample.version = str(row[0])
            sample.is_replica = bool(row[1])
            sample.connections = number(row[2])
            sample.connections_max = number(row[3])
            sample.cache_hits_total = number(row[4])
            sample.cache_misses_total = number(row[5])
            sample.deadlocks_total = number(row[6])
            sample.lock_waits = number(row[10])
            sample.longest_transaction_seconds = number(row[11]) or 0.0
            sample.size_bytes = number(row[12])
            sample.extra.update(
                xact_commit_total=number(row[7]),
                xact_rollback_total=number(row[8]),
                temp_bytes_total=number(row[9]),
                archive_mode=row[13],
            )
            if sample.is_replica:
                lag = conn.execute(_REPLICA).fetchone()
                assert lag is not None
                sample.replication_lag_seconds = number(lag[0])
                sample.extra["replay_lag_bytes"] = number(lag[1])
            sample.archive = _archiver(conn) if row[13] != "off" else None


def _archiver(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    row = conn.execute(_ARCHIVER).fetchone()
    assert row is not None, "pg_stat_archiver has one row"
    return {
        "archived_total": row[0],
        "failed_total": row[1],
        "last_archived_at": row[2].isoformat() if row[2] else None,
        "last_failed_at": row[3].isoformat() if row[3] else None,
        "last_archived_wal": row[4],
        "pending_segments": _pending_segments(conn),
    }


def _pending_segments(conn: psycopg.Connection[Any]) -> int | None:
    """``.ready`` files waiting for ``archive_command``; ``None`` when
    neither the directory nor the function is readable for this role."""
    try:
        datadir = conn.execute("SELECT current_setting('data_directory')").fetchone()
    except psycopg.Error:
        datadir = None
    if datadir:
        status = os.path.join(str(datadir[0]), "pg_wal", "archive_status")
        try:
            return sum(1 for name in os.listdir(status) if name.endswith(".ready"))
        except OSError:
            pass  # another host, or no permission: ask the server
    try:
        row = conn.execute(
            "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
        ).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else None
