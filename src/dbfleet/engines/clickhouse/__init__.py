"""ClickHouse: one database per inventory entry, over the HTTP interface.

Location: ``url: http://user@host:8123/db`` (``https://`` for TLS); the
password comes from ``password_env``/``password_file`` and travels in the
``X-ClickHouse-Key`` header, never in a URL or a command line. Works with
18.16 (Debian's clickhouse-server) and current releases: only SHOW CREATE,
``system.tables/columns/parts/mutations`` and ``FORMAT Native`` are used.

Backup (see :mod:`dbfleet.engines.clickhouse.http` for the protocol)
    * ``schema``: JSON with ``SHOW CREATE`` of every table, view and
      dictionary of the database, and what dbfleet does with each.
    * ``data/<table>``: ``SELECT * FROM db.table FORMAT Native``, streamed
      from the response body into the repository (Native is ClickHouse's own
      columnar format: exact types, no text conversion). One stream per table
      that holds rows: the MergeTree family, Log, TinyLog, StripeLog, Memory,
      EmbeddedRocksDB, and materialized views without ``TO`` (their inner
      table, read and written through the view's name). Everything else is
      schema only: views, MVs with ``TO`` (the rows are in the target table),
      Distributed, Merge and Buffer (their rows live in other tables; rows
      still in a Buffer's memory are not included), Null, Set, Join, external
      and queue engines, dictionaries. MATERIALIZED and ALIAS columns are not
      copied (``SELECT *`` leaves them out); the server computes them again.
    * Deduplication: the data query reads with one thread and large blocks
      (``max_threads=1``, ``max_block_size``, ``preferred_block_size_bytes``)
      so the same parts give the same bytes: an unchanged table adds nothing,
      new parts add about their own size, an ``ALTER UPDATE`` of one column
      adds about that column's share of each rewritten part. A merge rewrites
      rows in key order and so changes most of a partition's bytes. A
      ``readonly=1`` user may not set these: backups work, dedupe worse.
    * Consistency: ClickHouse has no transactions across tables, so each table
      is read as of the start of its own query (a MergeTree query works on the
      set of immutable parts that were active when it started; inserts after
      that are not in it). Tables are read one after another: rows inserted
      into table B while table A was being read are in the backup, rows
      inserted into A then are not. Log-family tables block inserts while
      they are read.
    * Fingerprint per table: ``count()`` and the sum (mod 2^64) of a
      ``cityHash64`` of each row (``FINAL`` for Replacing/Collapsing/Summing/
      Aggregating/Graphite MergeTree, whose merges change rows). It runs as a
      second query started right after the data query has begun, so both see
      the same parts unless an insert lands in between (milliseconds). For
      MergeTree tables dbfleet compares the table's block numbers and
      mutations before the data query and after the fingerprint: if rows were
      added or changed meanwhile, the backup still succeeds but the table is
      listed in the snapshot's ``changed_during_backup`` option and a warning
      is logged, because then the fingerprint may differ from the stored rows
      by those inserts (``verify`` would report it). Every value is hashed
      in binary (:func:`~dbfleet.engines.clickhouse.schema.value_hash_terms`):
      numbers, strings, dates and enums as they are; Decimal and UUID as
      their raw bytes (18.16's text of a Decimal128 can be garbage that
      depends on how the rows sit in blocks); Nullable as a null flag plus
      the value, LowCardinality as its plain type, Tuple element by element
      and arrays of those through ``arrayMap`` (18.16 hashes no Nullable or
      Tuple inside an Array). Only types without such a rule (Map,
      AggregateFunction, ...) go through their text, which depends on the
      server: compare those on the same server version.
    * BACKUP statement: releases from 22.x have ``BACKUP DATABASE ... TO
      Disk/S3``. dbfleet does not use it: it writes to a disk or bucket the
      *server* can reach (not a stream dbfleet could chunk, encrypt and
      deduplicate), needs a backups disk configured on the server, and 18.16
      lacks it. The Native streams work on every release and dedupe well.

Restore (into this engine's database, created if missing; dropped again if
a restore that created it fails)
    * The database name in every CREATE is rewritten to the target, as are
      qualified references to the source database inside view queries, MV
      ``TO`` clauses and engine arguments (not names inside string
      literals). Replicated tables whose coordination path names no
      ``{database}``/``{table}``/``{uuid}`` macro are refused under a new
      database name: they would join the source's replicas.
    * Tables with rows are created under a staging name, filled by POSTing
      their Native stream to ``INSERT INTO ... FORMAT Native`` (chunked
      request body straight from the repository), and renamed into place
      only when every stream is in: a failed restore leaves the target as it
      was (Replicated tables are inserted in place). Then schema-only tables,
      then views and materialized views (in dependency order), then the rows
      of MVs without ``TO``, so that restored rows never pass through a view
      twice. Queue engines (Kafka, RabbitMQ, ...) are not created: a restored
      copy would consume the production queue (a warning names them).
    * Without ``clean`` the restore fails if any object of the backup (or of
      the selected subset) exists in the target, and changes nothing. With
      ``clean`` those objects are dropped (views first) and recreated; other
      objects are left alone.
    * ``tables=("name", ...)`` restores just those objects (names within the
      database, no ``db.`` prefix).
    * Server users, roles, quotas and settings profiles are not in a database
      and not backed up (``globals`` is not supported).

Options: ``connect_timeout`` (seconds, default 10), ``timeout`` (seconds a
read or write may stall, default 600), ``ca_file`` (for https).
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import Any, BinaryIO, ClassVar, cast

from dbfleet.config import DatabaseConfig
from dbfleet.engines.base import (
    BackupMeta,
    Capabilities,
    Health,
    RestoreOptions,
    StreamSink,
    StreamSource,
    server_url,
)
from dbfleet.engines.clickhouse.http import Client, Location, with_database
from dbfleet.engines.clickhouse.queries import (
    Background,
    database_exists,
    fingerprint_table,
    schema_objects,
    table_columns,
    table_version,
)
from dbfleet.engines.clickhouse.restore import Restore
from dbfleet.engines.clickhouse.schema import (
    SYSTEM_DATABASES,
    SchemaObject,
    quote,
    quote_literal,
    replicated_path_is_shared,
)
from dbfleet.errors import EngineError, UsageError
from dbfleet.secrets import secret_from

log = logging.getLogger(__name__)

OPTIONS = {"connect_timeout", "timeout", "ca_file"}
SCHEMA_FORMAT = "dbfleet-clickhouse-schema/1"
# 2: Decimal and UUID hashed as raw bytes, Nullable/Tuple inside arrays
# element by element (1, unmarked: their text). A snapshot of format 1
# compares as "format: backup None != restored 2".
FINGERPRINT_FORMAT = 2
NATIVE = "application/x-clickhouse-native"
MAX_NAME = 200
# For deduplication: one reading thread, so rows come part after part in a
# stable order (unchanged parts give unchanged bytes), and large blocks, so
# that a change in one column (ALTER UPDATE) changes one region per part
# instead of a little of every ~1 MB block. A readonly=1 user may not set
# them: its backups work but deduplicate worse.
DUMP_SETTINGS = {
    "max_threads": 1,
    "max_block_size": 1 << 20,
    "preferred_block_size_bytes": 64 << 20,
}


class ClickHouseEngine:
    name: ClassVar[str] = "clickhouse"
    capabilities: ClassVar[Capabilities] = Capabilities(
        subset_restore=True,
        health_sample=True,
        consistency_point=False,
        scratch_targets=True,
        server_entries=True,
    )

    def __init__(self, config: DatabaseConfig) -> None:
        url = server_url(config, "clickhouse", OPTIONS)
        self.config = config
        self.location = Location.parse(url)

    # -- locations -------------------------------------------------------

    def target(self, name: str) -> DatabaseConfig:
        assert self.config.url is not None
        return self.config.with_changes(url=with_database(self.config.url, name), scratch=None)

    def scratch(self, label: str) -> DatabaseConfig:
        return self.target(f"{self.location.database}_dbfleet_{label}"[:MAX_NAME])

    def drop(self) -> None:
        db = self.location.database
        if db in SYSTEM_DATABASES or db == "default":
            raise UsageError(f"refusing to drop the system database {db!r}")
        self._client().execute(f"DROP DATABASE IF EXISTS {quote(db)}")

    # -- connection ------------------------------------------------------

    def _client(self) -> Client:
        options = self.config.options
        where = [f"${self.config.password_env}"] if self.config.password_env else []
        where += [str(self.config.password_file)] if self.config.password_file else []
        return Client(
            self.location,
            secret_from(self.config.password_env, self.config.password_file),
            connect_timeout=float(options.get("connect_timeout", 10)),
            timeout=float(options.get("timeout", 600)),
            ca_file=options.get("ca_file"),
            password_hint=" / ".join(where),
        )

    def list_databases(self) -> list[str]:
        """User databases on the server (``system`` and ``default`` excluded:
        the default database is named explicitly when wanted)."""
        rows = self._client().rows("SELECT name FROM system.databases")
        return sorted(
            str(r["name"])
            for r in rows
            if str(r["name"])
            not in ("system", "default", "INFORMATION_SCHEMA", "information_schema")
        )

    def _require_database(self, client: Client) -> None:
        db = self.location.database
        if not database_exists(client, db):
            raise EngineError(
                f"ClickHouse database {self.location.describe()} does not exist",
                hint="check the database name in url",
            )

    # -- health ----------------------------------------------------------

    def health(self) -> Health:
        db = quote_literal(self.location.database)
        try:
            client = self._client()
            row = client.rows(
                "SELECT version() AS version, uptime() AS uptime,"
                f" (SELECT count() FROM system.databases WHERE name = {db}) AS exists,"
                f" (SELECT count() FROM system.tables WHERE database = {db}) AS tables,"
                " (SELECT sum(bytes_on_disk) FROM system.parts"
                f"  WHERE database = {db} AND active) AS size,"
                f" (SELECT count() FROM system.parts WHERE database = {db} AND active) AS parts,"
                " (SELECT max(c) FROM (SELECT count() AS c FROM system.parts"
                f"  WHERE database = {db} AND active GROUP BY table, partition_id))"
                "  AS max_parts_per_partition,"
                " (SELECT count() FROM system.merges) AS merges,"
                " (SELECT count() FROM system.mutations WHERE NOT is_done) AS mutations,"
                " (SELECT count() FROM system.processes) AS queries,"
                " (SELECT count() FROM system.replicas WHERE is_readonly) AS readonly_replicas"
            )[0]
        except (EngineError, UsageError) as exc:
            return Health(ok=False, error=str(exc))
        details = {
            "uptime_seconds": int(row["uptime"]),
            "tables": int(row["tables"]),
            "active_parts": int(row["parts"]),
            "max_parts_per_partition": int(row["max_parts_per_partition"] or 0),
            "merges_running": int(row["merges"]),
            "mutations_pending": int(row["mutations"]),
            "queries_running": int(row["queries"]),
            "readonly_replicas": int(row["readonly_replicas"]),
        }
        error = None
        if not int(row["exists"]):
            error = f"database {self.location.database} does not exist"
        elif details["readonly_replicas"]:
            error = f"{details['readonly_replicas']} replicated table(s) are read-only"
        return Health(
            ok=error is None,
            version=str(row["version"]),
            size_bytes=int(row["size"] or 0),
            details=details,
            error=error,
        )

    # -- backup ----------------------------------------------------------

    def backup(self, sink: StreamSink) -> BackupMeta:
        client = self._client()
        db = self.location.database
        version = str(client.rows("SELECT version() AS v")[0]["v"])
        self._require_database(client)
        readonly = client.rows("SELECT value FROM system.settings WHERE name = 'readonly'")
        settings = {} if readonly and readonly[0]["value"] == "1" else DUMP_SETTINGS
        objects = schema_objects(client, db)
        columns = table_columns(client, db)
        schema = {
            "format": SCHEMA_FORMAT,
            "database": db,
            "server_version": version,
            "objects": [o.as_dict() for o in objects],
        }
        sink.write_stream("schema", io.BytesIO(json.dumps(schema, indent=1).encode()),
                          "application/json")  # fmt: skip
        tables: dict[str, Any] = {}
        changed: list[str] = []
        for obj in objects:
            if not obj.data:
                continue
            before = table_version(client, db, obj)
            tables[obj.name] = self._backup_table(
                client, db, obj, columns.get(obj.name, []), sink, settings
            )
            if before is not None and table_version(client, db, obj) != before:
                log.warning(
                    "ClickHouse table %s.%s changed while it was backed up: its fingerprint "
                    "may differ from the stored rows by the rows written meanwhile",
                    db,
                    obj.name,
                )
                changed.append(obj.name)
        fingerprint = {
            "tables": tables,
            "objects": {o.name: o.engine for o in objects if not o.data},
            "format": FINGERPRINT_FORMAT,
        }
        return BackupMeta(
            server_version=version,
            tool="clickhouse-http-native",
            tool_version=version,
            fingerprint=fingerprint,
            options={
                "database": db,
                "format": "Native",
                "tables": len(tables),
                "schema_only": len(objects) - len(tables),
                "changed_during_backup": changed,
            },
        )

    def _backup_table(
        self,
        client: Client,
        db: str,
        obj: SchemaObject,
        columns: list[tuple[str, str]],
        sink: StreamSink,
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        query_id = f"dbfleet-fingerprint-{uuid.uuid4()}"
        sql = f"SELECT * FROM {quote(db)}.{quote(obj.name)} FORMAT Native"
        with client.stream(sql, f"table {obj.name}", settings) as body:
            # The data query runs and holds its parts: fingerprint now.
            fingerprint = Background(lambda: fingerprint_table(
                client, db, obj, columns, {"query_id": query_id}))  # fmt: skip
            try:
                sink.write_stream(obj.stream, cast(BinaryIO, body), NATIVE)
            except BaseException:
                if fingerprint.running():
                    try:
                        client.execute(
                            f"KILL QUERY WHERE query_id = {quote_literal(query_id)} ASYNC"
                        )
                    except EngineError as exc:  # best effort: it ends by itself
                        log.debug("could not cancel the fingerprint query: %s", exc)
                raise
        return fingerprint.result()

    # -- restore ---------------------------------------------------------

    def restore(self, source: StreamSource, options: RestoreOptions) -> None:
        if "schema" not in source.stream_names():
            raise EngineError("the snapshot has no 'schema' stream: not a ClickHouse backup")
        doc = json.loads(b"".join(source.open_stream("schema")))
        if doc.get("format") != SCHEMA_FORMAT:
            raise EngineError(f"unknown ClickHouse schema format {doc.get('format')!r}")
        source_db = str(doc["database"])
        objects = [SchemaObject.from_dict(item) for item in doc["objects"]]
        if options.tables:
            known = {o.name for o in objects}
            missing = [t for t in options.tables if t not in known]
            if missing:
                raise UsageError(
                    f"not in the backup: {', '.join(missing)}",
                    hint=f"it has {', '.join(sorted(known)) or 'no tables'}",
                )
            objects = [o for o in objects if o.name in options.tables]
        target = self.location.database
        for obj in objects:
            if replicated_path_is_shared(obj.create, obj.engine, source_db, target):
                raise EngineError(
                    f"{obj.name} is {obj.engine} with a fixed replication path: restored as "
                    f"{target} it would join the replicas of {source_db}",
                    hint="use {database}/{table} macros in the path, or restore on another server",
                )
        client = self._client()
        created = not database_exists(client, target)
        existing: set[str] = set()
        if not created:
            rows = client.rows(
                f"SELECT name FROM system.tables WHERE database = {quote_literal(target)}"
            )
            existing = {str(r["name"]) for r in rows} & {o.name for o in objects}
            if existing and not options.clean:
                raise EngineError(
                    f"{len(existing)} object(s) of the backup already exist in "
                    f"{self.location.describe()}: {', '.join(sorted(existing)[:10])}",
                    hint="restore into a new database, or pass --clean to replace them",
                )
        else:
            client.execute(f"CREATE DATABASE IF NOT EXISTS {quote(target)}")
        try:
            Restore(client, source, source_db, target, existing).run(objects)
        except BaseException:
            if created:
                try:
                    self.drop()
                except EngineError as exc:  # keep the restore's own error
                    log.warning("could not drop %s after a failed restore: %s", target, exc)
            raise

    # -- fingerprint -----------------------------------------------------

    def fingerprint(self, tables: tuple[str, ...] = ()) -> dict[str, Any]:
        client = self._client()
        db = self.location.database
        self._require_database(client)
        objects = schema_objects(client, db)
        if tables:
            objects = [o for o in objects if o.name in tables]
        columns = table_columns(client, db)
        return {
            "tables": {
                o.name: fingerprint_table(client, db, o, columns.get(o.name, []))
                for o in objects
                if o.data
            },
            "objects": {o.name: o.engine for o in objects if not o.data},
            "format": FINGERPRINT_FORMAT,
        }
