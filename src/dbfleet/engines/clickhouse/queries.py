"""The ClickHouse engine's queries of the server: whether a database exists,
its objects and their columns, a table's part version and fingerprint, and
a fingerprint run in the background while a table is dumped."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dbfleet.engines.clickhouse.http import Client, ServerError
from dbfleet.engines.clickhouse.restore import STAGING_PREFIX
from dbfleet.engines.clickhouse.schema import (
    SchemaObject,
    classify,
    fingerprint_sql,
    quote,
    quote_literal,
    version_key,
)
from dbfleet.errors import EngineError


def database_exists(client: Client, db: str) -> bool:
    return bool(client.rows(f"SELECT 1 FROM system.databases WHERE name = {quote_literal(db)}"))


def schema_objects(client: Client, db: str) -> list[SchemaObject]:
    rows = client.rows(
        f"SELECT name, engine FROM system.tables WHERE database = {quote_literal(db)}"
        " AND NOT is_temporary ORDER BY name"
    )
    objects = []
    for row in rows:
        name, engine = str(row["name"]), str(row["engine"])
        if name.startswith((".inner.", ".inner_id.", STAGING_PREFIX)):
            continue
        objects.append(classify(name, engine, show_create(client, db, name, engine)))
    return objects


def show_create(client: Client, db: str, name: str, engine: str) -> str:
    what = "DICTIONARY" if engine == "Dictionary" else "TABLE"
    try:
        rows = client.rows(f"SHOW CREATE {what} {quote(db)}.{quote(name)}")
    except ServerError:
        if what == "DICTIONARY":  # a Dictionary-engine *table* (18.x style)
            rows = client.rows(f"SHOW CREATE TABLE {quote(db)}.{quote(name)}")
        else:
            raise
    return str(rows[0]["statement"])


def table_columns(client: Client, db: str) -> dict[str, list[tuple[str, str]]]:
    """Per table the columns ``SELECT *`` returns, in order."""
    rows = client.rows(
        "SELECT table, name, type, default_kind FROM system.columns"
        f" WHERE database = {quote_literal(db)}"
    )
    columns: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        if row["default_kind"] not in ("MATERIALIZED", "ALIAS", "EPHEMERAL"):
            columns.setdefault(str(row["table"]), []).append((row["name"], row["type"]))
    return columns


def table_version(client: Client, db: str, obj: SchemaObject) -> Any:
    """See :func:`version_key`; ``None`` for engines without parts."""
    if not obj.engine.endswith("MergeTree"):
        return None
    where = f"database = {quote_literal(db)} AND table = {quote_literal(obj.name)}"
    parts = client.rows(
        "SELECT partition_id, min_block_number AS min_block, max_block_number AS max_block"
        f" FROM system.parts WHERE {where} AND active"
    )
    mutations = client.rows(f"SELECT mutation_id FROM system.mutations WHERE {where}")
    return version_key(parts, mutations)


def fingerprint_table(
    client: Client,
    db: str,
    obj: SchemaObject,
    columns: list[tuple[str, str]],
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    row = client.rows(fingerprint_sql(db, obj, columns), settings)[0]
    return {"rows": int(row["rows"]), "digest": f"{int(row['digest']):016x}"}


class Background:
    """Run ``fn`` in a thread; ``result()`` joins and re-raises its error."""

    def __init__(self, fn: Callable[[], dict[str, Any]]) -> None:
        self._fn = fn
        self._result: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dbfleet-ch-fingerprint",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._fn()
        except BaseException as exc:
            self._error = exc

    def running(self) -> bool:
        return self._thread.is_alive()

    def result(self) -> dict[str, Any]:
        self._thread.join()
        if self._error is not None:
            if isinstance(self._error, EngineError):
                raise self._error
            raise EngineError(f"fingerprint failed: {self._error}")
        assert self._result is not None
        return self._result
