"""Engine names: a leaf module (imports nothing of dbfleet).

The inventory model validates ``engine:`` against these names without
importing any engine or the registry (which imports the inventory model);
:mod:`dbfleet.engines.registry` maps each name to its package, and a test
checks that both list the same engines.
"""

from __future__ import annotations

SERVER_ENGINES = frozenset(
    {"postgresql", "mysql", "redis", "clickhouse", "influxdb", "mongodb", "neo4j", "weaviate"}
)
"""Engines whose entries name a server by ``url``."""
FILE_ENGINES = frozenset({"sqlite"})
"""Engines whose entries name a database file by ``path``."""
ENGINES = SERVER_ENGINES | FILE_ENGINES
ALIASES = {
    "postgres": "postgresql",
    "pg": "postgresql",
    "sqlite3": "sqlite",
    "mariadb": "mysql",
    "mongo": "mongodb",
}
"""Other names users write for an engine; the inventory stores the canonical one."""


def canonical(name: str) -> str:
    """The engine's canonical name (aliases resolved; unknown names unchanged)."""
    return ALIASES.get(name, name)
