"""ClickHouse health sample: what the built-in Prometheus endpoint and
clickhouse_exporter read from ``system.metrics``/``system.events``.

Readings: open client connections (``TCPConnection + HTTPConnection`` and
the MySQL/PostgreSQL protocol ones where the server has them) against
``max_connections`` from ``system.server_settings`` (``None`` on servers
before 23.x, which do not expose their config); mark cache hits/misses
(``system.events`` ``MarkCacheHits``/``MarkCacheMisses``: ClickHouse lists
only events that happened, so an absent one is 0); lock waits
(``RWLockWaitingReaders + RWLockWaitingWriters``); the longest running
query other than this one (``system.processes``; ClickHouse has no open
transactions); the replication delay (``system.replicas`` max
``absolute_delay``, ``None`` without replicated tables); size = active
parts' ``bytes_on_disk`` of the entry's database; parts and merges in
``extra``. Deadlocks and slow queries: ``None``.
"""

from __future__ import annotations

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.health import number, take_sample, with_options
from dbfleet.engines.base import HealthSample
from dbfleet.engines.clickhouse import ClickHouseEngine
from dbfleet.engines.clickhouse.schema import quote_literal
from dbfleet.errors import EngineError

_MARK = "dbfleet health sample"
"""In the sampler's own query, so that it does not count as the longest."""
_CONNECTIONS = ("TCPConnection", "HTTPConnection", "MySQLConnection", "PostgreSQLConnection")


class ClickHouseHealthSampler:
    """:class:`~dbfleet.engines.base.HealthSampler` for a ClickHouse entry."""

    def __init__(self, database: str, config: DatabaseConfig) -> None:
        self.database = database
        self.config = config

    def sample(self, timeout: float) -> HealthSample:
        return take_sample(self.database, "clickhouse", self.config, timeout, self._collect)

    def _collect(self, sample: HealthSample, timeout: float) -> None:
        engine = ClickHouseEngine(
            with_options(self.config, connect_timeout=timeout, timeout=timeout)
        )
        client = engine._client()  # noqa: SLF001 - same package
        db = quote_literal(engine.location.database)
        settings = {"readonly": 2, "max_execution_time": max(1, int(timeout))}
        row = client.rows(
            f"SELECT /* {_MARK} */ version() AS version, uptime() AS uptime,"
            " (SELECT sum(value) FROM system.metrics WHERE metric IN"
            f"  ({', '.join(quote_literal(m) for m in _CONNECTIONS)})) AS connections,"
            " (SELECT sum(value) FROM system.metrics"
            "  WHERE metric IN ('RWLockWaitingReaders', 'RWLockWaitingWriters')) AS lock_waits,"
            " (SELECT sum(value) FROM system.events WHERE event = 'MarkCacheHits') AS hits,"
            " (SELECT sum(value) FROM system.events WHERE event = 'MarkCacheMisses') AS misses,"
            " (SELECT max(elapsed) FROM system.processes"
            f"  WHERE query NOT LIKE '%{_MARK}%') AS longest,"
            " (SELECT count() FROM system.replicas) AS replicated,"
            " (SELECT max(absolute_delay) FROM system.replicas) AS delay,"
            " (SELECT sum(bytes_on_disk) FROM system.parts"
            f"  WHERE database = {db} AND active) AS size,"
            f" (SELECT count() FROM system.parts WHERE database = {db} AND active) AS parts,"
            " (SELECT count() FROM system.merges) AS merges,"
            f" (SELECT count() FROM system.databases WHERE name = {db}) AS exists",
            settings,
        )[0]
        sample.version = str(row["version"])
        if not int(row["exists"]):
            raise EngineError(f"ClickHouse database {engine.location.database} does not exist")
        sample.connections = number(row["connections"])
        sample.lock_waits = number(row["lock_waits"]) or 0.0
        sample.cache_hits_total = number(row["hits"]) or 0.0
        sample.cache_misses_total = number(row["misses"]) or 0.0
        sample.longest_transaction_seconds = number(row["longest"]) or 0.0
        if int(row["replicated"] or 0):
            sample.replication_lag_seconds = number(row["delay"])
        sample.size_bytes = number(row["size"]) or 0.0
        sample.extra.update(
            uptime_seconds=number(row["uptime"]),
            active_parts=number(row["parts"]),
            merges_running=number(row["merges"]),
        )
        try:  # 23.x and later expose the server's own settings
            rows = client.rows(
                "SELECT value FROM system.server_settings WHERE name = 'max_connections'", settings
            )
            sample.connections_max = number(rows[0]["value"]) if rows else None
        except EngineError:
            sample.connections_max = None
