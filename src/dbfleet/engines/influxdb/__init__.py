"""InfluxDB 1.x: one database per inventory entry, with ``influxd backup -portable``.

Location: ``url: http://user@host:8086/db`` (the HTTP API, for queries,
health and fingerprints; the password from ``password_env``/``password_file``
goes in a basic-auth header). The backup/restore RPC service is another
port: ``options: {backup_address: "host:8088"}`` (default: the url's host
with port 8088; the server's ``bind-address`` in influxdb.conf). That
service has no authentication (``influxd backup`` takes no credentials):
it must listen on an address only trusted hosts reach. The ``influxd``
binary (Debian package ``influxdb``) must be installed where dbfleet runs.

Backup
    ``influxd backup -portable`` writes a *directory* (a manifest, a
    ``.meta`` file and one ``.tar.gz`` per shard), never stdout. Streaming it
    without a temporary copy is impossible, so dbfleet keeps the copy as small
    as the tool allows: it lists the database's shards (``SHOW SHARDS``) and
    backs them up **one shard at a time** (``-db -rp -shard``) into a private
    temporary directory (``options.staging_dir`` chooses where), streams the
    shard's archive into the repository *decompressed* (a tar of TSM files,
    so unchanged shards deduplicate; gzip output would not) and deletes it
    before the next shard. Streams: ``shard/<rp>/<id>`` (tar), ``meta`` (the
    metastore export of the last shard's run, so it covers every shard) and
    ``manifest`` (dbfleet's JSON: database, shards, tool version).
    A database without shards is backed up in one run (meta only).
Consistency
    Each shard is a snapshot of that shard when its run starts (influxd
    flushes the cache and links the TSM files); shards are taken one after
    another, so writes during the backup may land in shards taken before or
    after them. The fingerprint is computed before the backup and again after
    it: measurements whose fingerprint changed meanwhile are listed in the
    snapshot's ``changed_during_backup`` option (with a warning) and the
    recorded fingerprint is the one from before, which then need not match a
    restore exactly. Time series written "now" go to the newest shard, so
    the usual case is one changed measurement group.
Fingerprint
    See :func:`dbfleet.engines.influxdb.api.fingerprint`: per
    ``rp.measurement`` the field-value count, series count and an
    order-independent digest over every point (tags, time, field values),
    read with chunked raw queries and hashed by dbfleet (never summed by the
    server: a sum of valid floats can overflow). If the server fails a
    fingerprint query, the backup still succeeds, without a fingerprint:
    the snapshot's ``fingerprint_unavailable`` option has the server's
    message and ``verify``/``drill`` refuse the snapshot saying so.

Restore (into this engine's database)
    * The streams are materialized into a private temporary directory (the
      shard tars gzip-compressed again, a portable manifest written) and
      ``influxd restore -portable -db <source> -newdb <target>`` loads them:
      InfluxDB can restore only into a database that does not exist. Every
      stream is read (and so verified) before the target is touched.
    * Without ``clean`` an existing target database fails the restore and is
      not changed. With ``clean`` the target database is dropped and restored
      (the database is the unit ``influxd restore`` replaces; a restore that
      fails after the drop leaves it missing, and says so).
    * ``tables`` (``"rp.measurement"``, or ``"measurement"`` for every
      retention policy): the backup is restored into a temporary database,
      the selected measurements are copied with ``SELECT * INTO ... GROUP BY
      *`` (tags stay tags, field types stay) into the target (created with
      the backup's retention policies if missing), and the temporary database
      is dropped. Without ``clean`` a measurement that has data in the target
      fails the restore; with ``clean`` it is dropped first (``DROP
      MEASUREMENT`` drops it in every retention policy of the target).
    * Users and privileges are server-wide and not restored.
    * A shard group that starts before the earliest time InfluxDB can
      represent (points before 1677-09-27 in a weekly group that begins on
      1677-09-20) comes back from ``influxd restore`` 1.6 with its start
      wrapped to 2262: its points are all there and the fingerprint
      matches, but a later write into that time range lands in a new group
      beside the restored point (two values for one series and time).

InfluxDB 2.x and 3.x (``options.api``, default ``v1``; other values are
refused until implemented)
    * 2.x: ``influx backup``/``influx restore`` (the influx CLI) with an
      operator token (``--token`` must come from the environment:
      ``INFLUX_TOKEN``), per bucket (``--bucket``, ``--new-bucket`` for a
      restore next to the source) or the whole instance (``--full``,
      including the metadata store); output is again a directory of
      compressed shard files plus a bolt/SQL metadata snapshot, so the same
      one-shard-at-a-time staging applies. Fingerprints with Flux
      (``count()``/``sum()`` grouped by ``_measurement``, ``_field``).
    * 3.x: data lives as Parquet files in object storage plus a catalog;
      there is no backup command: a backup copies the catalog and the
      Parquet files (dedup-friendly, already immutable) and a restore
      points a new node at a copy. That needs object-store access instead of
      the HTTP API, i.e. an engine of its own.

Options: ``backup_address``, ``staging_dir``, ``influxd`` (path of the
binary), ``tool_timeout`` (seconds per influxd run, default 3600),
``timeout`` (HTTP, default 600), ``ca_file``, ``api``.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, cast

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.process import find_tool, run_tool
from dbfleet.engines.base import (
    BackupMeta,
    Capabilities,
    Health,
    RestoreOptions,
    StreamSink,
    StreamSource,
    server_url,
)
from dbfleet.engines.influxdb.api import (
    ALL_TIME,
    Client,
    Location,
    QueryError,
    check_tcp,
    database_shards,
    disk_bytes,
    fingerprint,
    ident,
    measurements,
    with_database,
)
from dbfleet.engines.influxdb.restore import (
    copy_policies,
    materialize,
    read_manifest,
    wait_ready,
)
from dbfleet.errors import EngineError, UsageError
from dbfleet.secrets import secret_from

log = logging.getLogger(__name__)

OPTIONS = {"backup_address", "staging_dir", "influxd", "tool_timeout", "timeout", "ca_file", "api"}
MANIFEST_FORMAT = "dbfleet-influxdb-manifest/1"
SYSTEM_DATABASES = {"_internal"}
MAX_NAME = 200


class InfluxDBEngine:
    name: ClassVar[str] = "influxdb"
    capabilities: ClassVar[Capabilities] = Capabilities(
        subset_restore=True,
        health_sample=True,
        consistency_point=False,
        scratch_targets=True,
        server_entries=True,
    )

    def __init__(self, config: DatabaseConfig) -> None:
        url = server_url(config, "influxdb", OPTIONS)
        api = str(config.options.get("api", "v1"))
        if api != "v1":
            raise UsageError(
                f"influxdb api {api!r} is not supported yet (only v1: InfluxDB 1.x)",
                hint="InfluxDB 2.x needs the influx CLI with a token, 3.x object-store access",
            )
        self.config = config
        self.location = Location.parse(url)
        address = config.options.get("backup_address") or f"{self.location.host}:8088"
        self.backup_address = str(address)

    # -- locations -------------------------------------------------------

    def target(self, name: str) -> DatabaseConfig:
        assert self.config.url is not None
        return self.config.with_changes(url=with_database(self.config.url, name), scratch=None)

    def scratch(self, label: str) -> DatabaseConfig:
        return self.target(f"{self.location.database}_dbfleet_{label}"[:MAX_NAME])

    def drop(self) -> None:
        db = self.location.database
        if db in SYSTEM_DATABASES:
            raise UsageError(f"refusing to drop the system database {db!r}")
        self._client().query(f"DROP DATABASE {ident(db)}")

    # -- helpers ---------------------------------------------------------

    def _client(self) -> Client:
        where = [f"${self.config.password_env}"] if self.config.password_env else []
        where += [str(self.config.password_file)] if self.config.password_file else []
        return Client(
            self.location,
            secret_from(self.config.password_env, self.config.password_file),
            timeout=float(self.config.options.get("timeout", 600)),
            ca_file=self.config.options.get("ca_file"),
            password_hint=" / ".join(where),
        )

    def _influxd(self) -> str:
        configured = self.config.options.get("influxd")
        if configured:
            if not os.access(str(configured), os.X_OK):
                raise EngineError(f"options.influxd {configured} is not an executable")
            return str(configured)
        return find_tool("influxd", "influxdb (Debian) / InfluxDB 1.x OSS", ["/usr/bin"])

    def _run(self, argv: list[str]) -> str:
        timeout = float(self.config.options.get("tool_timeout", 3600))
        return run_tool(argv, timeout=timeout)

    def list_databases(self) -> list[str]:
        """Databases on the server (``_internal`` excluded)."""
        return sorted(d for d in self._databases(self._client()) if d != "_internal")

    def _databases(self, client: Client) -> set[str]:
        return {str(v[0]) for v in client.values("SHOW DATABASES")}

    def _require_database(self, client: Client) -> None:
        if self.location.database not in self._databases(client):
            raise EngineError(
                f"InfluxDB database {self.location.describe()} does not exist",
                hint="check the database name in url",
            )

    def _staging(self) -> tempfile.TemporaryDirectory[str]:
        return tempfile.TemporaryDirectory(
            prefix="dbfleet-influxdb-", dir=self.config.options.get("staging_dir")
        )

    # -- health ----------------------------------------------------------

    def health(self) -> Health:
        db = self.location.database
        try:
            client = self._client()
            version = client.version()
            exists = db in self._databases(client)
            details: dict[str, Any] = {}
            size = None
            if exists:
                details["shards"] = len(database_shards(client, self.location.database))
                details["retention_policies"] = len(
                    client.values(f"SHOW RETENTION POLICIES ON {ident(db)}")
                )
                details["measurements"] = len(client.values("SHOW MEASUREMENTS", db))
                series = client.values("SHOW SERIES CARDINALITY", db)
                details["series_estimate"] = int(series[0][0]) if series else 0
                size = disk_bytes(client, self.location.database)
        except (EngineError, UsageError) as exc:
            return Health(ok=False, error=str(exc))
        try:
            check_tcp(self.backup_address, timeout=3)
            details["backup_service"] = "reachable"
        except EngineError as exc:
            details["backup_service"] = exc.message
        error = None if exists else f"database {db} does not exist"
        return Health(ok=exists, version=version, size_bytes=size, details=details, error=error)

    # -- backup ----------------------------------------------------------

    def backup(self, sink: StreamSink) -> BackupMeta:
        client = self._client()
        db = self.location.database
        version = client.version()
        self._require_database(client)
        influxd = self._influxd()
        check_tcp(self.backup_address)
        tool_version = run_tool([influxd, "version"]).strip()
        shards = database_shards(client, self.location.database)
        before, unavailable = self._fingerprint_or_reason(client)
        entries = []
        meta: bytes | None = None
        with self._staging() as tmp:
            runs: list[tuple[str, int] | None] = list(shards) or [None]
            for shard in runs:
                out = Path(tmp) / ("all" if shard is None else f"s{shard[1]}")
                out.mkdir()
                argv = [influxd, "backup", "-portable", "-db", db, "-host", self.backup_address]
                if shard is not None:
                    argv += ["-rp", shard[0], "-shard", str(shard[1])]
                self._run([*argv, str(out)])
                manifest = read_manifest(out)
                meta = (out / manifest["meta"]["fileName"]).read_bytes()
                for item in manifest.get("files") or []:
                    stream = f"shard/{item['policy']}/{item['shardID']}"
                    with gzip.open(out / item["fileName"], "rb") as tar:
                        ref = sink.write_stream(stream, cast(BinaryIO, tar), "application/x-tar")
                    entries.append({"policy": item["policy"], "shard": int(item["shardID"]),
                                    "stream": stream,
                                    "size": getattr(ref, "size", None)})  # fmt: skip
                shutil.rmtree(out)
        assert meta is not None
        sink.write_stream("meta", io.BytesIO(meta), "application/octet-stream")
        policies = client.values(f"SHOW RETENTION POLICIES ON {ident(db)}")
        document = {"format": MANIFEST_FORMAT, "database": db, "server_version": version,
                    "tool_version": tool_version, "shards": entries,
                    "retention_policies": policies}  # fmt: skip
        sink.write_stream("manifest", io.BytesIO(json.dumps(document, indent=1).encode()),
                          "application/json")  # fmt: skip
        options: dict[str, Any] = {"database": db, "shards": len(entries)}
        after, later = self._fingerprint_or_reason(client) if before is not None else (None, None)
        if before is None or after is None:
            options["changed_during_backup"] = None  # unknown
            options["fingerprint_unavailable"] = unavailable or later
        else:
            changed = sorted(
                t for t in set(before["tables"]) | set(after["tables"])
                if before["tables"].get(t) != after["tables"].get(t)
            )  # fmt: skip
            if changed:
                log.warning("InfluxDB %s changed while it was backed up (%s): the fingerprint "
                            "is from before the backup", db, ", ".join(changed))  # fmt: skip
            options["changed_during_backup"] = changed
        return BackupMeta(
            server_version=version,
            tool="influxd backup -portable",
            tool_version=tool_version,
            # Without the check after the backup the one from before cannot
            # be trusted to describe the stored data: none rather than a
            # fingerprint that may report a false mismatch.
            fingerprint=before if after is not None else None,
            options=options,
        )

    def _fingerprint_or_reason(self, client: Client) -> tuple[dict[str, Any] | None, str | None]:
        """The fingerprint, or why the server could not compute it. A failed
        fingerprint query does not fail the backup (the dump is what must
        not be lost): the snapshot records ``fingerprint_unavailable`` with
        the server's message, and ``verify`` refuses it saying so. A server
        that cannot be reached fails the backup as usual."""
        try:
            return fingerprint(client, self.location.database), None
        except QueryError as exc:
            log.warning("InfluxDB %s: fingerprint unavailable, the backup goes on without "
                        "one: %s", self.location.database, exc.message)  # fmt: skip
            return None, exc.message

    # -- restore ---------------------------------------------------------

    def restore(self, source: StreamSource, options: RestoreOptions) -> None:
        names = source.stream_names()
        if "manifest" not in names or "meta" not in names:
            raise EngineError("the snapshot has no 'manifest' stream: not an InfluxDB backup")
        document = json.loads(b"".join(source.open_stream("manifest")))
        if document.get("format") != MANIFEST_FORMAT:
            raise EngineError(f"unknown InfluxDB manifest format {document.get('format')!r}")
        client = self._client()
        influxd = self._influxd()
        check_tcp(self.backup_address)
        target = self.location.database
        exists = target in self._databases(client)
        if options.tables:
            self._restore_tables(client, influxd, source, document, options, exists)
            return
        if exists and not options.clean:
            raise EngineError(
                f"InfluxDB database {self.location.describe()} already exists",
                hint="restore into a new database, or pass --clean to replace it",
            )
        with self._staging() as tmp:
            materialize(source, document, Path(tmp))
            if exists:
                client.query(f"DROP DATABASE {ident(target)}")
            try:
                self._restore_dir(influxd, document, target, Path(tmp))
            except EngineError as exc:
                if exists:
                    exc.hint = f"the database {target} was dropped before the restore failed"
                raise
        wait_ready(client, target)

    def _restore_dir(self, influxd: str, document: dict[str, Any], target: str, path: Path) -> None:
        if not document["shards"]:
            # influxd 1.6 cannot restore a database without shards ("DB metadata
            # not changed"): create it and its retention policies directly.
            client = self._client()
            client.query(f"CREATE DATABASE {ident(target)}")
            for name, duration, shard_duration, replicas, default in document.get(
                "retention_policies", []
            ):
                verb = "ALTER" if name == "autogen" else "CREATE"
                client.query(
                    f"{verb} RETENTION POLICY {ident(name)} ON {ident(target)} DURATION "
                    f"{duration} REPLICATION {replicas} SHARD DURATION {shard_duration}"
                    + (" DEFAULT" if default else "")
                )
            return
        self._run([influxd, "restore", "-portable", "-db", document["database"], "-newdb",
                   target, "-host", self.backup_address, str(path)])  # fmt: skip

    def _restore_tables(
        self,
        client: Client,
        influxd: str,
        source: StreamSource,
        document: dict[str, Any],
        options: RestoreOptions,
        exists: bool,
    ) -> None:
        target = self.location.database
        temporary = f"{target}_dbfleet_tmp_{secrets.token_hex(3)}"[: MAX_NAME + 20]
        with self._staging() as tmp:
            materialize(source, document, Path(tmp))
            self._restore_dir(influxd, document, temporary, Path(tmp))
        try:
            wait_ready(client, temporary)
            available = measurements(client, temporary)
            selected: list[str] = []
            for name in options.tables:
                found = [t for t in available if t == name or t.split(".", 1)[1] == name]
                if not found:
                    raise UsageError(
                        f"not in the backup: {name}",
                        hint=f"it has {', '.join(sorted(available)) or 'no measurements'}",
                    )
                selected += [t for t in found if t not in selected]
            if not exists:
                client.query(f"CREATE DATABASE {ident(target)}")
            copy_policies(client, temporary, target, created=not exists)
            present = measurements(client, target) if exists else {}
            clash = [t for t in selected if t in present]
            if clash and not options.clean:
                raise EngineError(
                    f"measurement(s) {', '.join(clash)} already have data in "
                    f"{self.location.describe()}",
                    hint="restore into a new database, or pass --clean to replace them",
                )
            for measurement in sorted({t.split(".", 1)[1] for t in selected if t in present}):
                client.query(f"DROP MEASUREMENT {ident(measurement)}", target)
            for table in selected:
                rp, measurement = table.split(".", 1)
                into = f"{ident(target)}.{ident(rp)}.{ident(measurement)}"
                source_m = f"{ident(temporary)}.{ident(rp)}.{ident(measurement)}"
                client.query(f"SELECT * INTO {into} FROM {source_m} WHERE {ALL_TIME} GROUP BY *")
        finally:
            client.query(f"DROP DATABASE {ident(temporary)}")

    # -- fingerprint -----------------------------------------------------

    def fingerprint(self, tables: tuple[str, ...] = ()) -> dict[str, Any]:
        client = self._client()
        self._require_database(client)
        result = fingerprint(client, self.location.database)
        if tables:
            result["tables"] = {
                k: v
                for k, v in result["tables"].items()
                if k in tables or k.split(".", 1)[1] in tables
            }
        return result
