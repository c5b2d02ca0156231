"""Neo4j (5.x): one database per inventory entry, over Bolt or offline.

Location: ``url: bolt://[user@]host:7687[/database]`` (also ``neo4j://``,
``bolt+s://``, ``neo4j+s://``, ``+ssc``); the user defaults to ``neo4j``,
the database to the server's default (home) database. The password comes
from ``password_env``/``password_file`` and goes to the driver in-process,
never into a URL, command line, log or error message.

Backup, ``options.mode``
    ``logical`` (default, online): the official Python driver reads the
    schema, every node and every relationship in one read transaction and
    writes the ``schema``, ``graph`` and ``summary`` streams
    (:mod:`dbfleet.engines.neo4j.graph`); restore replays them with batched
    ``UNWIND`` writes (:mod:`dbfleet.engines.neo4j.restore`).
    ``offline``: ``neo4j-admin database dump --to-stdout`` of a *stopped*
    DBMS (:mod:`dbfleet.engines.neo4j.admin`), restored with ``database
    load --from-stdin``; no fingerprint (dbfleet cannot read the dump).
Consistency (logical)
    One read transaction, but Neo4j Community is read-committed, not
    snapshot-isolated: writes committed while the backup runs may or may
    not be in it. Relationships whose endpoint appeared after the node pass
    are left out (counted in the snapshot's ``skipped_relationships``). The
    fingerprint is computed from the streamed records themselves, so it
    always describes exactly what was stored.
Fingerprint
    ``tables``: per label (``Person``; ``()`` for nodes without one) and per
    relationship type (``[KNOWS]``): count and an order-independent digest
    over content (labels and properties of nodes; type, properties and both
    endpoints' content of relationships; never internal ids). Plus totals and
    the schema (constraints and indexes by name and definition).
Restore (into this engine's database, which must exist: Community has one
user database per DBMS and no ``CREATE DATABASE``)
    Without ``clean`` it fails before writing if the target holds a node
    with one of the backup's labels, a relationship of one of its types, or
    a constraint/index of the same name. ``clean`` deletes those first;
    other data is left alone. ``tables`` are labels: their nodes (with all
    their labels and properties), the relationships among them, and the
    constraints and indexes on those labels.
Targets
    ``target(name)``: a Bolt URL (another server), a database name on the
    same server (Enterprise), or in offline mode a NEO4J_HOME path.
    ``scratch()``: ``options.scratch_url``, a throw-away server whose
    database dbfleet may empty. ``drop()`` empties a database (all nodes,
    relationships, constraints and indexes but the token lookups) and
    refuses unless the location is marked ``options.disposable: true``
    (``scratch()`` marks its result): on Community the database itself
    cannot be dropped, and emptying a real one must never be an accident.

Options: ``mode``, ``batch_size`` (rows per restore transaction, 5000),
``fetch_size`` (records per Bolt pull, 2000), ``connect_timeout`` (10 s),
``scratch_url``, ``disposable``, ``neo4j_admin``, ``neo4j_home``,
``neo4j_conf``, ``tool_timeout``.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any, BinaryIO, ClassVar, cast
from urllib.parse import urlsplit, urlunsplit

import neo4j

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
from dbfleet.engines.neo4j.admin import AdminTool
from dbfleet.engines.neo4j.graph import (
    FORMAT,
    MEDIA_TYPE,
    GraphBackup,
    live_fingerprint,
    read_schema,
    schema_signature,
)
from dbfleet.engines.neo4j.restore import GraphRestore, ident
from dbfleet.errors import EngineError, UsageError
from dbfleet.secrets import secret_from

log = logging.getLogger(__name__)

OPTIONS = {"mode", "batch_size", "fetch_size", "connect_timeout", "scratch_url", "disposable",
           "neo4j_admin", "neo4j_home", "neo4j_conf", "tool_timeout"}  # fmt: skip
SCHEMES = {"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"}
DEFAULT_PORT = 7687
# Errors that mean "check the url/credentials" rather than "the data".
_AUTH = (neo4j.exceptions.AuthError,)
_UNREACHABLE = (neo4j.exceptions.ServiceUnavailable,)
COMPONENTS = "CALL dbms.components() YIELD versions, edition RETURN versions[0] AS v, edition AS e"
COUNTS = (
    "CALL { MATCH (n) RETURN count(n) AS n } CALL { MATCH ()-[r]->() RETURN count(r) AS r } "
    "CALL { CALL db.labels() YIELD label RETURN count(label) AS l } RETURN n, r, l"
)


class Neo4jEngine:
    name: ClassVar[str] = "neo4j"
    capabilities: ClassVar[Capabilities] = Capabilities(
        subset_restore=True,
        health_sample=True,
        consistency_point=False,
        scratch_targets=True,
        server_entries=False,
    )

    def __init__(self, config: DatabaseConfig) -> None:
        url = server_url(config, "neo4j", OPTIONS)
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise UsageError(f"neo4j url must start with {', '.join(sorted(SCHEMES))}:// "
                             f"(got {parts.scheme or 'no scheme'})")  # fmt: skip
        if not parts.hostname:
            raise UsageError("neo4j url needs a host, e.g. bolt://db1:7687")
        mode = str(config.options.get("mode", "logical"))
        if mode not in ("logical", "offline"):
            raise UsageError("neo4j option mode must be logical or offline")
        self.config = config
        self.mode = mode
        self.user = parts.username or "neo4j"
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORT
        self.database: str | None = parts.path.strip("/") or None
        self.address = urlunsplit((parts.scheme, f"{self.host}:{self.port}", "", parts.query, ""))

    def describe(self) -> str:
        return f"{self.address}/{self.database or '(default database)'}"

    def _option(self, name: str, default: Any) -> Any:
        return self.config.options.get(name, default)

    # -- locations ---------------------------------------------------------

    def target(self, name: str) -> DatabaseConfig:
        if "://" in name:
            Neo4jEngine(self.config.with_changes(url=name))  # validate
            return self.config.with_changes(url=name, scratch=None)
        if self.mode == "offline" and "/" in name:
            options = {**self.config.options, "neo4j_home": name, "neo4j_conf": None}
            return self.config.with_changes(options=options, scratch=None)
        parts = urlsplit(self.config.url or "")
        return self.config.with_changes(url=urlunsplit(parts._replace(path=f"/{name}")),
                                        scratch=None)  # fmt: skip

    def scratch(self, label: str) -> DatabaseConfig:
        url = self._option("scratch_url", None)
        if not url or self.mode == "offline":
            raise UsageError(
                "Neo4j Community has one database per server, so dbfleet cannot create a "
                "scratch database next to the source",
                hint="set options.scratch_url to a throw-away Neo4j server (its database is "
                "emptied), or scratch: to an inventory entry with options.disposable: true",
            )
        options = {k: v for k, v in self.config.options.items() if k != "scratch_url"}
        return self.config.with_changes(url=str(url), scratch=None,
                                        options={**options, "disposable": True})  # fmt: skip

    def drop(self) -> None:
        if not self._option("disposable", False):
            raise UsageError(
                f"refusing to empty {self.describe()}: it is not marked disposable",
                hint="only scratch locations (options.disposable: true) are dropped",
            )
        try:
            with self._driver() as driver, driver.session(database=self.database) as session:
                session.run("MATCH (n) CALL { WITH n DETACH DELETE n } "
                            "IN TRANSACTIONS OF 10000 ROWS").consume()  # fmt: skip
                for record in list(session.run("SHOW CONSTRAINTS YIELD name")):
                    session.run(f"DROP CONSTRAINT {ident(record['name'])} IF EXISTS").consume()
                for record in list(session.run("SHOW INDEXES YIELD name, type")):
                    if record["type"] != "LOOKUP":
                        session.run(f"DROP INDEX {ident(record['name'])} IF EXISTS").consume()
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as exc:
            raise self._error(exc, "emptying the scratch database failed") from None

    # -- connection ----------------------------------------------------------

    def _password(self) -> str | None:
        return secret_from(self.config.password_env, self.config.password_file)

    def _driver(self) -> neo4j.Driver:
        password = self._password()
        auth = (self.user, password) if password is not None else None
        try:
            return neo4j.GraphDatabase.driver(
                self.address,
                auth=auth,
                connection_timeout=float(self._option("connect_timeout", 10)),
                connection_acquisition_timeout=float(self._option("connect_timeout", 10)) * 3,
                max_transaction_retry_time=0,
                fetch_size=int(self._option("fetch_size", 2000)),
                notifications_min_severity="OFF",
                user_agent="dbfleet",
            )
        except (ValueError, neo4j.exceptions.ConfigurationError) as exc:
            raise UsageError(f"neo4j url {self.address}: {exc}") from None

    def _error(self, exc: BaseException, what: str) -> EngineError:
        reason = " ".join(str(getattr(exc, "message", None) or exc).split())
        reason = reason or type(exc).__name__
        password = self._password()
        if password:
            reason = reason.replace(password, "***")
        hint = None
        code = str(getattr(exc, "code", "") or "")
        if isinstance(exc, _AUTH) or "Unauthorized" in code:
            where = [f"${self.config.password_env}"] if self.config.password_env else []
            where += [str(self.config.password_file)] if self.config.password_file else []
            hint = (f"check the user in url and the password in {' / '.join(where)}" if where
                    else "no password configured: set password_env or password_file")  # fmt: skip
        elif isinstance(exc, _UNREACHABLE):
            hint = "check that the server is running and the url's host and port"
        elif "DatabaseNotFound" in code:
            hint = "check the database name in url (Community has only 'neo4j')"
        elif "Forbidden" in code or "Security" in code:
            hint = "the user lacks a privilege dbfleet needs"
        return EngineError(f"{what} ({self.describe()}): {reason}", hint=hint)

    def _read(self, driver: neo4j.Driver) -> neo4j.Session:
        return driver.session(database=self.database, default_access_mode=neo4j.READ_ACCESS)

    # -- health ----------------------------------------------------------------

    def health(self) -> Health:
        try:
            with self._driver() as driver, self._read(driver) as session:
                component = session.run(COMPONENTS).single()
                counts = session.run(COUNTS).single()
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as exc:
            return Health(ok=False, error=str(self._error(exc, "cannot reach Neo4j")))
        assert component is not None and counts is not None
        details = {"edition": component["e"], "database": self.database or "(default)",
                   "nodes": counts["n"], "relationships": counts["r"], "labels": counts["l"],
                   "mode": self.mode}  # fmt: skip
        return Health(ok=True, version=str(component["v"]), details=details)

    # -- backup ----------------------------------------------------------------

    def backup(self, sink: StreamSink) -> BackupMeta:
        if self.mode == "offline":
            return self._backup_offline(sink)
        try:
            with self._driver() as driver, self._read(driver) as session:
                with session.begin_transaction() as tx:
                    version, edition = _version(tx)
                    schema = read_schema(tx)
                    header = {"format": FORMAT, "server_version": version, "edition": edition,
                              "database": self.database}  # fmt: skip
                    document = {**header, **schema}
                    sink.write_stream("schema", io.BytesIO(json.dumps(document).encode()),
                                      "application/json")  # fmt: skip
                    graph = GraphBackup(tx, header)
                    sink.write_stream("graph", cast(BinaryIO, IteratorReader(graph.pieces())),
                                      MEDIA_TYPE)  # fmt: skip
                summary = graph.summary()
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as exc:
            raise self._error(exc, "Neo4j backup failed") from None
        sink.write_stream("summary", io.BytesIO(json.dumps(summary).encode()), "application/json")
        if summary["skipped_relationships"]:
            log.warning("%d relationships created during the backup were left out (their nodes "
                        "came after the node pass)", summary["skipped_relationships"])  # fmt: skip
        return BackupMeta(
            server_version=version,
            tool="neo4j-python-driver",
            tool_version=neo4j.__version__,
            fingerprint=graph.fingerprint.result(schema_signature(schema)),
            options={
                "mode": "logical",
                "edition": edition,
                "database": self.database,
                "nodes": summary["nodes"],
                "relationships": summary["relationships"],
                "skipped_relationships": summary["skipped_relationships"],
            },  # fmt: skip
        )

    def _admin(self) -> AdminTool:
        return AdminTool(dict(self.config.options), self.host, self.port, self.describe())

    def _backup_offline(self, sink: StreamSink) -> BackupMeta:
        admin = self._admin()
        admin.require_stopped()
        version = admin.version()
        admin.dump(self.database or "neo4j", sink)
        log.info("offline Neo4j snapshots carry no fingerprint: verify cannot compare them")
        return BackupMeta(server_version=version, tool="neo4j-admin database dump",
                          tool_version=version, fingerprint=None,
                          options={"mode": "offline", "database": self.database or "neo4j",
                                   "neo4j_home": str(admin.home)})  # fmt: skip

    # -- restore -----------------------------------------------------------------

    def restore(self, source: StreamSource, options: RestoreOptions) -> None:
        names = source.stream_names()
        if "dump" in names:
            if self.mode != "offline":
                raise UsageError("this snapshot is a neo4j-admin dump: restore it with "
                                 "options.mode: offline and the target's neo4j_home")  # fmt: skip
            if options.tables:
                raise UsageError("a neo4j-admin dump restores whole; --table needs a logical "
                                 "snapshot")  # fmt: skip
            self._admin().load(self.database or "neo4j", source.open_stream("dump"),
                               overwrite=options.clean)  # fmt: skip
            return
        if not {"schema", "graph", "summary"} <= set(names):
            raise EngineError(f"not a Neo4j snapshot (streams: {', '.join(names)})")
        with self._driver() as driver:
            restore = GraphRestore(driver, self.database, self.describe(), self._error,
                                   int(self._option("batch_size", 5000)))  # fmt: skip
            restore.run(source.open_stream, options)

    # -- fingerprint -------------------------------------------------------------

    def fingerprint(self, tables: tuple[str, ...] = ()) -> dict[str, Any]:
        try:
            with (self._driver() as driver, self._read(driver) as session,
                  session.begin_transaction() as tx):  # fmt: skip
                return live_fingerprint(tx, tables)
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as exc:
            raise self._error(exc, "Neo4j fingerprint failed") from None


def _version(tx: neo4j.Transaction) -> tuple[str, str]:
    record = tx.run(COMPONENTS).single()
    if record is None:
        raise EngineError("dbms.components() returned nothing")
    return str(record["v"]), str(record["e"])
