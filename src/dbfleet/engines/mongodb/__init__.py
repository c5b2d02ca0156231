"""MongoDB: ``mongodump --archive`` streamed into the repository, ``mongorestore --archive`` back.

Location: ``url: mongodb://user@host:27017/app`` (``mongodb+srv://`` too;
options such as ``replicaSet``, ``tls``, ``authSource`` in the query). The
path names the database the entry backs up; a URL without a path
(``mongodb://host:27017/``) is the whole instance in one archive. With
``all_databases: true`` each database is its own snapshot instead
(``<entry>/<database>``; ``admin``, ``config`` and ``local`` excluded). The
password comes from ``password_env``/``password_file``: the driver gets it
as a keyword, the tools in a private 0600 ``--config`` YAML file, never on a
command line. ``mongodump``/``mongorestore`` (MongoDB Database Tools,
100.x) are found in ``options.tools_dir``, else ``$DBFLEET_MONGODB_TOOLS``,
else ``PATH``.

How backup, consistency (``--oplog`` on replica sets), the fingerprint
(computed from the archive stream, :mod:`dbfleet.engines.mongodb.archive`),
restore (``--nsInclude``/``--nsFrom``/``--nsTo``, ``--drop`` for ``clean``,
indexes built by dbfleet) and scratch targets (``<db>_dbfleet_<label>``, or
a ``dbfleet_scratch_<label>_*`` prefix for a whole instance) work is in
docs/mongodb.md ("How it works"), which this module follows.

Options: ``tools_dir``, ``collections``, ``exclude_collections``, ``oplog``,
``parallel_collections``, ``connect_timeout`` (seconds, default 10),
``tool_timeout`` (seconds for short tool runs, default 60).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, BinaryIO, ClassVar, cast

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.process import dump_process, restore_process, run_tool
from dbfleet.engines.base import (
    BackupMeta,
    Capabilities,
    Health,
    RestoreOptions,
    StreamSink,
    StreamSource,
    server_url,
)
from dbfleet.engines.mongodb.archive import (
    ArchiveError,
    ArchiveSummary,
    ArchiveTap,
    TapReader,
)
from dbfleet.engines.mongodb.connection import connect, password_hint, short_error, tool_password
from dbfleet.engines.mongodb.location import (
    SCRATCH_PREFIX,
    SYSTEM_DATABASES,
    Location,
    check_database_name,
    find_mongo_tool,
    oplog_decision,
    scratch_prefix,
    tool_config,
    with_database,
    with_prefix,
)
from dbfleet.engines.mongodb.namespaces import (
    covered,
    covered_databases,
    namespace_key,
    patterns,
    selected,
    user_database,
)
from dbfleet.engines.mongodb.server import (
    Namespace,
    collection_fingerprint,
    create_indexes,
    existing_collections,
    restore_argv,
    restore_namespaces,
    restored_name,
)
from dbfleet.errors import EngineError, UsageError
from dbfleet.secrets import secret_from

log = logging.getLogger(__name__)

OPTIONS = {
    "tools_dir", "collections", "exclude_collections", "oplog", "parallel_collections",
    "connect_timeout", "tool_timeout",
}  # fmt: skip
MANIFEST_FORMAT = "dbfleet-mongodb-manifest/1"
ARCHIVE_MEDIA = "application/x-mongodb-archive"


class MongoDBEngine:
    name: ClassVar[str] = "mongodb"
    capabilities: ClassVar[Capabilities] = Capabilities(
        subset_restore=True,
        health_sample=True,
        consistency_point=True,
        scratch_targets=True,
        server_entries=True,
    )

    def __init__(self, config: DatabaseConfig) -> None:
        url = server_url(config, "mongodb", OPTIONS)
        self.config = config
        self.location = Location.parse(url)
        options = config.options
        self.include = patterns(options.get("collections", ["*"]), "collections")
        self.exclude = patterns(options.get("exclude_collections", []), "exclude_collections")
        if self.location.database is None and (
            "collections" in options or "exclude_collections" in options
        ):
            raise UsageError(
                "options.collections/exclude_collections need a database in url",
                hint="mongodump filters collections only within one database (--db)",
            )

    # -- locations -------------------------------------------------------

    def target(self, name: str) -> DatabaseConfig:
        check_database_name(name)
        return self.config.with_changes(url=with_database(self.location.url, name), scratch=None)

    def scratch(self, label: str) -> DatabaseConfig:
        """A database ``<db>_dbfleet_<label>`` next to a database entry; for
        a whole instance, the same instance with every database under the
        prefix ``dbfleet_scratch_<label>_`` (:func:`scratch_prefix`)."""
        if self.location.database_prefix is not None:
            raise UsageError(f"{self.location.describe()} is a scratch location itself")
        if self.location.database is None:
            url = with_prefix(self.location.url, scratch_prefix(label))
            return self.config.with_changes(url=url, scratch=None)
        return self.target(f"{self.location.database}_dbfleet_{label}"[:60])

    def drop(self) -> None:
        """Drop the database; for a prefix location every database whose
        name starts with the prefix. A whole instance is never dropped."""
        prefix = self.location.database_prefix
        if prefix is not None:
            if not prefix:  # Location refuses it; an empty prefix would be every database
                raise UsageError("refusing to drop databases with an empty prefix")
            with self._client() as client:
                for db in covered_databases(client, self.location):
                    client.drop_database(db)
            return
        db = self._database("drop")
        if db in SYSTEM_DATABASES:
            raise UsageError(f"refusing to drop the system database {db!r}")
        with self._client() as client:
            client.drop_database(db)

    def _database(self, what: str) -> str:
        if self.location.database is None:
            raise UsageError(
                f"{what} needs a database: {self.location.describe()} is a whole instance",
                hint="restore a whole-instance snapshot with --to mongodb://host/ (another "
                "instance), or use all_databases: true for per-database snapshots",
            )
        return self.location.database

    # -- connection ------------------------------------------------------

    def _password(self) -> str | None:
        return secret_from(self.config.password_env, self.config.password_file)

    def _password_hint(self) -> str:
        return password_hint(self.config)

    def _client(self) -> AbstractContextManager[MongoClient[Any]]:
        """A connected client (see :func:`connection.connect`)."""
        timeout = float(self.config.options.get("connect_timeout", 10))
        return connect(self.location, self._password(), timeout, self._password_hint)

    def list_databases(self) -> list[str]:
        """User databases on the server (``admin``, ``config``, ``local`` and
        whole instances' scratch copies ``dbfleet_scratch_*`` excluded)."""
        with self._client() as client:
            return sorted(d for d in client.list_database_names() if user_database(d))

    def _require_database(self, client: MongoClient[Any]) -> None:
        db = self.location.database
        if db is not None and db not in client.list_database_names():
            raise EngineError(
                f"MongoDB database {self.location.describe()} does not exist",
                hint="check the database name in url",
            )

    def _tool(self, name: str) -> str:
        return find_mongo_tool(name, self.config.options.get("tools_dir"))

    def _key(self, namespace: Namespace) -> str:
        return namespace_key(self.location, namespace)

    def _covered(self, namespace: Namespace) -> bool:
        return covered(self.location, self.include, self.exclude, namespace)

    # -- health ----------------------------------------------------------

    def health(self) -> Health:
        try:
            with self._client() as client:
                build = client.admin.command("buildInfo")
                hello = client.admin.command("hello")
                details: dict[str, Any] = {
                    "replica_set": hello.get("setName"),
                    "writable_primary": bool(hello.get("isWritablePrimary", hello.get("ismaster"))),
                    "sharded_router": hello.get("msg") == "isdbgrid",
                }
                if "ferretdbVersion" in build:  # FerretDB answers as MongoDB 7.0
                    details["ferretdb"] = build["ferretdbVersion"]
                size = None
                error = None
                db = self.location.database
                if db is not None and db not in client.list_database_names():
                    error = f"database {db} does not exist"
                else:
                    size = 0
                    collections = 0
                    for name in covered_databases(client, self.location):
                        stats = client[name].command("dbStats")
                        size += int(stats.get("storageSize") or 0)
                        collections += int(stats.get("collections") or 0)
                    details["collections"] = collections
                version = str(build.get("version"))
        except (EngineError, UsageError) as exc:
            return Health(ok=False, error=str(exc))
        except PyMongoError as exc:
            return Health(ok=False, error=f"MongoDB {self.location.hosts}: {short_error(exc)}")
        try:
            details["mongodump"] = self._tool("mongodump")
        except EngineError as exc:
            details["mongodump"] = str(exc)
        return Health(ok=error is None, version=version, size_bytes=size, details=details,
                      error=error)  # fmt: skip

    # -- backup ----------------------------------------------------------

    def backup(self, sink: StreamSink) -> BackupMeta:
        if self.location.database_prefix is not None:
            raise UsageError(
                f"{self.location.describe()} is a scratch location (databases under a prefix), "
                "not something to back up",
                hint="back up the instance (url without a path) or one database",
            )
        mongodump = self._tool("mongodump")
        password = tool_password(self.config, self.location, self._password())
        with self._client() as client:
            version = str(client.admin.command("buildInfo").get("version"))
            hello = client.admin.command("hello")
            self._require_database(client)
            db = self.location.database
            excluded: list[str] = []
            if db is None:
                scratch = sorted(
                    d for d in client.list_database_names() if d.startswith(SCRATCH_PREFIX)
                )
                if scratch:
                    # mongodump has no way to leave a database out of a
                    # whole-instance dump: they are in the archive, but not
                    # in the snapshot's namespaces (restores) or fingerprint.
                    log.warning("MongoDB %s holds scratch databases (verify/drill copies), "
                                "dumped but left out of the snapshot: %s",
                                self.location.describe(), ", ".join(scratch))  # fmt: skip
            if db is not None:
                names = client[db].list_collection_names()
                # system.* stay: system.views holds the definitions of the
                # views the filter keeps, and mongodump handles the rest.
                excluded = sorted(
                    n
                    for n in names
                    if not n.startswith("system.") and not selected(n, self.include, self.exclude)
                )
        whole = db is None
        oplog, why = oplog_decision(hello, whole, self.config.options.get("oplog", "auto"))
        if hello.get("setName") and not oplog:
            log.warning("MongoDB %s is a replica set member but the dump has no oplog (%s): "
                        "no consistency point", self.location.describe(), why)  # fmt: skip
        tool_version = self._tool_version(mongodump)
        parallel = int(self.config.options.get("parallel_collections", 1))
        argv = [mongodump, "--uri", self.location.tool_url(), "--archive",
                f"--numParallelCollections={parallel}"]  # fmt: skip
        if db is not None:
            argv += ["--db", db]
            argv += [f"--excludeCollection={name}" for name in excluded]
        if oplog:
            argv.append("--oplog")
        with (
            tool_config(password) as config_args,
            dump_process([*argv, *config_args]) as out,
        ):
            reader = TapReader(out)
            sink.write_stream("archive", cast(BinaryIO, reader), ARCHIVE_MEDIA)
        try:
            summary = reader.tap.finish()
        except ArchiveError as exc:
            raise EngineError(f"mongodump wrote an unreadable archive: {exc}") from None
        fingerprint = self._fingerprint_of(summary)
        consistency = None
        if oplog:
            if summary.last_oplog is None:
                raise EngineError("mongodump --oplog wrote no oplog entry into the archive")
            consistency = {"oplog_ts": summary.last_oplog, "oplog_entries": summary.oplog_entries}
        manifest = {
            "format": MANIFEST_FORMAT,
            "database": db,
            "server_version": version,
            "tool_version": tool_version,
            "oplog": oplog,
            # views too: mongorestore recreates them from their metadata
            "namespaces": sorted(
                ".".join(ns)
                for ns in [*summary.collections, *summary.views]
                if ns[0] and (db is not None or not ns[0].startswith(SCRATCH_PREFIX))
            ),
            "excluded_collections": excluded,
        }
        sink.write_stream("manifest", io.BytesIO(json.dumps(manifest, indent=1).encode()),
                          "application/json")  # fmt: skip
        return BackupMeta(
            server_version=version,
            tool="mongodump --archive",
            tool_version=tool_version,
            fingerprint=fingerprint,
            consistency_point=consistency,
            options={
                "database": db,
                "oplog": oplog,
                "oplog_reason": why,
                "collections": len(fingerprint["tables"]),
                "excluded_collections": excluded,
            },
        )

    def _tool_version(self, tool: str) -> str:
        timeout = float(self.config.options.get("tool_timeout", 60))
        first = run_tool([tool, "--version"], timeout=timeout).strip().splitlines()
        return first[0].split(":", 1)[-1].strip() if first else "unknown"

    def _fingerprint_of(self, summary: ArchiveSummary) -> dict[str, Any]:
        return {
            "tables": {
                self._key(ns): entry
                for ns, entry in sorted(summary.collections.items())
                if self._covered(ns)
            },
            "views": sorted(self._key(ns) for ns in summary.views if self._covered(ns)),
        }

    # -- restore ---------------------------------------------------------

    def restore(self, source: StreamSource, options: RestoreOptions) -> None:
        names = source.stream_names()
        if "archive" not in names or "manifest" not in names:
            raise EngineError("the snapshot has no 'archive' stream: not a MongoDB backup")
        manifest = json.loads(b"".join(source.open_stream("manifest")))
        if manifest.get("format") != MANIFEST_FORMAT:
            raise EngineError(f"unknown MongoDB manifest format {manifest.get('format')!r}")
        source_db: str | None = manifest["database"]
        target_db = self.location.database
        prefix = self.location.database_prefix
        if (source_db is None) != (target_db is None):
            raise UsageError(
                "a whole-instance snapshot restores into a whole instance (url without "
                "database, or databases under a prefix: mongodb://host/prefix_*), a database "
                "snapshot into a database",
                hint=f"the snapshot is {'a whole instance' if source_db is None else source_db}",
            )
        wanted = restore_namespaces(manifest["namespaces"], source_db, options.tables)
        mongorestore = self._tool("mongorestore")
        password = tool_password(self.config, self.location, self._password())
        targets = sorted({restored_name(db, target_db, prefix) for db, _ in wanted})
        with self._client() as client:
            existing = existing_collections(client, wanted, target_db, prefix)
            if existing and not options.clean:
                raise EngineError(
                    f"{len(existing)} collection(s) of the backup already exist in "
                    f"{self.location.describe()}: {', '.join(existing[:10])}",
                    hint="restore into a new database, or pass --clean to replace them",
                )
            present = set(client.list_database_names())
            created = [d for d in [*targets, target_db] if d is not None and d not in present]
        # Under a prefix the oplog is not replayed: mongorestore refuses it with
        # renames (its entries name the source's databases), and the
        # snapshot's fingerprint describes the dumped documents, before it.
        replay = bool(manifest.get("oplog")) and not options.tables and not prefix
        argv = restore_argv(
            mongorestore, self.location.tool_url(), wanted, source_db, target_db,
            clean=options.clean, oplog_replay=replay, prefix=prefix,
        )  # fmt: skip
        tap = ArchiveTap()

        def chunks() -> Iterator[bytes]:
            for chunk in source.open_stream("archive"):
                tap.offer(chunk)
                yield chunk

        try:
            with tool_config(password) as config_args:
                # The tap must see the whole archive, also if mongorestore
                # stops reading before its end.
                restore_process([*argv, *config_args], chunks(), read_rest=True)
            try:
                summary = tap.finish()
            except ArchiveError as exc:
                raise EngineError(f"the snapshot's archive is unreadable: {exc}") from None
            with self._client() as client:
                for db, coll in wanted:
                    into = restored_name(db, target_db, prefix)
                    create_indexes(client, into, coll, summary.indexes.get((db, coll), []))
        except BaseException:
            self._drop_created(sorted(set(created)))
            raise

    def _drop_created(self, databases: list[str]) -> None:
        """After a failed restore: drop the databases it created (and only those)."""
        if not databases:
            return
        try:
            with self._client() as client:
                for db in databases:
                    if db not in SYSTEM_DATABASES:
                        client.drop_database(db)
        except EngineError as exc:  # keep the restore's own error
            log.warning("could not drop %s after a failed restore: %s", ", ".join(databases), exc)

    # -- fingerprint -----------------------------------------------------

    def fingerprint(self, tables: tuple[str, ...] = ()) -> dict[str, Any]:
        result: dict[str, Any] = {"tables": {}, "views": []}
        with self._client() as client:
            self._require_database(client)
            for db in covered_databases(client, self.location):
                for info in client[db].list_collections():
                    ns = (db, str(info["name"]))
                    if not self._covered(ns) or (tables and self._key(ns) not in tables):
                        continue
                    if info.get("type") == "view":
                        result["views"].append(self._key(ns))
                        continue
                    result["tables"][self._key(ns)] = collection_fingerprint(client, ns, info)
        result["views"].sort()
        result["tables"] = dict(sorted(result["tables"].items()))
        return result
