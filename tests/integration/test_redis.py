"""The Redis engine against the real test server (scripts/test-servers.sh)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.redis import RedisEngine
from dbfleet.engines.redis.keys import glob_regex
from dbfleet.engines.registry import engine_for
from dbfleet.errors import EngineError, UsageError
from dbfleet.operations.common import SnapshotSource
from dbfleet.repo import Repository, Snapshot, iter_stream
from tests.integration.conftest import BackupFn
from tests.integration.fixtures_redis import (
    REDIS_APP_PASSWORD_ENV,
    REDIS_PASSWORD_ENV,
    RedisDb,
    RedisInstance,
    RedisServer,
)

pytestmark = pytest.mark.redis

NewDb = Callable[[], int]


def _engine(config: Any) -> RedisEngine:
    engine = engine_for(config)
    assert isinstance(engine, RedisEngine)
    return engine


def _restore(repo: Repository, snapshot: Snapshot, config: Any, **options: Any) -> RedisEngine:
    engine = _engine(config)
    engine.restore(SnapshotSource(repo, snapshot), RestoreOptions(**options))
    return engine


def _values(client: redis.Redis) -> dict[bytes, Any]:
    """Every key's type and value, read with the type's own commands."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        value: Any
        if kind == b"string":
            value = client.get(key)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"set":
            value = client.smembers(key)
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = client.xrange(key)
        out[key] = (kind, value, client.ttl(key) > 0)
    return out


def test_logical_round_trip(
    redis_source: RedisDb, redis_dbs: NewDb, repo: Repository, backup: BackupFn
) -> None:
    engine = _engine(redis_source.config)
    meta, snapshot = backup(engine)
    fingerprint = meta.fingerprint
    assert fingerprint is not None
    tables = fingerprint["tables"]
    assert tables["user:*"]["rows"] == 200 + 20 + 1  # hashes, carts, user:big
    assert tables["user:*"]["volatile"] == 1
    assert tables["session:*"] == {**tables["session:*"], "rows": 50, "volatile": 50}
    assert {"(root)", "board:*", "odd\\*name:*", "bin:*", "events:*"} <= set(tables)
    assert set(fingerprint["types"]) == {"string", "hash", "list", "set", "zset", "stream"}
    assert [s.name for s in snapshot.streams] == ["keys"]
    assert meta.tool == "redis-py" and meta.server_version and meta.options["mode"] == "logical"
    assert meta.options["keys"] == sum(t["rows"] for t in tables.values())

    target = _restore(repo, snapshot, engine.target(str(redis_dbs())))
    assert compare_fingerprints(fingerprint, target.fingerprint()) == []
    with redis_source.client() as src, target_client(target) as dst:
        assert _values(dst) == _values(src)
        assert dst.xinfo_groups("events:stream")[0]["pending"] == 2  # groups travel too
        assert 3500 < dst.ttl("session:0004") <= 3600  # the TTL it had, counted from now


@contextmanager
def target_client(engine: RedisEngine) -> Iterator[redis.Redis]:
    loc = engine.location
    client = redis.Redis(
        host=loc.host, port=loc.port, db=loc.db, password=os.environ[REDIS_PASSWORD_ENV]
    )
    try:
        yield client
    finally:
        client.close()


def test_fingerprint_describes_the_stream_under_concurrent_writes(
    redis_source: RedisDb, redis_dbs: NewDb, repo: Repository, backup: BackupFn
) -> None:
    with redis_source.client() as client:
        client.mset({f"bulk:{i}": i for i in range(20000)})
    stop = threading.Event()
    writes = [0]

    def writer() -> None:
        with redis_source.client() as client:
            while not stop.is_set():
                n = writes[0]
                client.incr(f"bulk:{n % 20000}")
                client.set(f"new:{n}", n)
                client.delete(f"bulk:{(n * 7) % 20000}")
                writes[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while writes[0] < 5:
            time.sleep(0.001)
        before = writes[0]
        meta, snapshot = backup(_engine(redis_source.config))
        during = writes[0] - before
    finally:
        stop.set()
        thread.join()
    assert during > 0, "the writer made no change while the backup ran"
    assert meta.fingerprint is not None
    live = _engine(redis_source.config).fingerprint()
    assert compare_fingerprints(meta.fingerprint, live) != []  # the source moved on
    target = _restore(repo, snapshot, redis_source.server.config(redis_dbs()))
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == []


def test_restore_over_existing_keys(
    redis_source: RedisDb, redis_dbs: NewDb, repo: Repository, backup: BackupFn
) -> None:
    meta, snapshot = backup(_engine(redis_source.config))
    assert meta.fingerprint is not None
    config = redis_source.server.config(redis_dbs())
    target = _restore(repo, snapshot, config)
    with target_client(target) as client:
        client.set("counter", "changed")
        client.delete("tags")
        client.set("extra", "not in the backup")
        changed = _values(client)
        with pytest.raises(EngineError, match="already exist.*nothing was restored"):
            _restore(repo, snapshot, config)
        assert _values(client) == changed

        keep = config.with_changes(options={"on_existing": "keep"})
        _restore(repo, snapshot, keep)  # fills in what is missing, keeps the rest
        assert client.get("counter") == b"changed" and client.scard("tags") == 3

        _restore(repo, snapshot, config, clean=True)
        assert client.get("counter") == b"12345" and client.get("extra")
    # Only the extra key differs: it is in (root) and a string.
    differences = compare_fingerprints(meta.fingerprint, target.fingerprint())
    assert [d.split(":")[0] for d in differences] == ["(root)", "types"]
    rows = meta.fingerprint["tables"]["(root)"]["rows"]
    assert f"rows {rows} != {rows + 1}" in differences[0]


def test_restore_of_key_patterns(
    redis_source: RedisDb, redis_dbs: NewDb, repo: Repository, backup: BackupFn
) -> None:
    engine = _engine(redis_source.config)
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    for tables in [("user:*",), ("(root)",), ("odd\\*name:*", "board:*")]:
        target = _restore(repo, snapshot, engine.target(str(redis_dbs())), tables=tables)
        restored = target.fingerprint()
        assert set(restored["tables"]) == set(tables)
        assert compare_fingerprints(meta.fingerprint, restored, tables) == []

    # Any glob: its fingerprint is keyed by the pattern.
    target = _restore(repo, snapshot, engine.target(str(redis_dbs())), tables=("user:1?",))
    assert target.fingerprint()["tables"]["user:*"]["rows"] == 10  # user:10 .. user:19
    assert target.fingerprint(("user:1?",)) == engine.fingerprint(("user:1?",))

    empty = engine.target(str(redis_dbs()))
    with pytest.raises(UsageError, match="no key in the backup matches 'nope:\\*'"):
        _restore(repo, snapshot, empty, tables=("user:*", "nope:*"))
    assert _engine(empty).fingerprint()["tables"] == {}  # nothing was written


def test_absolute_ttls_skip_expired_keys(
    redis_server: RedisServer, redis_dbs: NewDb, repo: Repository, backup: BackupFn
) -> None:
    source = redis_server.config(redis_dbs())
    with redis_server.client(_engine(source).location.db) as client:
        client.set("short:1", "a", px=300)
        client.set("long:1", "b", ex=3600)
    meta, snapshot = backup(_engine(source))
    time.sleep(0.4)
    absolute = redis_server.config(redis_dbs(), options={"restore_ttl": "absolute"})
    target = _restore(repo, snapshot, absolute)
    with target_client(target) as client:
        assert client.get("short:1") is None and client.get("long:1") == b"b"
    relative = _restore(repo, snapshot, redis_server.config(redis_dbs()))
    with target_client(relative) as client:
        assert client.get("short:1") == b"a" and 0 < client.pttl("short:1") <= 300
    assert meta.fingerprint is not None
    assert compare_fingerprints(meta.fingerprint, relative.fingerprint()) == []


def _rdb_bytes(repo: Repository, snapshot: Snapshot) -> bytes:
    return b"".join(iter_stream(repo, snapshot, "rdb"))


def test_rdb_mode_restores_a_new_instance(
    redis_source: RedisDb,
    redis_dbs: NewDb,
    repo: Repository,
    backup: BackupFn,
    redis_instance: Callable[[Path], RedisInstance],
    tmp_path: Path,
) -> None:
    other_db = redis_dbs()
    with redis_source.server.client(other_db) as client:
        client.set("elsewhere", "in another database")
        client.set("gone", "x", px=1)  # expired by the time of the fork
    time.sleep(0.01)
    engine = _engine(redis_source.config.with_changes(options={"mode": "rdb"}))
    meta, snapshot = backup(engine)
    fingerprint = meta.fingerprint
    assert fingerprint is not None and meta.tool == "redis-cli --rdb"
    assert [s.name for s in snapshot.streams] == ["rdb"]
    data = _rdb_bytes(repo, snapshot)
    assert data.startswith(b"REDIS0") and data[-9] == 0xFF  # exactly the RDB, no EOF mark
    assert meta.consistency_point and meta.consistency_point["repl_offset"] >= 0
    assert fingerprint["databases"][str(other_db)]["rows"] == 1
    # The RDB and a logical backup fingerprint the database the same way.
    logical = _engine(redis_source.config).fingerprint()
    assert compare_fingerprints(logical, fingerprint, tuple(logical["tables"])) == []

    path = tmp_path / "new" / "dump.rdb"
    target = _restore(repo, snapshot, engine.target(str(path)))
    assert path.read_bytes() == data and path.stat().st_mode & 0o777 == 0o600
    assert compare_fingerprints(fingerprint, target.fingerprint()) == []  # loaded on the side
    with pytest.raises(EngineError, match="exists"):
        _restore(repo, snapshot, engine.target(str(path)))

    instance = redis_instance(path)
    with pytest.raises(EngineError, match="redis-server .* runs in"):
        _restore(repo, snapshot, engine.target(str(path)), clean=True)
    started = _engine(
        engine.config.with_changes(
            url=f"{instance.url.rsplit('/', 1)[0]}/{redis_source.db}", password_env=None
        )
    )
    assert compare_fingerprints(fingerprint, started.fingerprint()) == []
    with instance.client(redis_source.db) as client:
        assert client.hget("user:7", "name") == b"user 7"

    with pytest.raises(EngineError, match="whole instance"):
        _restore(repo, snapshot, engine.target(str(redis_dbs())))
    with pytest.raises(UsageError, match="logical snapshot"):
        _restore(repo, snapshot, engine.target(str(path)), tables=("user:*",))


def test_rdb_mode_is_a_point_in_time(
    redis_source: RedisDb, repo: Repository, backup: BackupFn
) -> None:
    stop = threading.Event()
    writes = [0]

    def writer() -> None:
        with redis_source.client() as client:
            while not stop.is_set():
                client.hincrby(f"user:{writes[0] % 200 + 1}", "n", 1)
                writes[0] += 1

    config = redis_source.config.with_changes(options={"mode": "rdb"})
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while writes[0] < 5:
            time.sleep(0.001)
        meta, snapshot = backup(_engine(config))
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert meta.fingerprint is not None
    assert compare_fingerprints(meta.fingerprint, _engine(config).fingerprint()) != []
    scratch = _engine(_engine(config).scratch("pit"))
    try:
        scratch.restore(SnapshotSource(repo, snapshot), RestoreOptions(clean=True))
        assert compare_fingerprints(meta.fingerprint, scratch.fingerprint()) == []
    finally:
        scratch.drop()
    assert not Path(scratch.location.path).parent.exists()


def test_rdb_backup_failures_are_the_tools_and_record_nothing(
    redis_source: RedisDb, repo: Repository, backup: BackupFn
) -> None:
    server = redis_source.server
    assert server.app_url, "the test server has an ACL user without SYNC"
    app = redis_source.config.with_changes(
        url=server.app_url, password_env=REDIS_APP_PASSWORD_ENV, options={"mode": "rdb"}
    )
    with pytest.raises(EngineError, match="redis-cli exited with status 1.*NOPERM.*sync"):
        backup(_engine(app))
    assert _engine(app.with_changes(options={})).health().ok  # it may read, not replicate

    # The connection dies mid-transfer: redis-cli fails, nothing is recorded.
    with server.client() as admin:
        admin.config_set("rdb-key-save-delay", 5000)  # microseconds per key: a slow fork
        killer = threading.Timer(0.3, lambda: admin.client_kill_filter(_type="replica"))
        try:
            killer.start()
            with pytest.raises(EngineError, match="redis-cli exited with status 1: .*(I/O|bulk)"):
                backup(_engine(redis_source.config.with_changes(options={"mode": "rdb"})))
        finally:
            killer.cancel()
            killer.join()
            admin.config_set("rdb-key-save-delay", 0)
    assert repo.list_snapshots() == []


def test_wrong_password_is_reported_without_the_password(
    redis_source: RedisDb, repo: Repository, backup: BackupFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "not-the-password-5c1e"
    monkeypatch.setenv("DBFLEET_TEST_WRONG_PW", wrong)
    for mode in ("logical", "rdb"):
        config = redis_source.config.with_changes(
            password_env="DBFLEET_TEST_WRONG_PW", options={"mode": mode}
        )
        with pytest.raises(EngineError) as failure:
            backup(_engine(config))
        message = str(failure.value)
        assert wrong not in message and "\n" not in message
        assert "WRONGPASS" in message or "invalid username-password" in message
        assert "$DBFLEET_TEST_WRONG_PW" in message
    health = _engine(config).health()
    assert not health.ok and health.error and wrong not in health.error
    assert repo.list_snapshots() == []


@contextmanager
def _watch_command_lines(secret: bytes) -> Iterator[dict[str, Any]]:
    seen: dict[str, Any] = {"leaks": [], "tools": set()}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        argv = f.read()
                except OSError:
                    continue
                if secret in argv:
                    seen["leaks"].append(argv.replace(b"\0", b" ").decode(errors="replace"))
                seen["tools"].add(
                    os.path.basename(argv.split(b"\0", 1)[0].decode(errors="replace"))
                )

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def test_password_never_appears_in_a_command_line(
    redis_source: RedisDb, repo: Repository, backup: BackupFn
) -> None:
    password = os.environ[REDIS_PASSWORD_ENV].encode()
    with redis_source.client() as admin:
        admin.config_set("rdb-key-save-delay", 100)  # keep redis-cli alive for the poller
        try:
            with _watch_command_lines(password) as seen:
                backup(_engine(redis_source.config.with_changes(options={"mode": "rdb"})))
                backup(_engine(redis_source.config))
        finally:
            admin.config_set("rdb-key-save-delay", 0)
    assert seen["leaks"] == []
    assert "redis-cli" in seen["tools"], "the poller never saw redis-cli running"


def test_health(redis_source: RedisDb) -> None:
    health = _engine(redis_source.config).health()
    assert health.ok, health.error
    with redis_source.client() as client:
        info = client.info("server")
        keys = client.dbsize()
    assert health.version == info["redis_version"]
    assert health.size_bytes and health.size_bytes > 100_000
    details = health.details
    assert details["keys"] == keys and details["expires"] == 51
    assert details["role"] == "master" and details["connected_clients"] >= 1
    assert details["rdb_last_bgsave_status"] == "ok"
    assert "hit_ratio" in details and "replica_lag_seconds" in details


def test_targets_scratch_and_drop(redis_source: RedisDb, redis_dbs: NewDb) -> None:
    engine = _engine(redis_source.config)
    assert engine.target("7").url.endswith("/7")  # type: ignore[union-attr]
    assert engine.target("redis://10.0.0.1:6390/2").url == "redis://10.0.0.1:6390/2"
    assert engine.target("/srv/redis/dump.rdb").url == (
        f"rdb:///srv/redis/dump.rdb?db={redis_source.db}"
    )
    with pytest.raises(UsageError):
        engine.target("not a target")
    scratch = _engine(engine.scratch("verify_abc"))
    db = scratch.location.db
    assert db not in (0, redis_source.db) and scratch.config.password_env == REDIS_PASSWORD_ENV
    with redis_source.server.client(db) as client:
        client.set("x", 1)
        assert _engine(engine.scratch("again")).location.db != db  # only empty ones
        scratch.drop()
        assert client.dbsize() == 0
    with pytest.raises(UsageError, match="database 0"):
        _engine(engine.target("0")).drop()
    fixed = _engine(redis_source.config.with_changes(options={"scratch_db": 13}))
    assert _engine(fixed.scratch("v")).location.db == 13
    with pytest.raises(UsageError, match="unknown redis option"):
        _engine(redis_source.config.with_changes(options={"mdoe": "rdb"}))
    with pytest.raises(UsageError, match="mode must be one of"):
        _engine(redis_source.config.with_changes(options={"mode": "aof"}))


def test_damaged_keys_stream_is_never_restored(
    redis_source: RedisDb, redis_dbs: NewDb, repo: Repository, backup: BackupFn
) -> None:
    _, snapshot = backup(_engine(redis_source.config))
    whole = b"".join(iter_stream(repo, snapshot, "keys"))

    class Truncated:
        def stream_names(self) -> list[str]:
            return ["keys"]

        def open_stream(self, name: str) -> Iterator[bytes]:
            yield whole[: len(whole) - 5]

    target = _engine(redis_source.server.config(redis_dbs()))
    with pytest.raises(EngineError, match="truncated"):
        target.restore(Truncated(), RestoreOptions(tables=("user:*",)))
    assert target.fingerprint()["tables"] == {}


def test_glob_patterns_match_what_redis_matches(
    redis_server: RedisServer, redis_dbs: NewDb
) -> None:
    keys = [b"user:1", b"user:12", b"user:", b"a*b:1", b"a\\b", b"x-y", b"[x]", b"a]b",
            b"h\xffllo", b"ab", b"b", b"-", b"\\", b"a^b"]  # fmt: skip
    patterns = [b"user:*", b"user:?", b"user:1[0-9]", b"a\\*b:*", b"*\\\\*", b"[a-c]*",
                b"[^a]*", b"[c-a]b", b"*]*", b"[x-]", b"\\[x\\]", b"h?llo", b"[]x]", b"*",
                b"[^]", b"a[\\^]b", b"a[", b"x[-]y"]  # fmt: skip
    with redis_server.client(redis_dbs()) as client:
        client.mset(dict.fromkeys(keys, b"1"))
        for pattern in patterns:
            server = set(client.scan_iter(match=pattern, count=1000))
            ours = {k for k in keys if glob_regex(pattern).match(k)}
            assert ours == server, pattern


def test_reads_without_scripting_and_with_big_values(
    redis_source: RedisDb,
    repo: Repository,
    backup: BackupFn,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The fast path is a Lua script per batch; the same data comes out of
    MULTI (users without @scripting) and of the size guards (values read
    alone, batches cut short)."""
    from dbfleet.engines.redis import logical as redis_logical

    expected = _engine(redis_source.config).fingerprint()
    alone: list[int] = []
    multi = redis_logical._BatchReader._multi

    def counted(reader: Any, keys: list[bytes]) -> Iterator[Any]:
        alone.append(len(keys))
        return multi(reader, keys)

    monkeypatch.setattr(redis_logical._BatchReader, "_multi", counted)
    monkeypatch.setattr(redis_logical, "BIG_VALUE", 2000)  # user:big, blob:text, queue:jobs...
    monkeypatch.setattr(redis_logical, "BATCH_BUDGET", 20_000)  # a few keys per call
    meta, _ = backup(_engine(redis_source.config))
    assert meta.fingerprint == expected
    assert alone and set(alone) == {1}  # big values, each read alone
    monkeypatch.undo()

    user, password = "noscript", "noscript-test-pw"
    with redis_source.server.client() as admin:
        admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                          commands=["+@all", "-@scripting"])  # fmt: skip
        try:
            monkeypatch.setenv("DBFLEET_TEST_NOSCRIPT_PW", password)
            base = redis_source.server.url.rsplit("/", 1)[0].replace("://", f"://{user}@")
            config = redis_source.config.with_changes(
                url=f"{base}/{redis_source.db}", password_env="DBFLEET_TEST_NOSCRIPT_PW"
            )
            with caplog.at_level("INFO", logger="dbfleet.engines.redis.logical"):
                meta, _ = backup(_engine(config))
            assert meta.fingerprint == expected
            assert "reading keys with MULTI instead of a script" in caplog.text
        finally:
            admin.acl_deluser(user)
