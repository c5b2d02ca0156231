"""Helpers of the PostgreSQL restore: whether the target database is empty,
and what to do when restoring single tables failed."""

from __future__ import annotations

from typing import Any

import psycopg

from dbfleet.engines.base import RestoreOptions


def table_restore_hint(message: str, options: RestoreOptions, clean: bool) -> str | None:
    """What to do when ``pg_restore`` of single tables failed."""
    if not options.tables:
        return None
    if clean and "depend" in message:
        return "other objects depend on the table: restore into a new database"
    if "COPY failed" in message and "does not exist" in message:
        # reg* values name other objects; the dump records no dependency on them.
        return "the table's rows name objects that are not restored with it: restore those too"
    return None


def is_empty(conn: psycopg.Connection[Any]) -> bool:
    """No user schemas other than ``public`` and nothing in ``public``."""
    row = conn.execute(
        "SELECT NOT EXISTS (SELECT FROM pg_namespace n WHERE n.nspname NOT IN"
        " ('public', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%')"
        " AND NOT EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  WHERE n.nspname = 'public')"
        " AND NOT EXISTS (SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        "  WHERE n.nspname = 'public')"
    ).fetchone()
    return bool(row and row[0])
