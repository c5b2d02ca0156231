"""Which databases and collections a MongoDB entry covers: the user
databases, the ``collections``/``exclude_collections`` patterns, and a
collection's name in fingerprints and ``--table``."""

from __future__ import annotations

import fnmatch
from typing import Any

from pymongo import MongoClient

from dbfleet.engines.mongodb.location import SCRATCH_PREFIX, SYSTEM_DATABASES, Location
from dbfleet.engines.mongodb.server import Namespace
from dbfleet.errors import UsageError


def user_database(name: str) -> bool:
    """Neither a system database nor a whole instance's scratch copy."""
    return name not in SYSTEM_DATABASES and not name.startswith(SCRATCH_PREFIX)


def patterns(value: Any, name: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"options.{name} must be a list of glob patterns")
    return list(value)


def covered_databases(client: MongoClient[Any], location: Location) -> list[str]:
    """The databases this entry covers: one, those under the prefix, or
    every user database."""
    if location.database is not None:
        return [location.database]
    prefix = location.database_prefix
    if prefix is not None:
        return sorted(
            d for d in client.list_database_names()
            if d.startswith(prefix) and len(d) > len(prefix) and d not in SYSTEM_DATABASES
        )  # fmt: skip
    return sorted(d for d in client.list_database_names() if user_database(d))


def selected(name: str, include: list[str], exclude: list[str]) -> bool:
    """Whether the namespace filter keeps collection ``name``."""
    return any(fnmatch.fnmatchcase(name, p) for p in include) and not any(
        fnmatch.fnmatchcase(name, p) for p in exclude
    )


def namespace_key(location: Location, namespace: Namespace) -> str:
    """A collection's name in fingerprints and ``--table``: ``db.coll``
    for whole instances; under a prefix, ``db`` is the name without it
    (the source's name, so that the fingerprints compare)."""
    if location.database is not None:
        return namespace[1]
    db, coll = namespace
    return f"{db.removeprefix(location.database_prefix or '')}.{coll}"


def covered(
    location: Location, include: list[str], exclude: list[str], namespace: Namespace
) -> bool:
    db, coll = namespace
    if coll.startswith("system.") or db in SYSTEM_DATABASES or not db:
        return False
    if location.database is not None:
        return db == location.database and selected(coll, include, exclude)
    prefix = location.database_prefix
    if prefix is not None:
        return db.startswith(prefix) and len(db) > len(prefix)
    return user_database(db)
