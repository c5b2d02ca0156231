"""Per-invocation state shared by the command modules: the inventory and the
opened repositories, loaded on first use. Command modules import ``state``
from here (not from ``cli.main``, which imports them to register them), and
nothing here imports a command module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from dbfleet.catalog import default_path
from dbfleet.config import Inventory, load_inventory
from dbfleet.operations.common import Repositories
from dbfleet.schedule.config import Scheduling


@dataclass
class State:
    config: Path | None = None
    _inventory: Inventory | None = None
    _repos: Repositories | None = None

    def inventory(self) -> Inventory:
        if self._inventory is None:
            self._inventory = load_inventory(self.config)
        return self._inventory

    def repos(self) -> Repositories:
        if self._repos is None:
            self._repos = Repositories(self.inventory())
        return self._repos


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State)
    return obj


def resolve_catalog(explicit: Path | None, inventory: Path, scheduling: Scheduling | None) -> Path:
    """The job catalog: ``--catalog``, else ``serve.catalog`` (relative to the
    inventory), else ``<inventory>.catalog.db`` next to it."""
    if explicit is not None:
        return explicit
    configured = scheduling.serve.catalog if scheduling is not None else None
    if configured is not None:
        configured = configured.expanduser()
        return configured if configured.is_absolute() else inventory.parent / configured
    return default_path(inventory)
