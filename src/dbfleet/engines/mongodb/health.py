"""MongoDB health sample: what mongodb_exporter reads from ``serverStatus``.

Readings: ``connections.current`` against ``current + available``;
WiredTiger cache hits/misses (``pages requested from the cache`` minus
``pages read into cache``, and the latter) where the server has WiredTiger;
``locks``/``globalLock.currentQueue`` total as lock waits; the longest
active operation in a transaction (``$currentOp``) is not read (it needs
the ``inprog`` privilege and a ``$currentOp`` aggregation FerretDB does
not have): ``None``; replica member lag from ``replSetGetStatus`` (the
optime of the primary minus this member's) where the server is in a
replica set; size = ``dbStats.storageSize`` of the covered databases.

The test server is FerretDB: it answers ``serverStatus`` without
``wiredTiger``, ``globalLock`` and often ``connections``; those readings
are then ``None``, never a failure. Every command runs under
``pymongo.timeout`` so a stuck server cannot hold the sampler.
"""

from __future__ import annotations

from typing import Any

import pymongo
from pymongo.errors import OperationFailure, PyMongoError

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.health import number, take_sample, with_options
from dbfleet.engines.base import HealthSample
from dbfleet.engines.mongodb import MongoDBEngine
from dbfleet.engines.mongodb.namespaces import covered_databases
from dbfleet.errors import EngineError


class MongoDBHealthSampler:
    """:class:`~dbfleet.engines.base.HealthSampler` for a MongoDB entry."""

    def __init__(self, database: str, config: DatabaseConfig) -> None:
        self.database = database
        self.config = config

    def sample(self, timeout: float) -> HealthSample:
        return take_sample(self.database, "mongodb", self.config, timeout, self._collect)

    def _collect(self, sample: HealthSample, timeout: float) -> None:
        engine = MongoDBEngine(with_options(self.config, connect_timeout=timeout))
        try:
            with engine._client() as client, pymongo.timeout(timeout):  # noqa: SLF001
                build = client.admin.command("buildInfo")
                status = client.admin.command("serverStatus")
                sample.version = str(build.get("version"))
                if "ferretdbVersion" in build:
                    sample.extra["ferretdb"] = build["ferretdbVersion"]
                _fill_status(sample, status)
                sample.is_replica, sample.replication_lag_seconds = _member_lag(client)
                db = engine.location.database
                if db is not None and db not in client.list_database_names():
                    raise EngineError(f"MongoDB database {db} does not exist")
                size = 0.0
                for name in covered_databases(client, engine.location):
                    stats = client[name].command("dbStats")
                    size += number(stats.get("storageSize")) or 0.0
                sample.size_bytes = size
        except PyMongoError as exc:
            raise EngineError(f"MongoDB {engine.location.hosts}: {exc}") from None


def _fill_status(sample: HealthSample, status: dict[str, Any]) -> None:
    connections = status.get("connections") or {}
    current, available = number(connections.get("current")), number(connections.get("available"))
    sample.connections = current
    if current is not None and available is not None:
        sample.connections_max = current + available
    cache = (status.get("wiredTiger") or {}).get("cache") or {}
    requested = number(cache.get("pages requested from the cache"))
    read_in = number(cache.get("pages read into cache"))
    if requested is not None and read_in is not None:
        sample.cache_hits_total = max(0.0, requested - read_in)
        sample.cache_misses_total = read_in
        sample.extra["cache_bytes"] = number(cache.get("bytes currently in the cache"))
        sample.extra["cache_max_bytes"] = number(cache.get("maximum bytes configured"))
    queue = (status.get("globalLock") or {}).get("currentQueue") or {}
    sample.lock_waits = number(queue.get("total"))
    sample.extra["uptime_seconds"] = number(status.get("uptime"))


def _member_lag(client: Any) -> tuple[bool | None, float | None]:
    """(is this a secondary, its lag behind the primary in seconds)."""
    try:
        rs = client.admin.command("replSetGetStatus")
    except OperationFailure:
        return False, None  # not running with --replSet (or FerretDB)
    members = rs.get("members") or []
    primary = next((m for m in members if m.get("stateStr") == "PRIMARY"), None)
    me = next((m for m in members if m.get("self")), None)
    if me is None or me.get("stateStr") != "SECONDARY":
        return False, None
    if primary is None or not primary.get("optimeDate") or not me.get("optimeDate"):
        return True, None
    return True, max(0.0, (primary["optimeDate"] - me["optimeDate"]).total_seconds())
