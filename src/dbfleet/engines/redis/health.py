"""Redis health sample: what redis_exporter reads from ``INFO``.

Readings: ``connected_clients`` against ``maxclients``; keyspace hits and
misses; on a replica the master link (``extra.master_link_status``) and
the lag = ``master_last_io_seconds_ago`` (``None`` while the link is down:
the lag is then unknown, and ``extra`` says the link is down); ``dbsize``
of the entry's db as ``extra.keys``; ``used_memory`` as the size, with
``maxmemory`` in ``extra`` (0 there means "no limit"). Redis has no locks,
deadlocks, transactions that stay open, or a slow query counter
(``SLOWLOG`` is a ring buffer, not a counter): those are ``None``.
An RDB file entry (a restore target) has only a size.
"""

from __future__ import annotations

from pathlib import Path

import redis as redis_client

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.health import number, take_sample, with_options
from dbfleet.engines.base import HealthSample
from dbfleet.engines.redis import RedisEngine


class RedisHealthSampler:
    """:class:`~dbfleet.engines.base.HealthSampler` for a Redis entry."""

    def __init__(self, database: str, config: DatabaseConfig) -> None:
        self.database = database
        self.config = config

    def sample(self, timeout: float) -> HealthSample:
        return take_sample(self.database, "redis", self.config, timeout, self._collect)

    def _collect(self, sample: HealthSample, timeout: float) -> None:
        config = with_options(self.config, connect_timeout=timeout, socket_timeout=timeout)
        engine = RedisEngine(config)
        if engine.location.kind == "file":
            sample.size_bytes = float(Path(engine.location.path).stat().st_size)
            return
        client = engine._client()  # noqa: SLF001 - same package
        try:
            info = engine._call(client.info)  # noqa: SLF001
            try:  # CONFIG may be renamed or denied by ACL: maxclients unknown
                maxclients = client.config_get("maxclients")
            except redis_client.RedisError:
                maxclients = {}
            keys = engine._call(client.dbsize)  # noqa: SLF001
        finally:
            client.close()
        sample.version = str(info.get("redis_version"))
        sample.connections = number(info.get("connected_clients"))
        sample.connections_max = number((maxclients or {}).get("maxclients"))
        sample.cache_hits_total = number(info.get("keyspace_hits"))
        sample.cache_misses_total = number(info.get("keyspace_misses"))
        sample.size_bytes = number(info.get("used_memory"))
        sample.is_replica = info.get("role") == "slave"
        sample.extra.update(
            keys=keys,
            maxmemory=number(info.get("maxmemory")),
            evicted_keys_total=number(info.get("evicted_keys")),
            connected_replicas=number(info.get("connected_slaves")),
            rejected_connections_total=number(info.get("rejected_connections")),
        )
        if sample.is_replica:
            link = info.get("master_link_status")
            sample.extra["master_link_status"] = link
            if link == "up":
                sample.replication_lag_seconds = number(info.get("master_last_io_seconds_ago"))
