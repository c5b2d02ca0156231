"""Engine name -> engine package: the only place that lists the engines'
modules, and the only way ``operations/``, ``cli/`` and ``schedule/`` reach
an engine (a test walks their imports to keep it so).

Each engine's capabilities are named here as ``"module:attribute"`` strings
and imported on first use, so a missing driver only matters for the engine
that needs it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from dbfleet.config import DatabaseConfig
from dbfleet.engines.base import (
    ChainedSnapshots,
    ChangeArchive,
    CommandGroup,
    Engine,
    Migrations,
    PointInTime,
)
from dbfleet.engines.names import ENGINES
from dbfleet.errors import UsageError

if TYPE_CHECKING:
    import typer

__all__ = [
    "Entry",
    "ENTRIES",
    "chained_snapshot_kinds",
    "change_archives",
    "engine_class",
    "engine_for",
    "known_engines",
    "migrations_engines",
    "migrations_for",
    "point_in_time",
    "register_commands",
]


@dataclass(frozen=True)
class Entry:
    """Where an engine package keeps each capability (``None``: it has none)."""

    engine: str
    point_in_time: str | None = None
    change_archive: str | None = None
    chained_snapshots: str | None = None
    commands: str | None = None
    migrations: str | None = None
    """A class taking the location's ``DatabaseConfig``: :class:`Migrations`."""


_PG = "dbfleet.engines.postgresql"
_MY = "dbfleet.engines.mysql"
ENTRIES: dict[str, Entry] = {
    "sqlite": Entry(
        "dbfleet.engines.sqlite:SQLiteEngine",
        migrations="dbfleet.engines.sqlite.migrations:SQLiteMigrations",
    ),
    "postgresql": Entry(
        f"{_PG}:PostgreSQLEngine",
        point_in_time=f"{_PG}.cli:POINT_IN_TIME",
        change_archive=f"{_PG}.wal_check:WAL_ARCHIVE",
        commands=f"{_PG}.cli:register",
        migrations=f"{_PG}.migrations:PostgreSQLMigrations",
    ),
    "mysql": Entry(
        f"{_MY}:MySQLEngine",
        point_in_time=f"{_MY}.cli:POINT_IN_TIME",
        chained_snapshots=f"{_MY}.pitr:BINLOG_CHAIN",
        commands=f"{_MY}.cli:register",
        migrations=f"{_MY}.migrations:MySQLMigrations",
    ),
    "redis": Entry("dbfleet.engines.redis:RedisEngine"),
    "clickhouse": Entry("dbfleet.engines.clickhouse:ClickHouseEngine"),
    "influxdb": Entry("dbfleet.engines.influxdb:InfluxDBEngine"),
    "mongodb": Entry("dbfleet.engines.mongodb:MongoDBEngine"),
    "neo4j": Entry("dbfleet.engines.neo4j:Neo4jEngine"),
    "weaviate": Entry("dbfleet.engines.weaviate:WeaviateEngine"),
}
assert set(ENTRIES) == ENGINES, "engines/names.py and the registry must list the same engines"


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _entry(engine: str) -> Entry:
    try:
        return ENTRIES[engine]
    except KeyError:
        raise UsageError(f"unknown engine {engine!r}") from None


def known_engines() -> set[str]:
    return set(ENTRIES)


def engine_class(engine: str) -> type[Engine]:
    return cast("type[Engine]", _load(_entry(engine).engine))


def engine_for(config: DatabaseConfig) -> Engine:
    """The engine bound to ``config``'s location."""
    return engine_class(config.engine)(config)  # type: ignore[call-arg]


def point_in_time(engine: str) -> PointInTime:
    """The engine's point-in-time restore; "unsupported" when it has none."""
    target = _entry(engine).point_in_time
    if target is None:
        with_pitr = sorted(name for name, e in ENTRIES.items() if e.point_in_time)
        raise UsageError(
            f"point-in-time restore is unsupported for {engine} "
            f"(engines that have it: {', '.join(with_pitr)})"
        )
    return cast(PointInTime, _load(target))


def migrations_engines() -> list[str]:
    """The engines ``dbfleet migrate`` can migrate."""
    return sorted(name for name, e in ENTRIES.items() if e.migrations)


def migrations_for(config: DatabaseConfig) -> Migrations:
    """The engine's migrations bound to ``config``'s location; "unsupported"
    when the engine has none yet."""
    target = _entry(config.engine).migrations
    if target is None:
        raise UsageError(
            f"migrations are unsupported for {config.engine} "
            f"(engines that have them: {', '.join(migrations_engines())})"
        )
    return cast(Migrations, _load(target)(config))


def change_archives() -> list[ChangeArchive]:
    """Every engine's change archive (``repo check``, ``copy`` and ``forget``
    handle all of them, whatever the inventory lists)."""
    return [_load(e.change_archive) for e in ENTRIES.values() if e.change_archive]


def chained_snapshot_kinds() -> dict[str, ChainedSnapshots]:
    """Snapshot kind -> its chain rule, for every engine that has one."""
    kinds: list[ChainedSnapshots] = [
        _load(e.chained_snapshots) for e in ENTRIES.values() if e.chained_snapshots
    ]
    return {k.kind: k for k in kinds}


def register_commands(app: typer.Typer) -> None:
    """Add every engine's own commands to ``app``."""
    for entry in ENTRIES.values():
        if entry.commands:
            group: CommandGroup = _load(entry.commands)
            group(app)
