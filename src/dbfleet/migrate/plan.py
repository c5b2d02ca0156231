"""The plan: which databases take part, in which phases, and for each one
what is applied, pending, resumable or drifted.

Phases come from the ``after`` edges with stdlib ``graphlib``: each phase is
the set of databases whose predecessors are all in earlier phases, so the
databases of one phase can run in parallel. Restricting a run to some
databases keeps the order among them. A cycle is a config error (exit 2).
"""

from __future__ import annotations

import graphlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbfleet.errors import ConfigError, UsageError
from dbfleet.migrate.files import ENGINE_EXTENSION, MigrationFile, discover, render
from dbfleet.migrate.model import Applied, Step, statement_checksum

if TYPE_CHECKING:
    from dbfleet.config import Inventory
    from dbfleet.engines.base import Migrations

DONE = ("applied", "baseline")


def new_plan_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def migrations_directory(inventory: Inventory) -> Path:
    """``migrations.directory`` (relative to the inventory) or ``migrations``
    next to the inventory."""
    base = inventory.source.parent if inventory.source else Path.cwd()
    configured = inventory.migrations.directory
    if configured is None:
        return base / "migrations"
    configured = configured.expanduser()
    return configured if configured.is_absolute() else base / configured


def database_directory(inventory: Inventory, name: str) -> Path:
    settings = inventory.databases[name].migrations
    sub = settings.directory if settings and settings.directory else name
    return migrations_directory(inventory) / sub


def participants(inventory: Inventory, names: list[str] | None = None) -> list[str]:
    """The databases in the plan: those with a ``migrations:`` entry or a
    directory of migration files (or exactly ``names``, which must exist)."""
    if names:
        for name in names:
            if name not in inventory.databases:
                inventory.database(name)  # the usual "no database" error
        return list(dict.fromkeys(names))
    return [
        name
        for name, db in inventory.databases.items()
        if db.migrations is not None or database_directory(inventory, name).is_dir()
    ]


def phases(inventory: Inventory, names: list[str]) -> list[list[str]]:
    """``names`` in dependency phases (each phase sorted by name)."""
    wanted = set(names)
    graph: dict[str, set[str]] = {}
    for name in names:
        settings = inventory.databases[name].migrations
        graph[name] = {a for a in (settings.after if settings else []) if a in wanted}
    sorter = graphlib.TopologicalSorter(graph)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(str(n) for n in exc.args[1])
        raise ConfigError(f"migrations.after: a cycle: {cycle}") from None
    result = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        result.append(ready)
        sorter.done(*ready)
    return result


@dataclass
class DatabaseState:
    """One database's files against its history."""

    database: str
    engine: str
    files: list[MigrationFile]
    history: list[Applied]
    pending: list[MigrationFile] = field(default_factory=list)
    resume: dict[int, int] = field(default_factory=dict)
    """Pending version -> index of the first statement still to run."""
    drift: list[str] = field(default_factory=list)
    lock: str | None = None

    @property
    def current(self) -> int | None:
        done = [row.version for row in self.history if row.status in DONE]
        return max(done) if done else None

    def as_dict(self) -> dict[str, Any]:
        """The ``status --json`` contract."""
        return {
            "database": self.database,
            "engine": self.engine,
            "current": self.current,
            "applied": [row.public() for row in self.history if row.status in DONE],
            "pending": [f.version for f in self.pending],
            "drift": list(self.drift),
            "lock": self.lock,
            "failed": [
                {"version": r.version, "statements_done": r.statements_done, "error": r.error}
                for r in self.history
                if r.status not in DONE
            ],
        }


def statements(
    migrations: Migrations, item: MigrationFile, section: str, variables: dict[str, Any]
) -> tuple[str, ...]:
    """A section's statements, placeholders substituted."""
    if item.extension == ".py":
        raise UsageError(
            f"{item.path}: Python migrations are not supported yet (next session); "
            "use the engine's own file format"
        )
    text = render(item.sections.get(section, ""), variables, str(item.path))
    return tuple(migrations.split(text))


def inspect(
    inventory: Inventory, name: str, migrations: Migrations, *, lock: str | None = None
) -> DatabaseState:
    """Compare a database's files with its history (read-only)."""
    engine = inventory.databases[name].engine
    files = discover(name, database_directory(inventory, name))
    wrong = [f.path.name for f in files if f.extension not in (ENGINE_EXTENSION[engine], ".py")]
    if wrong:
        raise ConfigError(
            f"{name}: {engine} migrations are {ENGINE_EXTENSION[engine]} (or .py) files, "
            f"not {', '.join(wrong)}"
        )
    state = DatabaseState(name, engine, files, migrations.history(), lock=lock)
    by_version = {f.version: f for f in files}
    rows = {row.version: row for row in state.history}
    baseline = max((r.version for r in state.history if r.status == "baseline"), default=None)
    variables = dict(inventory.migrations.vars)
    for row in state.history:
        item = by_version.get(row.version)
        if item is None:
            if row.status != "baseline":
                state.drift.append(f"version {row.version} ({row.name}) is in the history "
                                   "but its file is missing")  # fmt: skip
        elif row.status == "applied" and row.checksum != item.checksum:
            state.drift.append(
                f"version {row.version} ({item.path.name}) changed since it was applied "
                f"(checksum {row.checksum[:12]} applied, {item.checksum[:12]} now)"
            )
    current = state.current
    for item in files:
        found = rows.get(item.version)
        if baseline is not None and item.version <= baseline and found is None:
            continue  # adopted by the baseline
        if found is not None and found.status in DONE:
            continue
        if found is not None:  # failed or interrupted: resume if what ran is unchanged
            ran = statements(migrations, item, "up", variables)[: found.statements_done]
            if [statement_checksum(s) for s in ran] != found.statement_checksums[: len(ran)]:
                state.drift.append(
                    f"version {item.version} stopped after statement {found.statements_done} "
                    "and the statements that ran have changed since"
                )
            state.resume[item.version] = found.statements_done
        elif current is not None and item.version < current:
            state.drift.append(
                f"version {item.version} ({item.path.name}) is pending but older than the "
                f"current version {current} (out of order)"
            )
        state.pending.append(item)
    state.drift.extend(migrations.leftovers())
    return state


def up_steps(
    state: DatabaseState,
    migrations: Migrations,
    variables: dict[str, Any],
    applied_by: str,
    to: int | None = None,
) -> list[Step]:
    return [
        Step(
            database=state.database,
            version=f.version,
            name=f.name,
            checksum=f.checksum,
            direction="up",
            statements=statements(migrations, f, "up", variables),
            applied_by=applied_by,
            start=state.resume.get(f.version, 0),
        )  # fmt: skip
        for f in state.pending
        if to is None or f.version <= to
    ]


def down_steps(
    state: DatabaseState, migrations: Migrations, variables: dict[str, Any], applied_by: str,
    to: int,
) -> list[Step]:  # fmt: skip
    """Steps reverting every applied version above ``to``, newest first."""
    by_version = {f.version: f for f in state.files}
    steps, problems = [], []
    for row in sorted(state.history, key=lambda r: -r.version):
        if row.version <= to:
            continue
        item = by_version.get(row.version)
        if row.status == "baseline":
            problems.append(f"version {row.version} is a baseline (nothing to revert)")
        elif item is None:
            problems.append(f"version {row.version}: its file is missing")
        elif not item.reversible:
            problems.append(f"version {row.version} ({item.path.name}) is irreversible (no down)")
        else:
            steps.append(
                Step(
                    database=state.database,
                    version=row.version,
                    name=row.name,
                    checksum=row.checksum,
                    direction="down",
                    statements=statements(migrations, item, "down", variables),
                    applied_by=applied_by,
                )  # fmt: skip
            )
    if problems:
        raise UsageError(f"{state.database}: cannot go down to {to}: " + "; ".join(problems))
    return steps
