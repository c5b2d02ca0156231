"""InfluxDB (1.x) health sample, from ``/ping`` and ``SHOW STATS``.

Readings: the size of the entry's database (its shards' ``diskBytes``);
in ``extra`` the series cardinality (estimate), shard count, the HTTP
service's active requests and its write/query request counters since
start. InfluxDB 1.x speaks stateless HTTP with no connection limit, no
cache hit counters, locks, transactions or replication (OSS): those
readings are ``None``.
"""

from __future__ import annotations

from typing import Any

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.health import number, take_sample, with_options
from dbfleet.engines.base import HealthSample
from dbfleet.engines.influxdb import InfluxDBEngine
from dbfleet.engines.influxdb.api import QueryError, database_shards, disk_bytes
from dbfleet.errors import EngineError


class InfluxDBHealthSampler:
    """:class:`~dbfleet.engines.base.HealthSampler` for an InfluxDB entry."""

    def __init__(self, database: str, config: DatabaseConfig) -> None:
        self.database = database
        self.config = config

    def sample(self, timeout: float) -> HealthSample:
        return take_sample(self.database, "influxdb", self.config, timeout, self._collect)

    def _collect(self, sample: HealthSample, timeout: float) -> None:
        engine = InfluxDBEngine(with_options(self.config, timeout=timeout))
        client = engine._client()  # noqa: SLF001 - same package
        db = engine.location.database
        sample.version = client.version()
        if db not in {str(v[0]) for v in client.values("SHOW DATABASES")}:
            raise EngineError(f"InfluxDB database {db} does not exist")
        sample.size_bytes = number(disk_bytes(client, db))
        sample.extra["shards"] = len(database_shards(client, db))
        series = client.values("SHOW SERIES CARDINALITY", db)
        sample.extra["series_estimate"] = int(series[0][0]) if series else 0
        try:
            httpd = _stats(client.query("SHOW STATS FOR 'httpd'"))
        except QueryError:
            httpd = {}
        sample.extra.update(
            http_requests_active=number(httpd.get("reqActive")),
            http_write_requests_total=number(httpd.get("writeReq")),
            http_query_requests_total=number(httpd.get("queryReq")),
        )


def _stats(series: list[dict[str, Any]]) -> dict[str, Any]:
    """The first series of a ``SHOW STATS`` answer as ``{column: value}``."""
    if not series:
        return {}
    values = (series[0].get("values") or [[]])[0]
    return dict(zip(series[0].get("columns") or [], values, strict=False))
