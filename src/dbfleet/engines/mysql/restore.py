"""Steps of a MySQL/MariaDB restore before the dump is replayed: reading the
backup's catalog, the objects the restore creates, creating the database
and checking for objects that are in the way."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pymysql

from dbfleet.engines.base import StreamSource
from dbfleet.engines.mysql.dump import quote
from dbfleet.engines.mysql.server import existing_objects
from dbfleet.errors import EngineError, UsageError

log = logging.getLogger(__name__)

CATALOG_FORMAT = 1


def wanted_objects(
    catalog: dict[str, Any] | None, tables: tuple[str, ...]
) -> dict[str, list[str]] | None:
    """The objects a restore creates, by kind (``None``: not known)."""
    if catalog is None:
        if tables:
            raise EngineError("this backup has no catalog stream: cannot restore single tables")
        return None
    if not tables:
        kinds = ("tables", "sequences", "views", "functions", "procedures", "events")
        return {k: list(catalog.get(k, [])) for k in kinds}
    known_tables, known_sequences = set(catalog["tables"]), set(catalog["sequences"])
    missing = [t for t in tables if t not in known_tables | known_sequences]
    if missing:
        raise UsageError(f"table {', '.join(missing)} is not in the backup")
    return {
        "tables": [t for t in tables if t in known_tables],
        "sequences": [t for t in tables if t in known_sequences],
    }


def add_required_sequences(
    conn: pymysql.connections.Connection[Any],
    dbname: str,
    catalog: dict[str, Any],
    wanted: dict[str, list[str]],
    created: bool,
) -> None:
    """Sequences the selected tables' defaults use are restored along
    when the target does not have them."""
    existing = set() if created else existing_objects(conn, dbname)["relations"]
    requires: dict[str, list[str]] = catalog.get("requires", {})
    for table in wanted["tables"]:
        for sequence in requires.get(table, []):
            if (
                sequence in catalog["sequences"]
                and sequence not in wanted["sequences"]
                and sequence not in existing
            ):
                log.info("restoring sequence %s too: table %s uses it", sequence, table)
                wanted["sequences"].append(sequence)


def create_database(
    conn: pymysql.connections.Connection[Any], dbname: str, catalog: dict[str, Any] | None
) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (dbname,))
        if cur.fetchone():
            return False
        create = f"CREATE DATABASE {quote(dbname)}"
        if catalog and re.fullmatch(r"\w+", str(catalog.get("charset"))):
            create += f" CHARACTER SET {catalog['charset']}"
            if re.fullmatch(r"\w+", str(catalog.get("collation"))):
                create += f" COLLATE {catalog['collation']}"
        try:
            cur.execute(create)
        except pymysql.Error as exc:
            raise EngineError(
                f"cannot create database {dbname}: {exc.args[-1]}",
                hint="the account needs CREATE on the database, or create it first",
            ) from None
    return True


def check_conflicts(
    conn: pymysql.connections.Connection[Any], dbname: str, wanted: dict[str, list[str]] | None
) -> None:
    existing = existing_objects(conn, dbname)
    if wanted is None:
        if any(existing.values()):
            raise EngineError(
                f"database {dbname} is not empty",
                hint="restore with --clean, or into a new database",
            )
        return
    clashes = [
        f"{kind[:-1]} {name}"
        for kind, names in wanted.items()
        for name in names
        if name in existing.get(_conflict_kind(kind), set())
    ]
    if clashes:
        shown = ", ".join(clashes[:10]) + (
            f" and {len(clashes) - 10} more" if len(clashes) > 10 else ""
        )
        raise EngineError(
            f"database {dbname} already has objects of the backup: {shown}",
            hint="restore with --clean to replace them, or into a new database",
        )


def _conflict_kind(kind: str) -> str:
    # tables, sequences and views share one namespace
    return "relations" if kind in ("tables", "sequences", "views") else kind


def read_catalog(source: StreamSource) -> dict[str, Any]:
    try:
        catalog = json.loads(b"".join(source.open_stream("catalog")))
    except ValueError as exc:
        raise EngineError(f"the backup's catalog stream is not valid JSON: {exc}") from None
    if not isinstance(catalog, dict) or catalog.get("format") != CATALOG_FORMAT:
        raise EngineError("the backup's catalog stream has an unknown format")
    return catalog
