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
"""Database engines: each has an engine package that backs up and restores."""
POOLER_ENGINES = frozenset({"pgbouncer"})
"""Connection pools an inventory entry may name: sampled for health only,
never backed up (backup, restore, verify and drill refuse them)."""
URL_ENGINES = SERVER_ENGINES | POOLER_ENGINES
"""Engines whose entries take ``url``."""
INVENTORY_ENGINES = ENGINES | POOLER_ENGINES
"""Every ``engine:`` the inventory accepts."""
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


def is_database(engine: str) -> bool:
    """Whether entries of ``engine`` hold data (not a connection pool)."""
    return engine not in POOLER_ENGINES
