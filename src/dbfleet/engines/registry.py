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
    HealthSampler,
    PointInTime,
    RecoveryLog,
)
from dbfleet.engines.names import ENGINES, POOLER_ENGINES
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
    "health_sampler",
    "known_engines",
    "point_in_time",
    "recovery_log",
    "register_commands",
    "require_database",
]


@dataclass(frozen=True)
class Entry:
    """Where an engine package keeps each capability (``None``: it has none)."""

    engine: str
    point_in_time: str | None = None
    change_archive: str | None = None
    chained_snapshots: str | None = None
    commands: str | None = None
    recovery_log: str | None = None
    health_sampler: str | None = None
    """A class taking ``(database name, DatabaseConfig)`` that is a
    :class:`~dbfleet.engines.base.HealthSampler`."""


_PG = "dbfleet.engines.postgresql"
_MY = "dbfleet.engines.mysql"
ENTRIES: dict[str, Entry] = {
    "sqlite": Entry(
        "dbfleet.engines.sqlite:SQLiteEngine",
        health_sampler="dbfleet.engines.sqlite.health:SQLiteHealthSampler",
    ),
    "postgresql": Entry(
        f"{_PG}:PostgreSQLEngine",
        point_in_time=f"{_PG}.cli:POINT_IN_TIME",
        change_archive=f"{_PG}.wal_check:WAL_ARCHIVE",
        commands=f"{_PG}.cli:register",
        recovery_log=f"{_PG}.recovery:WAL_COVERAGE",
        health_sampler=f"{_PG}.health:PostgreSQLHealthSampler",
    ),
    "mysql": Entry(
        f"{_MY}:MySQLEngine",
        point_in_time=f"{_MY}.cli:POINT_IN_TIME",
        chained_snapshots=f"{_MY}.pitr:BINLOG_CHAIN",
        commands=f"{_MY}.cli:register",
        recovery_log=f"{_MY}.recovery:BINLOG_COVERAGE",
        health_sampler=f"{_MY}.health:MySQLHealthSampler",
    ),
    "redis": Entry(
        "dbfleet.engines.redis:RedisEngine",
        health_sampler="dbfleet.engines.redis.health:RedisHealthSampler",
    ),
    "clickhouse": Entry(
        "dbfleet.engines.clickhouse:ClickHouseEngine",
        health_sampler="dbfleet.engines.clickhouse.health:ClickHouseHealthSampler",
    ),
    "influxdb": Entry(
        "dbfleet.engines.influxdb:InfluxDBEngine",
        health_sampler="dbfleet.engines.influxdb.health:InfluxDBHealthSampler",
    ),
    "mongodb": Entry(
        "dbfleet.engines.mongodb:MongoDBEngine",
        health_sampler="dbfleet.engines.mongodb.health:MongoDBHealthSampler",
    ),
    "neo4j": Entry(
        "dbfleet.engines.neo4j:Neo4jEngine",
        health_sampler="dbfleet.engines.neo4j.health:Neo4jHealthSampler",
    ),
    "weaviate": Entry(
        "dbfleet.engines.weaviate:WeaviateEngine",
        health_sampler="dbfleet.engines.weaviate.health:WeaviateHealthSampler",
    ),
}
assert set(ENTRIES) == ENGINES, "engines/names.py and the registry must list the same engines"


POOLERS: dict[str, str] = {
    "pgbouncer": "dbfleet.engines.pgbouncer.health:PgBouncerHealthSampler",
}
"""Connection pools (:data:`~dbfleet.engines.names.POOLER_ENGINES`) -> their
health sampler: the only capability they have."""
assert set(POOLERS) == POOLER_ENGINES


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _entry(engine: str) -> Entry:
    try:
        return ENTRIES[engine]
    except KeyError:
        if engine in POOLER_ENGINES:
            raise UsageError(
                f"{engine} is a connection pool, not a database: it cannot be backed up, "
                "restored, verified or drilled",
                hint="its entry is for health sampling only ('dbfleet health')",
            ) from None
        raise UsageError(f"unknown engine {engine!r}") from None


def require_database(name: str, config: DatabaseConfig) -> None:
    """``UsageError`` (exit 2) when entry ``name`` is a connection pool:
    backup, restore, verify and drill need a database."""
    if config.engine in POOLER_ENGINES:
        try:
            _entry(config.engine)
        except UsageError as exc:
            raise UsageError(f"{name}: {exc.message}", hint=exc.hint) from None


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


def recovery_log(engine: str) -> RecoveryLog | None:
    """The engine's change log reach (``None``: its recovery point is its
    newest snapshot)."""
    target = _entry(engine).recovery_log
    return cast(RecoveryLog, _load(target)) if target else None
def health_sampler(database: str, config: DatabaseConfig) -> HealthSampler:
    """The sampler of inventory entry ``database``; "unsupported" when its
    engine has none."""
    target = POOLERS.get(config.engine) or _entry(config.engine).health_sampler
    if target is None:
        raise UsageError(f"health sampling is unsupported for {config.engine}")
    return cast(HealthSampler, _load(target)(database, config))


def register_commands(app: typer.Typer) -> None:
    """Add every engine's own commands to ``app``."""
    for entry in ENTRIES.values():
        if entry.commands:
            group: CommandGroup = _load(entry.commands)
            group(app)
