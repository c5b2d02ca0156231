"""The steps of one ClickHouse restore (see :mod:`dbfleet.engines.clickhouse`):
tables with rows filled under staging names and renamed into place, then
schema-only tables, then views in dependency order, then MV rows."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TypeVar

from dbfleet.engines.base import StreamSource
from dbfleet.engines.clickhouse.http import Client, ServerError
from dbfleet.engines.clickhouse.schema import (
    STREAM_ENGINES,
    SchemaObject,
    quote,
    quote_literal,
    rewrite_create,
)
from dbfleet.errors import EngineError

log = logging.getLogger(__name__)

STAGING_PREFIX = "_dbfleet_restore_"
UNKNOWN_TABLE_CODES = {60, 81}  # UNKNOWN_TABLE, UNKNOWN_DATABASE
# Settings a restore turns on when the server knows them: the objects were
# valid on the source, and restored rows must stay exactly as they were.
CREATE_SETTINGS = {
    "allow_experimental_low_cardinality_type": 1,
    "allow_suspicious_low_cardinality_types": 1,
    "allow_suspicious_codecs": 1,
    "allow_experimental_object_type": 1,
}
INSERT_SETTINGS = {"insert_deduplicate": 0, "optimize_on_insert": 0}
T = TypeVar("T")


class Restore:
    """The steps of one restore into ``target`` (see the module docstring)."""

    def __init__(
        self, client: Client, source: StreamSource, source_db: str, target: str, existing: set[str]
    ) -> None:
        self.client = client
        self.source = source
        self.source_db = source_db
        self.target = target
        self.existing = existing
        known = {
            str(r["name"])
            for r in client.rows(
                "SELECT name FROM system.settings WHERE name IN ("
                + ", ".join(quote_literal(s) for s in {**CREATE_SETTINGS, **INSERT_SETTINGS})
                + ")"
            )
        }
        self.create_settings = {k: v for k, v in CREATE_SETTINGS.items() if k in known}
        self.insert_settings = {k: v for k, v in INSERT_SETTINGS.items() if k in known}
        self.staging = f"{STAGING_PREFIX}{secrets.token_hex(4)}_"

    def _qualified(self, name: str) -> str:
        return f"{quote(self.target)}.{quote(name)}"

    def _create(self, obj: SchemaObject, name: str) -> None:
        sql = rewrite_create(obj.create, self.source_db, self.target, name)
        self.client.execute(sql, self.create_settings)

    def _insert(self, obj: SchemaObject, name: str) -> None:
        chunks = self.source.open_stream(obj.stream)
        try:
            self.client.insert(
                f"INSERT INTO {self._qualified(name)} FORMAT Native",
                chunks,
                f"table {obj.name}",
                self.insert_settings,
            )
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _drop(self, name: str, obj: SchemaObject | None = None) -> None:
        """DROP TABLE also drops views (18.16 has no DROP VIEW); DDL
        dictionaries need DROP DICTIONARY."""
        dictionary = obj is not None and obj.create.lstrip().upper().startswith("CREATE DICTIONARY")
        kind = "DICTIONARY" if dictionary else "TABLE"
        self.client.execute(f"DROP {kind} IF EXISTS {self._qualified(name)}")

    def run(self, objects: list[SchemaObject]) -> None:
        tables = [o for o in objects if o.data and not o.is_view]
        plain = [o for o in objects if not o.data and not o.is_view]
        views = [o for o in objects if o.is_view]
        staged: list[tuple[SchemaObject, str]] = []
        try:
            for obj in tables:
                in_place = obj.engine.startswith("Replicated")
                name = obj.name if in_place else f"{self.staging}{obj.name}"
                if in_place and obj.name in self.existing:
                    self._drop(obj.name)
                self._create(obj, name)
                staged.append((obj, name))
                self._insert(obj, name)
        except BaseException:
            for obj, name in staged:
                if name != obj.name:
                    _quietly(lambda n=name: self._drop(n))  # type: ignore[misc]
            raise
        for obj in views:
            if obj.name in self.existing:
                self._drop(obj.name, obj)
        for obj, name in staged:
            if name != obj.name:
                if obj.name in self.existing:
                    self._drop(obj.name)
                self.client.execute(f"RENAME TABLE {self._qualified(name)} TO "
                                    f"{self._qualified(obj.name)}")  # fmt: skip
        skipped = set()
        for obj in plain:
            if obj.engine in STREAM_ENGINES:
                log.warning("not restoring %s (%s): it would consume the source's queue; "
                            "create it by hand", obj.name, obj.engine)  # fmt: skip
                skipped.add(obj.name)
                continue
            if obj.name in self.existing:
                self._drop(obj.name, obj)
            self._create(obj, obj.name)
        self._create_views(views, skipped)

    def _create_views(self, views: list[SchemaObject], skipped: set[str]) -> None:
        """Views may read other views: create what can be created, repeat."""
        pending = list(views)
        while pending:
            failed: list[tuple[SchemaObject, ServerError]] = []
            for obj in pending:
                try:
                    self._create(obj, obj.name)
                except ServerError as exc:
                    if exc.code not in UNKNOWN_TABLE_CODES:
                        raise
                    failed.append((obj, exc))
                    continue
                if obj.data:
                    self._insert(obj, obj.name)
            if len(failed) == len(pending):
                for obj, error in failed:
                    if not any(s in obj.create for s in skipped):
                        raise error
                    log.warning("not restoring view %s: it reads a queue table that was "
                                "not restored", obj.name)  # fmt: skip
                return
            pending = [obj for obj, _ in failed]


def _quietly(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except EngineError as exc:
        log.warning("cleanup after a failed restore: %s", exc)
        return None
