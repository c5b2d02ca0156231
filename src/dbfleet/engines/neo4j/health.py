"""Neo4j health sample over Bolt.

Readings: open Bolt/HTTP connections (``dbms.listConnections``) against the
Bolt worker thread limit (``server.bolt.thread_pool_max_size``: one thread
per active connection); the longest open transaction other than this
sampler's (``SHOW TRANSACTIONS``); node and relationship counts in
``extra`` (count store lookups, constant time). Neo4j 5 no longer exposes
store sizes or page cache counters through Cypher (JMX beans were
removed; the metrics endpoint is Enterprise), so ``size_bytes`` and cache
hits/misses are ``None``, as are locks, deadlocks and replication (Community
has no clustering). Each query runs with ``timeout`` as its transaction
timeout.
"""

from __future__ import annotations

import neo4j

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.health import number, take_sample, with_options
from dbfleet.engines.base import HealthSample
from dbfleet.engines.neo4j import COMPONENTS, COUNTS, Neo4jEngine

_CONNECTIONS = "CALL dbms.listConnections() YIELD connectionId RETURN count(*) AS c"
_TRANSACTIONS = (
    "SHOW TRANSACTIONS YIELD elapsedTime, currentQuery "
    "WHERE NOT currentQuery STARTS WITH 'SHOW TRANSACTIONS' "
    "RETURN max(elapsedTime) AS longest"
)
_SETTINGS = (
    "SHOW SETTINGS YIELD name, value WHERE name = 'server.bolt.thread_pool_max_size' RETURN value"
)


class Neo4jHealthSampler:
    """:class:`~dbfleet.engines.base.HealthSampler` for a Neo4j entry."""

    def __init__(self, database: str, config: DatabaseConfig) -> None:
        self.database = database
        self.config = config

    def sample(self, timeout: float) -> HealthSample:
        return take_sample(self.database, "neo4j", self.config, timeout, self._collect)

    def _collect(self, sample: HealthSample, timeout: float) -> None:
        engine = Neo4jEngine(with_options(self.config, connect_timeout=timeout))

        def one(session: neo4j.Session, query: str) -> neo4j.Record | None:
            return session.run(neo4j.Query(query, timeout=timeout)).single()

        try:
            with engine._driver() as driver, engine._read(driver) as session:  # noqa: SLF001
                component = one(session, COMPONENTS)
                counts = one(session, COUNTS)
                connections = one(session, _CONNECTIONS)
                longest = one(session, _TRANSACTIONS)
                limit = one(session, _SETTINGS)
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as exc:
            raise engine._error(exc, "cannot reach Neo4j") from None  # noqa: SLF001
        assert component is not None and counts is not None
        sample.version = str(component["v"])
        sample.connections = number(connections["c"]) if connections else None
        sample.connections_max = number(limit["value"]) if limit else None
        duration = longest["longest"] if longest else None
        sample.longest_transaction_seconds = (
            0.0 if duration is None else duration.seconds + duration.nanoseconds / 1e9
        )
        sample.extra.update(
            edition=component["e"], nodes=counts["n"], relationships=counts["r"], labels=counts["l"]
        )
