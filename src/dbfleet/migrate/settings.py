"""Inventory models for migrations (referenced from :mod:`dbfleet.config`).

Per database::

    migrations: {after: [users-pg], directory: users}   # all keys optional

Top level::

    migrations: {directory: migrations, vars: {schema: app}}
    checks:
      profiles-match-users:
        equal:
          - {database: users-pg, query: "SELECT count(*) FROM users"}
          - {database: content,  query: {count: profiles, filter: {}}}
"""

from __future__ import annotations

import graphlib
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dbfleet.validation import NAME_RE

_VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseMigrations(_Strict):
    """A database's place in the plan."""

    after: list[str] = Field(
        default_factory=list, description="databases whose migrations run before this one's"
    )
    directory: str | None = Field(
        default=None, description="sub-directory of the migrations directory (default: its name)"
    )

    @field_validator("after")
    @classmethod
    def _names(cls, after: list[str]) -> list[str]:
        for name in after:
            if not NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a database name")
        return after


class MigrationsConfig(_Strict):
    """Where migration files live and the values of their ``${name}`` placeholders."""

    directory: Path | None = Field(
        default=None, description="default: 'migrations' next to the inventory"
    )
    vars: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("vars")
    @classmethod
    def _var_names(cls, values: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in values if not re.match(_VAR_NAME, k)]
        if bad:
            raise ValueError(f"placeholder names must match {_VAR_NAME}: {', '.join(bad)}")
        return values


class CheckQuery(_Strict):
    database: str
    query: str | dict[str, Any]
    """SQL text, or an engine's structured query (MongoDB ``{count: ..., filter: ...}``)."""


class CheckConfig(_Strict):
    """A cross-database validation run after the plan (evaluation: next session)."""

    equal: list[CheckQuery] = Field(min_length=2)


def cycle_in(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle of ``after`` edges (``[a, b, a]``), or ``None``."""
    try:
        graphlib.TopologicalSorter(edges).prepare()
    except graphlib.CycleError as exc:
        return [str(n) for n in exc.args[1]]
    return None


class DatabaseMigrationSettings(BaseModel):
    """Mixed into :class:`dbfleet.config.DatabaseConfig`."""

    migrations: DatabaseMigrations | None = Field(
        default=None, description="take part in 'dbfleet migrate' (after: [...], directory)"
    )


class InventoryMigrationSettings(BaseModel):
    """Mixed into :class:`dbfleet.config.Inventory`: the top-level
    ``migrations`` and ``checks`` keys, and their cross-references (``after``
    and check databases must exist; the ``after`` edges must not form a cycle)."""

    migrations: MigrationsConfig = Field(default_factory=MigrationsConfig)
    checks: dict[str, CheckConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_migration_references(self) -> Any:
        databases: dict[str, Any] = getattr(self, "databases", {})
        problems = []
        edges: dict[str, list[str]] = {}
        for name, db in databases.items():
            settings = getattr(db, "migrations", None)
            if settings is None:
                continue
            edges[name] = list(settings.after)
            for index, other in enumerate(settings.after):
                if other not in databases:
                    problems.append(
                        f"databases.{name}.migrations.after.{index}: no database named {other!r}"
                    )
                elif other == name:
                    problems.append(f"databases.{name}.migrations.after.{index}: names itself")
        for check, config in self.checks.items():
            for index, query in enumerate(config.equal):
                if query.database not in databases:
                    problems.append(
                        f"checks.{check}.equal.{index}.database: no database named "
                        f"{query.database!r}"
                    )
        if not problems:
            cycle = cycle_in(edges)
            if cycle:
                problems.append(f"migrations.after: a cycle: {' -> '.join(cycle)}")
        if problems:
            raise ValueError("\n".join(problems))
        return self
