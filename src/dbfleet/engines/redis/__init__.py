"""Redis: one logical database (``redis://host:port/<db>``) or a whole instance.

Locations
    ``redis://[user@]host[:port][/db]`` (ACL user in the userinfo, password
    from ``password_env``/``password_file``), ``unix://[user@]/path.sock?db=N``,
    and ``rdb:///path/to/dump.rdb[?db=N]``: an RDB file, the data of a stopped
    or new server (``db`` says which database the fingerprint's tables cover).

Backup, ``options.mode``
    ``logical`` (default): ``SCAN`` the database; per batch of keys one
    read-only Lua script (``MULTI``/``EXEC`` where scripting is forbidden or
    Redis < 7) returns each key's ``PEXPIRETIME`` and ``DUMP``, written as
    the ``keys`` stream (format: :mod:`dbfleet.engines.redis.keys`).
    Works wherever a client may read (managed services that forbid
    replication too), covers exactly the url's database and restores online.
    *Not a point-in-time copy*: each batch is atomic, but keys written while
    the scan runs may or may not be in the backup, and a key deleted and
    re-created during it may be missed (``SCAN``'s guarantee covers keys that
    exist for the whole scan). The fingerprint is computed from the very
    payloads in the stream, so it always describes the backup exactly.
    Memory: one batch, the largest single value, and about 80 bytes per key
    (the set that drops keys ``SCAN`` returns twice).
    ``rdb``: ``redis-cli --rdb -`` fetches a point-in-time snapshot of the
    whole instance (every database, functions) over the replication
    protocol, straight into the ``rdb`` stream. Needs the ``SYNC``/``PSYNC``
    permission (managed services usually refuse it) and costs the server a
    fork; a server with disk-less replication waits
    ``repl-diskless-sync-delay`` (default 5 s) before it forks. The
    fingerprint is computed by parsing the RDB as it streams
    (:mod:`dbfleet.engines.redis.rdb`), leaving out keys that had expired
    when the backup began; the snapshot's replication id and offset are the
    consistency point.
    Logical is the default because the inventory names a database, and only
    logical backups restore into a database of a running server, restore
    key patterns, and verify in a scratch database; choose ``rdb`` for a
    consistent copy of a whole instance.

Restore (into this engine's location)
    * A logical snapshot restores into a running server with pipelined
      ``RESTORE``. Without ``--clean`` it fails, before writing anything, if
      any key to be restored already exists (a first pass checks; skipped
      for an empty database); with ``options.on_existing: keep`` existing
      keys are kept instead (and counted). ``--clean`` replaces the keys the
      backup contains (``RESTORE ... REPLACE``); other keys are left alone.
    * TTLs (``options.restore_ttl``): ``relative`` (default) gives each key
      the time to live it had when the backup started, counted from the
      restore, so every key of the backup comes back; ``absolute`` keeps the
      original expiry times and skips keys that have expired since.
    * ``--table`` takes key patterns (see *tables* below), e.g.
      ``--table 'user:*'``; a pattern that matches no key of the backup fails
      the restore before anything is written.
    * An RDB snapshot restores a whole instance as a file: ``--target
      /var/lib/redis/dump.rdb`` or ``--to rdb:///path/dump.rdb`` (written
      0600 next to the target and renamed into place; an existing file only
      with ``--clean``; refused while a local ``redis-server`` runs in that
      directory). Then start (or restart) the server on it. Keys expire by
      their original times: a server loading the file drops those expired
      since the backup, so verifying an old RDB snapshot of keys with TTLs
      reports them missing (``volatile`` shows how many keys had a TTL).

Tables and fingerprint
    Keys are grouped into tables by namespace: ``user:42`` is in ``user:*``,
    keys without ``options.separator`` (default ``:``) in ``(root)``. The
    fingerprint has per table the key count, an order-independent digest
    over (key, type, canonical value) and the number of keys with a TTL,
    plus the same per type (``types``). Canonical values do not depend on
    the server's internal encoding, so a restored copy digests the same.
    Expiry times are not digested (relative TTLs cannot match). An RDB
    fingerprint adds ``databases`` (count and digest of the other databases).
    Beyond 1000 namespaces the database is one table, ``*``. With patterns
    (``fingerprint(tables=...)``) the entries are keyed by those patterns.

Targets: ``target(name)`` is a database number on the same server, a URL,
or a path to an RDB file. ``scratch()`` is ``options.scratch_db`` or the
highest-numbered empty database other than 0 and the source's (for ``rdb``
mode: an RDB file in a private temporary directory, loaded into a
throw-away ``redis-server`` on a unix socket to fingerprint it). Verify in
a database of the source's server uses that server's memory; point
``scratch:`` at another server for big datasets. ``drop()`` is ``FLUSHDB``
(refused for database 0) or deletes the RDB file.

Options: ``mode``, ``separator``, ``scan_count`` (1000), ``on_existing``,
``restore_ttl``, ``scratch_db``, ``connect_timeout`` (10 s),
``socket_timeout`` (300 s), ``bin_dir`` (where redis-cli/redis-server are).

Secrets: the password reaches redis-cli only as ``REDISCLI_AUTH`` in its
environment (never ``-a``) and redis-py in-process; errors never show it.
Not supported yet: TLS (``rediss://``), Redis Cluster. Values dbfleet
cannot decode (Redis 7.4's hashes with field expiry) are fingerprinted by
their raw bytes in logical mode; an RDB it cannot parse (version 12+) is
stored without a fingerprint (logged), so verify refuses it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, cast

import redis as redis_client
from redis.backoff import NoBackoff
from redis.retry import Retry

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.iterfile import IteratorReader
from dbfleet.engines._shared.process import dump_process, find_tool, run_tool
from dbfleet.engines.base import (
    BackupMeta,
    Capabilities,
    Health,
    RestoreOptions,
    StreamSink,
    StreamSource,
    server_url,
)
from dbfleet.engines.redis.failures import redis_error
from dbfleet.engines.redis.keys import MEDIA_TYPE, FingerprintBuilder
from dbfleet.engines.redis.location import Location, with_db
from dbfleet.engines.redis.logical import LogicalBackup, LogicalRestore, fingerprint_db
from dbfleet.engines.redis.server import health_from_info, server_running_in, throwaway_server
from dbfleet.engines.redis.tap import RdbTap
from dbfleet.errors import EngineError, UsageError
from dbfleet.secrets import secret_from

PACKAGE_HINT = "redis-tools (Debian)"
OPTIONS = {"mode", "separator", "scan_count", "on_existing", "restore_ttl", "scratch_db",
           "connect_timeout", "socket_timeout", "bin_dir"}  # fmt: skip
CHOICES = {
    "mode": ("logical", "rdb"),
    "on_existing": ("fail", "keep"),
    "restore_ttl": ("relative", "absolute"),
}
RDB_MEDIA_TYPE = "application/x-redis-rdb"
SCRATCH_PREFIX = "dbfleet-redis-scratch-"


class RedisEngine:
    name: ClassVar[str] = "redis"
    capabilities: ClassVar[Capabilities] = Capabilities(subset_restore=True, health_sample=True)

    def __init__(self, config: DatabaseConfig) -> None:
        url = server_url(config, "redis", OPTIONS)
        for option, choices in CHOICES.items():
            value = config.options.get(option, choices[0])
            if value not in choices:
                raise UsageError(f"redis option {option} must be one of {', '.join(choices)}")
        self.config = config
        self.location = Location.parse(url)
        self.mode = str(config.options.get("mode", "logical"))
        self.separator = str(config.options.get("separator", ":")).encode()
        if not self.separator:
            raise UsageError("redis option separator must not be empty")

    def _option(self, name: str, default: Any) -> Any:
        return self.config.options.get(name, default)

    # -- locations -------------------------------------------------------

    def target(self, name: str) -> DatabaseConfig:
        if name.isdigit():
            if self.location.kind == "file":
                raise UsageError("the source is an RDB file: give a URL or a file path")
            return self.config.with_changes(url=with_db(self.config.url or "", int(name)))
        if "://" in name:
            Location.parse(name)
            return self.config.with_changes(url=name)
        if "/" in name or name.endswith(".rdb"):
            path = Path(name).expanduser().absolute()
            return self.config.with_changes(
                url=f"rdb://{path}?db={self.location.db}", password_env=None, password_file=None
            )
        raise UsageError(
            f"Redis target {name!r}: give a database number, a URL (redis://...) "
            "or a path to an RDB file"
        )

    def scratch(self, label: str) -> DatabaseConfig:
        if self.mode == "rdb" or self.location.kind == "file":
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", label)
            directory = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{safe}-")
            return self.target(os.path.join(directory, "dump.rdb"))
        db = self._option("scratch_db", None)
        return self.target(str(int(db) if db is not None else self._free_db()))

    def _free_db(self) -> int:
        with self._client() as client:
            info = self._call(client.info, "keyspace")
            try:
                count = int(self._call(client.config_get, "databases").get(b"databases", 16))
            except EngineError:  # CONFIG may be forbidden
                count = 16
        used = {int(name[2:]) for name in info if name.startswith("db")}
        for db in range(count - 1, 0, -1):
            if db != self.location.db and db not in used:
                return db
        raise EngineError(
            f"no empty database on {self.location.describe()} to use as scratch",
            hint="set options.scratch_db or the inventory's scratch:",
        )

    def drop(self) -> None:
        loc = self.location
        if loc.kind == "file":
            path = Path(loc.path)
            path.unlink(missing_ok=True)
            if path.parent.name.startswith(SCRATCH_PREFIX) and path.parent.is_dir():
                shutil.rmtree(path.parent, ignore_errors=True)
            return
        if loc.db == 0:
            raise UsageError("refusing to flush database 0; use another database as scratch")
        with self._client() as client:
            self._call(client.flushdb)

    # -- connections -----------------------------------------------------

    def _password(self) -> str | None:
        return secret_from(self.config.password_env, self.config.password_file)

    def _client(self, db: int | None = None, socket_path: str | None = None) -> redis_client.Redis:
        """A connected client; ``EngineError`` saying what to check."""
        loc = self.location
        kwargs: dict[str, Any] = {
            "db": loc.db if db is None else db,
            "socket_connect_timeout": float(self._option("connect_timeout", 10)),
            "socket_timeout": float(self._option("socket_timeout", 300)),
            "client_name": "dbfleet",
            "protocol": 2,
            "retry": Retry(NoBackoff(), 0),
        }
        if socket_path is not None:
            kwargs["unix_socket_path"] = socket_path
        elif loc.kind == "file":
            raise EngineError(f"{loc.describe()} is an RDB file, not a running server")
        else:
            kwargs["username"] = loc.user
            kwargs["password"] = self._password()
            if loc.kind == "unix":
                kwargs["unix_socket_path"] = loc.path
            else:
                kwargs["host"], kwargs["port"] = loc.host, loc.port
        client = redis_client.Redis(**kwargs)
        try:
            client.ping()
        except redis_client.RedisError as exc:
            client.close()
            raise self._error(exc, "cannot connect to Redis") from None
        return client

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis_client.RedisError as exc:
            raise self._error(exc, "Redis command failed") from None

    def _error(self, exc: BaseException, what: str) -> EngineError:
        return redis_error(exc, what, self._password(), self.config, self.location)

    # -- health ----------------------------------------------------------

    def health(self) -> Health:
        loc = self.location
        if loc.kind == "file":
            path = Path(loc.path)
            if not path.is_file():
                return Health(ok=False, error=f"RDB file {path} does not exist")
            return Health(ok=True, size_bytes=path.stat().st_size, details={"rdb_file": str(path)})
        try:
            with self._client() as client:
                info = self._call(client.info)
        except EngineError as exc:
            return Health(ok=False, error=str(exc))
        return health_from_info(info, loc.db)

    # -- backup ----------------------------------------------------------

    def backup(self, sink: StreamSink) -> BackupMeta:
        if self.location.kind == "file":
            raise EngineError("an RDB file location is a restore target; back up the server")
        with self._client() as client:
            server = self._call(client.info, "server")
            keyspace = self._call(client.info, "keyspace")
            if self.mode == "rdb":
                seconds, micros = self._call(client.time)
                return self._backup_rdb(sink, server, int(seconds) * 1000 + int(micros) // 1000)
            return self._backup_logical(client, sink, server, keyspace)

    def _backup_logical(
        self, client: redis_client.Redis, sink: StreamSink, server: dict[str, Any],
        keyspace: dict[str, Any],
    ) -> BackupMeta:  # fmt: skip
        backup = LogicalBackup(
            client, self.separator, int(self._option("scan_count", 1000)), self._error
        )
        db = self.location.db
        header = {"db": db, "server_version": server.get("redis_version")}
        sink.write_stream("keys", cast(BinaryIO, IteratorReader(backup.pieces(header))), MEDIA_TYPE)
        return BackupMeta(
            server_version=str(server.get("redis_version")),
            tool="redis-py",
            tool_version=redis_client.__version__,
            fingerprint=backup.fingerprint.result(),
            options={
                "mode": "logical",
                "db": db,
                "keys": backup.count,
                "keys_at_start": keyspace.get(f"db{db}", {}).get("keys", 0),
                "rdb_version": backup.rdb_version,
                "separator": self.separator.decode(errors="replace"),
            },
        )

    def _backup_rdb(self, sink: StreamSink, server: dict[str, Any], now_ms: int) -> BackupMeta:
        cli = find_tool("redis-cli", PACKAGE_HINT, self._bin_dirs())
        tool_version = run_tool([cli, "--version"]).strip().removeprefix("redis-cli ")
        argv = [cli, *self._cli_args(), "--rdb", "-"]
        tap = RdbTap(self.location.db, self.separator, expired_before_ms=now_ms)
        try:
            with dump_process(argv, self._cli_env()) as stdout:
                sink.write_stream("rdb", cast(BinaryIO, tap.wrap(stdout)), RDB_MEDIA_TYPE)
        finally:
            tap.close()
        fingerprint = tap.result()  # raises when the RDB was incomplete
        aux = tap.info.aux or {}
        point = None
        if "repl-id" in aux and "repl-offset" in aux:
            point = {"repl_id": aux["repl-id"], "repl_offset": int(aux["repl-offset"])}
        return BackupMeta(
            server_version=str(server.get("redis_version")),
            tool="redis-cli --rdb",
            tool_version=tool_version,
            fingerprint=fingerprint,
            consistency_point=point,
            options={
                "mode": "rdb",
                "db": self.location.db,
                "rdb_version": tap.info.version,
                "separator": self.separator.decode(errors="replace"),
                "ctime": int(aux["ctime"]) if aux.get("ctime", "").isdigit() else None,
            },
        )

    def _bin_dirs(self) -> list[str]:
        bin_dir = self._option("bin_dir", None)
        return [str(bin_dir)] if bin_dir else []

    def _cli_args(self) -> list[str]:
        loc = self.location
        args = ["-s", loc.path] if loc.kind == "unix" else ["-h", loc.host, "-p", str(loc.port)]
        return args + (["--user", loc.user] if loc.user else [])

    def _cli_env(self) -> dict[str, str | None]:
        env: dict[str, str | None] = {"REDISCLI_AUTH": self._password()}
        if self.config.password_env and self.config.password_env != "REDISCLI_AUTH":
            env[self.config.password_env] = None  # the tool reads REDISCLI_AUTH only
        return env

    # -- restore ---------------------------------------------------------

    def restore(self, source: StreamSource, options: RestoreOptions) -> None:
        names = source.stream_names()
        if "keys" in names:
            if self.location.kind == "file":
                raise EngineError(
                    "a logical snapshot restores into a running server, not an RDB file",
                    hint="give a database number or a redis:// URL as target",
                )
            with self._client() as client:
                LogicalRestore(
                    client, self.location.describe(), self.separator, self._error,
                    on_existing=str(self._option("on_existing", "fail")),
                    relative_ttl=self._option("restore_ttl", "relative") == "relative",
                ).run(lambda: source.open_stream("keys"), options)  # fmt: skip
        elif "rdb" in names:
            self._restore_rdb(source, options)
        else:
            raise EngineError("the snapshot has no 'keys' or 'rdb' stream: not a Redis backup")

    def _restore_rdb(self, source: StreamSource, options: RestoreOptions) -> None:
        if options.tables:
            raise UsageError(
                "an RDB snapshot restores whole instances; --table needs a logical snapshot"
            )
        if self.location.kind != "file":
            raise EngineError(
                "an RDB snapshot restores a whole instance as its RDB file",
                hint="restore to a file (--target /path/dump.rdb or --to rdb:///path/dump.rdb) "
                "and start a server on it",
            )
        path = Path(self.location.path)
        if path.exists() and not options.clean:
            raise EngineError(f"{path} exists", hint="pass --clean to replace it")
        pid = server_running_in(path.parent)
        if pid is not None:
            raise EngineError(
                f"redis-server (pid {pid}) runs in {path.parent}: it would overwrite the file",
                hint="stop the server, restore, then start it again",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.dbfleet-restore")
        try:
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in source.open_stream("rdb"):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(staging, path)
        finally:
            staging.unlink(missing_ok=True)

    # -- fingerprint -----------------------------------------------------

    def fingerprint(self, tables: tuple[str, ...] = ()) -> dict[str, Any]:
        if self.location.kind == "file":
            path = Path(self.location.path)
            if not path.is_file():
                raise EngineError(f"RDB file {path} does not exist")
            bin_dirs = self._bin_dirs()
            with throwaway_server(path, bin_dir=bin_dirs[0] if bin_dirs else None) as socket:
                return self._fingerprint(tables, socket, all_dbs=True)
        return self._fingerprint(tables, None, all_dbs=self.mode == "rdb")

    def _fingerprint(
        self, tables: tuple[str, ...], socket: str | None, *, all_dbs: bool
    ) -> dict[str, Any]:
        with self._client(socket_path=socket) as client:
            builder = fingerprint_db(
                client, FingerprintBuilder(self.separator, tables), self._error
            )
            keyspace = self._call(client.info, "keyspace") if all_dbs and not tables else {}
        result = builder.result()
        if not all_dbs or tables:
            return result
        result["databases"] = {}
        for db in sorted(int(name[2:]) for name in keyspace if name.startswith("db")):
            if db != self.location.db:
                with self._client(db=db, socket_path=socket) as client:
                    other = fingerprint_db(client, FingerprintBuilder(self.separator), self._error)
                result["databases"][str(db)] = other.total().entry()
        return result
