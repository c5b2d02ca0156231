"""Weaviate: collections, tenants and objects (properties and vectors) over
the REST API.

Location (see docs/weaviate.md): ``url: http://host:8080`` is the whole
instance; ``url: http://host:8080/Prefix_`` is a *namespace*, the collections
whose names start with ``Prefix_`` (their names within the namespace, the
"tables", are the rest). Collections starting with ``Dbfleet_`` (scratch and
drill copies) belong only to namespaces whose prefix starts with it. An API
key, if the server wants one, comes from ``password_env``/``password_file``
and travels in an ``Authorization: Bearer`` header only.

Backup
    * ``schema``: JSON with every collection's full config from
      ``GET /v1/schema`` (properties, vectorizer and vector index config,
      named vectors, inverted index, multi-tenancy, replication, sharding)
      and its tenants.
    * ``objects/<collection>``: every object, per tenant for multi-tenant
      collections, read with the cursor API (``GET /v1/objects?class=&after=
      &limit=&include=vector``: id order, so no object is skipped or read twice
      while nothing is written) and written as records of JSON (id, tenant,
      properties) plus the vectors as packed float32 (see
      :mod:`dbfleet.engines.weaviate.format`). One page in memory at a time.
    * Consistency: Weaviate has no snapshots; each collection (each tenant)
      is read as of its own cursor walk. Objects written during the backup
      may or may not be in it; the fingerprint is computed from exactly the
      objects stored, so a restore always matches it.
    * Creation and update timestamps are not restored: a batch import sets
      them to the import time. Tenants must be active (HOT): an inactive
      tenant's objects cannot be read, so the backup fails and names it.
    * Backup modules (``backup-filesystem``, ``backup-s3``, ...) are not used,
      even where configured (health reports them): they write files on the
      *server's* disk or bucket, not a stream dbfleet can chunk, encrypt and
      deduplicate, and their backups restore only whole collections into a
      server of the same or a newer version. Object-level export restores
      across versions, under other names, and one collection at a time.

Restore (into this engine's namespace)
    * Collections are created under ``prefix + name`` (without reference
      properties), then reference properties (pointing at the restored
      copies of collections of the backup's namespace), then tenants, then
      the objects by ``POST /v1/batch/objects`` in batches; every object's
      result is checked and the first failed object fails the restore.
    * Without ``clean`` the restore fails if any of the backup's collections
      (or of the selected subset) exists in the target, and changes nothing.
      With ``clean`` those collections are dropped and recreated; others are
      left alone. A failed restore drops the collections it created.
    * ``tables=("Name", ...)`` restores just those collections; a reference
      property pointing at a collection neither restored nor present fails.

Fingerprint: per collection its object count, a digest over ids, canonical
properties (references by collection name within the namespace) and vector
bytes, a digest of its normalized schema, and per tenant count and digest.

Options: ``timeout`` (seconds per HTTP call, default 600), ``ca_file`` (for
https), ``page_size`` (objects per cursor page, default 500),
``batch_size`` (objects per batch import, default 200).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, ClassVar, cast

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.iterfile import IteratorReader
from dbfleet.engines.base import (
    BackupMeta,
    Capabilities,
    Health,
    RestoreOptions,
    StreamSink,
    StreamSource,
    server_url,
)
from dbfleet.engines.weaviate.api import (
    PREFIX_RE,
    SCRATCH_MARK,
    Client,
    Location,
    with_prefix,
)
from dbfleet.engines.weaviate.format import (
    MEDIA_TYPE,
    CollectionPrint,
    Record,
    encode_header,
    encode_trailer,
    normalize_schema,
    reference_properties,
    rename_refs,
    schema_digest,
    vectors_of,
)
from dbfleet.engines.weaviate.restore import SCHEMA_FORMAT, Restore, objects_stream
from dbfleet.errors import EngineError, UsageError
from dbfleet.secrets import secret_from

log = logging.getLogger(__name__)

OPTIONS = {"timeout", "ca_file", "page_size", "batch_size"}
PIECE_BYTES = 1 << 20
BATCH_BYTES = 8 << 20
ACTIVE = {"HOT", "ACTIVE"}


class WeaviateEngine:
    name: ClassVar[str] = "weaviate"
    capabilities: ClassVar[Capabilities] = Capabilities(
        subset_restore=True,
        health_sample=True,
        consistency_point=False,
        scratch_targets=True,
        server_entries=False,
    )

    def __init__(self, config: DatabaseConfig) -> None:
        url = server_url(config, "weaviate", OPTIONS)
        self.config = config
        self.location = Location.parse(url)
        try:
            self.page_size = int(config.options.get("page_size", 500))
            self.batch_size = int(config.options.get("batch_size", 200))
        except (TypeError, ValueError):
            self.page_size = self.batch_size = 0
        if not 1 <= self.page_size <= 10000 or not 1 <= self.batch_size <= 10000:
            raise UsageError("weaviate options page_size and batch_size must be 1..10000")

    # -- locations -------------------------------------------------------

    def target(self, name: str) -> DatabaseConfig:
        if not name or not PREFIX_RE.match(name):
            raise UsageError(
                f"Weaviate target {name!r}: give a collection-name prefix such as Restored_ "
                "(starts with A-Z, then letters, digits and _)"
            )
        assert self.config.url is not None
        return self.config.with_changes(url=with_prefix(self.config.url, name), scratch=None)

    def scratch(self, label: str) -> DatabaseConfig:
        # The source prefix's length keeps scratch namespaces of different
        # sources from nesting (a prefix of one never starts another).
        safe = re.sub(r"[^0-9A-Za-z]", "", label) or "scratch"
        prefix = self.location.prefix
        return self.target(f"{SCRATCH_MARK}{safe}_{len(prefix)}_{prefix}")

    def drop(self) -> None:
        if not self.location.prefix:
            raise UsageError(
                "refusing to drop every collection of a Weaviate instance",
                hint="scratch targets are namespaces: http://host:8080/Prefix_",
            )
        client = self._client()
        try:
            for config in self._collections(client):
                client.request("DELETE", f"/v1/schema/{config['class']}")
        finally:
            client.close()

    # -- connection ------------------------------------------------------

    def _client(self) -> Client:
        where = [f"${self.config.password_env}"] if self.config.password_env else []
        where += [str(self.config.password_file)] if self.config.password_file else []
        return Client(
            self.location,
            secret_from(self.config.password_env, self.config.password_file),
            timeout=float(self.config.options.get("timeout", 600)),
            ca_file=self.config.options.get("ca_file"),
            key_hint=" / ".join(where),
        )

    def _collections(self, client: Client, tables: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Configs of this namespace's collections (``tables``: only those)."""
        loc = self.location
        found = [c for c in client.classes() if loc.owns(str(c["class"]))]
        if tables:
            found = [c for c in found if loc.logical(str(c["class"])) in tables]
        return sorted(found, key=lambda c: str(c["class"]))

    def _tenants(self, client: Client, config: dict[str, Any]) -> list[dict[str, Any]]:
        if not (config.get("multiTenancyConfig") or {}).get("enabled"):
            return []
        tenants = sorted(client.tenants(str(config["class"])), key=lambda t: str(t["name"]))
        idle = [str(t["name"]) for t in tenants if t.get("activityStatus", "HOT") not in ACTIVE]
        if idle:
            raise EngineError(
                f"collection {config['class']} has inactive tenants ({', '.join(idle[:5])}): "
                "their objects cannot be read",
                hint="set their activityStatus to HOT for the backup",
            )
        return tenants

    def _to_logical(self, collection: str) -> str:
        """How the fingerprint names a collection that a reference points at."""
        if self.location.owns(collection):
            return self.location.logical(collection)
        return "@" + collection

    def _records(
        self, client: Client, config: dict[str, Any], tenants: list[dict[str, Any]]
    ) -> Iterator[Record]:
        """Every object of a collection, tenant after tenant, in cursor pages."""
        name = str(config["class"])
        refs = reference_properties(config)
        names: list[str | None] = [str(t["name"]) for t in tenants]
        for tenant in names or [None]:
            after: str | None = None
            while True:
                page = client.objects_page(name, tenant, after, self.page_size)
                for obj in page:
                    properties = rename_refs(obj.get("properties") or {}, refs, lambda c: c)
                    yield Record(str(obj["id"]), tenant, properties, vectors_of(obj))
                if len(page) < self.page_size:
                    break
                after = str(page[-1]["id"])

    def _print(self, config: dict[str, Any], tenants: list[dict[str, Any]]) -> CollectionPrint:
        multi = bool((config.get("multiTenancyConfig") or {}).get("enabled"))
        schema = schema_digest(normalize_schema(config, self._to_logical))
        return CollectionPrint(schema, multi, [str(t["name"]) for t in tenants])

    def _add(self, fp: CollectionPrint, refs: set[str], record: Record) -> None:
        fp.add(record, rename_refs(record.properties, refs, self._to_logical))

    # -- health ----------------------------------------------------------

    def health(self) -> Health:
        client = self._client()
        try:
            meta = client.meta()
            client.request("GET", "/v1/.well-known/ready")
            collections = self._collections(client)
            nodes = client.request("GET", "/v1/nodes", params={"output": "verbose"}) or {}
        except (EngineError, UsageError) as exc:
            return Health(ok=False, error=str(exc))
        finally:
            client.close()
        names = {str(c["class"]) for c in collections}
        objects = 0
        unhealthy = []
        for node in nodes.get("nodes") or []:
            if node.get("status") != "HEALTHY":
                unhealthy.append(f"{node.get('name')}: {node.get('status')}")
            for shard in node.get("shards") or []:
                if shard.get("class") in names:
                    objects += int(shard.get("objectCount") or 0)
        modules = sorted((meta.get("modules") or {}).keys())
        details = {
            "collections": len(collections),
            # the nodes API's per-shard counts, which the server refreshes
            # in the background: an estimate, like InfluxDB's series
            "objects_estimate": objects,
            "nodes": len(nodes.get("nodes") or []),
            "modules": modules,
            "backup_modules": [m for m in modules if m.startswith("backup-")],
            "backup_module_used": False,
        }
        error = None
        if unhealthy:
            error = f"nodes not healthy: {', '.join(unhealthy)}"
        elif self.location.prefix and not collections:
            error = f"no collection starts with {self.location.prefix!r}"
        return Health(ok=error is None, version=str(meta.get("version")), details=details,
                      error=error)  # fmt: skip

    # -- backup ----------------------------------------------------------

    def backup(self, sink: StreamSink) -> BackupMeta:
        client = self._client()
        try:
            return self._backup(client, sink)
        finally:
            client.close()

    def _backup(self, client: Client, sink: StreamSink) -> BackupMeta:
        meta = client.meta()
        version = str(meta.get("version"))
        collections = self._collections(client)
        if self.location.prefix and not collections:
            raise EngineError(
                f"no Weaviate collection starts with {self.location.prefix!r} on "
                f"{self.location.host}:{self.location.port}",
                hint="check the prefix in url (the path), or that the collections exist",
            )
        tenants = {str(c["class"]): self._tenants(client, c) for c in collections}
        schema = {
            "format": SCHEMA_FORMAT,
            "server_version": version,
            "prefix": self.location.prefix,
            "collections": [
                {
                    "name": self.location.logical(str(c["class"])),
                    "config": c,
                    "tenants": tenants[str(c["class"])],
                }
                for c in collections
            ],
        }
        sink.write_stream("schema", io.BytesIO(json.dumps(schema, indent=1).encode()),
                          "application/json")  # fmt: skip
        tables: dict[str, Any] = {}
        counts: dict[str, int] = {}
        for config in collections:
            name = str(config["class"])
            logical = self.location.logical(name)
            fp = self._print(config, tenants[name])
            refs = reference_properties(config)
            header = {"format": MEDIA_TYPE, "collection": logical, "source": name}
            seen = functools.partial(self._add, fp, refs)
            pieces = self._pieces(header, self._records(client, config, tenants[name]), seen)
            sink.write_stream(objects_stream(logical), cast(BinaryIO, IteratorReader(pieces)),
                              MEDIA_TYPE)  # fmt: skip
            tables[logical] = fp.entry()
            counts[logical] = fp.total.objects
        modules = sorted((meta.get("modules") or {}).keys())
        return BackupMeta(
            server_version=version,
            tool="weaviate-rest-cursor",
            tool_version=version,
            fingerprint={"tables": tables},
            options={
                "prefix": self.location.prefix,
                "collections": len(collections),
                "objects": sum(counts.values()),
                "backup_modules": [m for m in modules if m.startswith("backup-")],
                "backup_module_used": False,
            },
        )

    @staticmethod
    def _pieces(
        header: dict[str, Any], records: Iterator[Record], seen: Callable[[Record], None]
    ) -> Iterator[bytes]:
        yield encode_header(header)
        batch: list[bytes] = []
        size = count = 0
        for record in records:
            seen(record)
            data = record.encode()
            batch.append(data)
            size += len(data)
            count += 1
            if size >= PIECE_BYTES:
                yield b"".join(batch)
                batch, size = [], 0
        yield b"".join(batch) + encode_trailer(count)

    # -- restore ---------------------------------------------------------

    def restore(self, source: StreamSource, options: RestoreOptions) -> None:
        client = self._client()
        try:
            Restore(client, self.location, source, self.batch_size, BATCH_BYTES).run(options)
        finally:
            client.close()

    # -- fingerprint -----------------------------------------------------

    def fingerprint(self, tables: tuple[str, ...] = ()) -> dict[str, Any]:
        client = self._client()
        try:
            result: dict[str, Any] = {}
            for config in self._collections(client, tables):
                tenants = self._tenants(client, config)
                fp = self._print(config, tenants)
                refs = reference_properties(config)
                for record in self._records(client, config, tenants):
                    self._add(fp, refs, record)
                result[self.location.logical(str(config["class"]))] = fp.entry()
            return {"tables": result}
        finally:
            client.close()
