"""Engine plug-ins, registered by name."""

from __future__ import annotations

import importlib
import importlib.util

from dbfleet.config import DatabaseConfig
from dbfleet.engines.base import (
    BackupMeta,
    Capabilities,
    Engine,
    Health,
    RestoreOptions,
    StreamSink,
    StreamSource,
    compare_fingerprints,
)
from dbfleet.errors import UsageError

__all__ = [
    "BackupMeta",
    "Capabilities",
    "Engine",
    "Health",
    "RestoreOptions",
    "StreamSink",
    "StreamSource",
    "compare_fingerprints",
    "engine_for",
    "known_engines",
]

# name -> "module:Class"; modules import lazily so a missing driver only
# matters for the engine that needs it.
_REGISTRY = {
    "sqlite": "dbfleet.engines.sqlite:SQLiteEngine",
    "postgresql": "dbfleet.engines.postgresql:PostgreSQLEngine",
    "mysql": "dbfleet.engines.mysql:MySQLEngine",
    "redis": "dbfleet.engines.redis:RedisEngine",
    "clickhouse": "dbfleet.engines.clickhouse:ClickHouseEngine",
    "influxdb": "dbfleet.engines.influxdb:InfluxDBEngine",
    "mongodb": "dbfleet.engines.mongodb:MongoDBEngine",
    "neo4j": "dbfleet.engines.neo4j:Neo4jEngine",
    "weaviate": "dbfleet.engines.weaviate:WeaviateEngine",
}


def known_engines() -> set[str]:
    """Engines whose module is installed (an engine under development has a
    registry line before its module lands)."""
    return {
        name
        for name, target in _REGISTRY.items()
        if importlib.util.find_spec(target.partition(":")[0]) is not None
    }


def engine_for(config: DatabaseConfig) -> Engine:
    try:
        target = _REGISTRY[config.engine]
    except KeyError:
        raise UsageError(f"unknown engine {config.engine!r}") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    engine: Engine = cls(config)
    return engine
