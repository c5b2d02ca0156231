"""MySQL/MariaDB health sample: what mysqld_exporter reads.

Readings: ``Threads_connected`` against ``max_connections``; InnoDB buffer
pool hits (``Innodb_buffer_pool_read_requests - Innodb_buffer_pool_reads``)
and misses (``Innodb_buffer_pool_reads``); ``Innodb_deadlocks`` where the
server counts them (MariaDB does; MySQL has no such status: ``None``);
``Slow_queries``; replica lag = ``Seconds_Behind_Master`` minus
``SQL_Delay`` (a delayed replica on schedule is not lagging; ``None`` when
the SQL thread is stopped, as the server says); the longest transaction
from ``information_schema.innodb_trx``; lock waits (transactions in
``LOCK WAIT``); size = data + index of the entry's schema.

Each query is bounded by the connection's read timeout.
"""

from __future__ import annotations

import math
from typing import Any

import pymysql

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.health import number, take_sample
from dbfleet.engines.base import HealthSample
from dbfleet.engines.mysql import MySQLEngine
from dbfleet.engines.mysql.server import connect_error
from dbfleet.errors import EngineError

_STATUS = (
    "Threads_connected", "Threads_running", "Innodb_buffer_pool_reads",
    "Innodb_buffer_pool_read_requests", "Innodb_deadlocks", "Slow_queries", "Questions",
    "Uptime", "Innodb_row_lock_current_waits",
)  # fmt: skip


class MySQLHealthSampler:
    """:class:`~dbfleet.engines.base.HealthSampler` for a MySQL/MariaDB entry."""

    def __init__(self, database: str, config: DatabaseConfig) -> None:
        self.database = database
        self.config = config

    def sample(self, timeout: float) -> HealthSample:
        return take_sample(self.database, "mysql", self.config, timeout, self._collect)

    def _collect(self, sample: HealthSample, timeout: float) -> None:
        engine = MySQLEngine(self.config)
        loc, password = engine.location, engine._password()  # noqa: SLF001 - same package
        args = loc.pymysql_args(
            password=password, database=None, timeout=max(1, math.ceil(timeout))
        )
        args.update(read_timeout=timeout, write_timeout=timeout)
        try:
            conn = pymysql.connect(**args)
        except pymysql.Error as exc:
            raise connect_error(exc, self.config, loc, password, False) from None
        try:
            with conn.cursor() as cur:
                _fill(cur, sample, loc.dbname)
        except pymysql.Error as exc:
            raise EngineError(f"MySQL {loc.describe(None)}: {exc.args[-1]}") from None
        finally:
            conn.close()


def _fill(cur: Any, sample: HealthSample, dbname: str) -> None:
    cur.execute("SELECT VERSION(), @@max_connections, @@read_only")
    version, max_connections, read_only = cur.fetchone()
    sample.version = str(version)
    sample.connections_max = number(max_connections)
    placeholders = ", ".join(["%s"] * len(_STATUS))
    cur.execute(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({placeholders})", _STATUS)
    status = {str(k): number(v) for k, v in cur.fetchall()}
    sample.connections = status.get("Threads_connected")
    reads, requests = (
        status.get("Innodb_buffer_pool_reads"),
        status.get("Innodb_buffer_pool_read_requests"),
    )
    if reads is not None and requests is not None:
        sample.cache_hits_total = max(0.0, requests - reads)
        sample.cache_misses_total = reads
    sample.deadlocks_total = status.get("Innodb_deadlocks")
    sample.slow_queries_total = status.get("Slow_queries")
    sample.extra.update(
        read_only=bool(read_only),
        threads_running=status.get("Threads_running"),
        questions_total=status.get("Questions"),
        uptime_seconds=status.get("Uptime"),
    )
    try:  # innodb_trx needs the PROCESS privilege: without it, None
        cur.execute(
            "SELECT max(timestampdiff(MICROSECOND, trx_started, now())) / 1e6,"
            " sum(trx_state = 'LOCK WAIT') FROM information_schema.innodb_trx"
            " WHERE trx_mysql_thread_id <> connection_id()"
        )
        longest, waiting = cur.fetchone()
        sample.longest_transaction_seconds = number(longest) or 0.0
        sample.lock_waits = number(waiting) or 0.0
    except pymysql.err.OperationalError as exc:
        _unavailable(sample, "innodb_trx", exc)
    cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (dbname,))
    if cur.fetchone() is None:
        raise EngineError(f"MySQL database {dbname} does not exist")
    cur.execute(
        "SELECT coalesce(sum(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES"
        " WHERE TABLE_SCHEMA = %s",
        (dbname,),
    )
    sample.size_bytes = number(cur.fetchone()[0])
    _replica(cur, sample)


def _replica(cur: Any, sample: HealthSample) -> None:
    """Lag of this server as a replica (``is_replica`` False when it is none)."""
    try:
        try:
            cur.execute("SHOW REPLICA STATUS")
        except pymysql.err.ProgrammingError:
            cur.execute("SHOW SLAVE STATUS")  # MySQL before 8.0.22, old MariaDB
    except pymysql.err.OperationalError as exc:  # needs REPLICATION CLIENT
        _unavailable(sample, "replica status", exc)
        return
    row = cur.fetchone()
    sample.is_replica = row is not None
    if row is None:
        return
    status = dict(zip([d[0] for d in cur.description or ()], row, strict=False))
    behind = number(status.get("Seconds_Behind_Source", status.get("Seconds_Behind_Master")))
    delay = number(status.get("SQL_Delay")) or 0.0
    sample.replication_lag_seconds = None if behind is None else max(0.0, behind - delay)
    sample.extra["replica_sql_delay_seconds"] = delay
    sample.extra["replica_io_running"] = status.get(
        "Replica_IO_Running", status.get("Slave_IO_Running")
    )
    sample.extra["replica_sql_running"] = status.get(
        "Replica_SQL_Running", status.get("Slave_SQL_Running")
    )


def _unavailable(sample: HealthSample, what: str, exc: pymysql.Error) -> None:
    """Note a reading this role may not take (it stays ``None``)."""
    sample.extra.setdefault("unavailable", []).append(f"{what}: {exc.args[-1]}")
