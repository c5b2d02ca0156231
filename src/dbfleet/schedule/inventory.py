"""Read the scheduling settings of an inventory.

When :class:`dbfleet.config.Inventory` declares the scheduling fields
(``schedule``, ``serve``, ``notifications``; per database ``schedule``,
``rpo``, ``rto``), they are read from it. Until then this module takes those
keys out of the YAML document before the inventory validates the rest, and
validates them itself with the same models, reporting problems with the same
paths (``databases.notes.schedule.backup: invalid cron expression ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dbfleet.config import Inventory, config_path, load_inventory, parse_inventory
from dbfleet.config_yaml import missing_sections, read_document
from dbfleet.errors import ConfigError
from dbfleet.schedule.config import (
    DATABASE_KEYS,
    INVENTORY_KEYS,
    Scheduling,
    scheduling_problems,
)


def native() -> bool:
    """Whether the inventory model itself declares the scheduling fields."""
    return all(key in Inventory.model_fields for key in INVENTORY_KEYS)


def scheduling_of(inventory: Inventory) -> Scheduling:
    """The scheduling settings of an inventory that declares them natively."""
    return inventory.scheduling()


def _format(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see docs/scheduling.md)"
        problems.append(f"{path}: {message}" if path else message)
    return problems


def split_document(document: Any) -> tuple[Any, dict[str, Any]]:
    """``(inventory document without the scheduling keys, those keys)``."""
    if not isinstance(document, dict):
        return document, {}
    rest = dict(document)
    taken: dict[str, Any] = {k: rest.pop(k) for k in INVENTORY_KEYS if k in rest}
    databases = rest.get("databases")
    if isinstance(databases, dict):
        rest["databases"] = {}
        taken_dbs: dict[str, Any] = {}
        for name, entry in databases.items():
            if isinstance(entry, dict):
                entry = dict(entry)
                own = {k: entry.pop(k) for k in DATABASE_KEYS if k in entry}
                if own:
                    taken_dbs[str(name)] = own
            rest["databases"][name] = entry
        if taken_dbs:
            taken["databases"] = taken_dbs
    return rest, taken


def parse_scheduling(document: dict[str, Any], source: Path | None = None) -> Scheduling:
    try:
        return Scheduling.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{source or 'inventory'} is invalid:", _format(exc)) from None


def problems_of(inventory: Inventory, scheduling: Scheduling | None = None) -> list[str]:
    """Cross-reference problems of the scheduling settings (``Inventory``'s
    own validator calls this once it declares the fields)."""
    return scheduling_problems(
        scheduling if scheduling is not None else scheduling_of(inventory),
        {name: list(db.copy_to) for name, db in inventory.databases.items()},
        set(inventory.databases),
    )


def check(inventory: Inventory, scheduling: Scheduling) -> Scheduling:
    problems = problems_of(inventory, scheduling)
    if problems:
        raise ConfigError(f"{inventory.source or 'inventory'} is invalid:", problems)
    return scheduling


def load(explicit: str | Path | None = None) -> tuple[Inventory, Scheduling]:
    """Load the inventory and its scheduling settings (``--config`` semantics)."""
    if native():
        inventory = load_inventory(explicit)
        return inventory, check(inventory, scheduling_of(inventory))
    path = config_path(explicit)
    document = read_document(path)
    missing_sections(path, document, Inventory.model_fields)
    rest, taken = split_document(document)
    inventory = parse_inventory(rest, path)
    return inventory, check(inventory, parse_scheduling(taken, path))
