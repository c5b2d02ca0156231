"""Generated Redis keyspaces through a real backup and restore (Redis 7 test
server), logical and ``mode: rdb``.

Every type in the encodings Redis picks by size: strings (binary, integers
up to the 64-bit bounds (int-encoded), huge compressible values, empty),
lists (listpack, quicklist), sets (intset, hashtable), hashes (listpack,
hashtable), sorted sets (listpack, skiplist; scores ±inf, -0.0, the double
extremes), streams (deleted entries, consumer groups with pending entries,
an empty stream with a group); TTLs; key names with binary bytes, spaces,
glob characters (``* ? [ ] \\``) and unicode, in several namespaces
(``prefix:``) and none. The restored database is compared with the source
through redis-py (each key's type, value read with the type's own
commands, groups and pending entries, whether it has a TTL), independently
of dbfleet's fingerprint; the fingerprint must agree (equal after the
restore; a changed key shows in exactly its table). A subset restore takes
the first, middle or last namespace (``--table 'prefix:*'``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.redis import RedisEngine
from dbfleet.engines.redis.keys import KeySelector, namespace_table
from tests.conftest import generated_examples
from tests.generated.roundtrip import backed_up, restore_as
from tests.integration.fixtures_redis import RedisInstance, RedisServer

pytestmark = pytest.mark.redis

PREFIXES = [b"user", b"odd*", b"br[ck]", b"q?", b"sp ace", b"\xff\x00bin", b"back\\slash",
            "ünï".encode(), b""]  # fmt: skip
INT64 = (-(2**63), 2**63 - 1)
TTL_MS = 3_600_000

members = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"", b"0", b"-0", b"007", str(INT64[0]).encode(), str(INT64[1]).encode(),
                     b"1.5", b"x" * 70]),
    st.integers(*INT64).map(lambda n: str(n).encode()),
)  # fmt: skip
scores = st.one_of(
    st.sampled_from([math.inf, -math.inf, -0.0, 0.0, 1.7976931348623157e308, 5e-324, 1e20]),
    st.floats(allow_nan=False),
)


def sized(element: st.SearchStrategy[Any], large: int) -> st.SearchStrategy[list[Any]]:
    """Small (compact encodings) or past the compact limits."""
    return st.one_of(st.lists(element, min_size=1, max_size=6),
                     st.lists(element, min_size=large, max_size=large + 20))  # fmt: skip


values = st.one_of(
    st.tuples(st.just("string"), st.one_of(
        st.binary(max_size=30), st.integers(*INT64).map(lambda n: str(n).encode()),
        st.sampled_from([b"", b"lorem ipsum " * 3000, bytes(range(256)) * 4]))),
    st.tuples(st.just("list"), sized(members, 140)),
    st.tuples(st.just("set"), sized(members, 140)),
    st.tuples(st.just("set"), sized(st.integers(*INT64).map(lambda n: str(n).encode()), 520)),
    st.tuples(st.just("hash"), sized(st.tuples(members, members), 140)),
    st.tuples(st.just("zset"), sized(st.tuples(members, scores), 140)),
    st.tuples(st.just("stream"), st.tuples(st.integers(0, 8), st.integers(0, 3), st.booleans())),
)  # fmt: skip


@st.composite
def keyspaces(draw: st.DrawFn) -> dict[bytes, tuple[str, Any, bool]]:
    prefixes = draw(st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=4, unique=True))
    keys: dict[bytes, tuple[str, Any, bool]] = {}
    for prefix in prefixes:
        for _ in range(draw(st.integers(1, 3))):
            name = draw(st.binary(max_size=6).filter(lambda b: b":" not in b) | st.sampled_from(
                [b"*", b"[a-z]", b"?", b" ", "ü".encode(), b"\\"]))  # fmt: skip
            key = prefix + b":" + name if prefix else b"root" + name
            keys[key] = (*draw(values), draw(st.booleans()))
    return keys


# -- building and reading ------------------------------------------------------


def build(client: redis.Redis, keys: dict[bytes, tuple[str, Any, bool]]) -> None:
    for key, (kind, value, ttl) in keys.items():
        if kind == "string":
            client.set(key, value)
        elif kind == "list":
            client.rpush(key, *value)
        elif kind == "set":
            client.sadd(key, *value)
        elif kind == "hash":
            client.hset(key, mapping=dict(value))
        elif kind == "zset":
            client.zadd(key, dict(value))
        else:
            entries, deleted, group = value
            ids = [client.xadd(key, {b"f": str(n).encode(), b"n\x00": b"\xff" * n})
                   for n in range(entries)]  # fmt: skip
            if group or not ids:
                client.xgroup_create(key, "readers", id="0", mkstream=True)
                client.xreadgroup("readers", "c\xfc1", {key: ">"}, count=2)
            if ids[:deleted]:
                client.xdel(key, *ids[:deleted])
        if ttl:
            client.pexpire(key, TTL_MS)


def contents(client: redis.Redis, match: Callable[[bytes], bool] | None = None) -> dict[bytes, Any]:
    """Every key: type, value read with the type's commands, TTL or not
    (pipelined: a sample has thousands of keys)."""
    keys = sorted(k for k in client.scan_iter(count=1000) if match is None or match(k))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    kinds = [kind.decode() for kind in pipe.execute()]
    read = {
        "string": lambda key: pipe.get(key),
        "list": lambda key: pipe.lrange(key, 0, -1),
        "set": lambda key: pipe.smembers(key),
        "hash": lambda key: pipe.hgetall(key),
        "zset": lambda key: pipe.zrange(key, 0, -1, withscores=True),
        "stream": lambda key: pipe.xrange(key),
    }
    for key, kind in zip(keys, kinds, strict=True):
        read[kind](key)
        pipe.pttl(key)
    replies = pipe.execute()
    out: dict[bytes, Any] = {}
    for n, (key, kind) in enumerate(zip(keys, kinds, strict=True)):
        value, ttl = replies[2 * n], replies[2 * n + 1]
        if kind == "set":
            value = sorted(value)
        elif kind == "hash":
            value = sorted(value.items())
        elif kind == "zset":
            value = [(member, repr(score)) for member, score in value]
        elif kind == "stream":
            groups = client.xinfo_groups(key)
            pending = [client.xpending_range(key, g["name"], "-", "+", 100) for g in groups]
            value = (
                value,
                client.xinfo_stream(key)["last-generated-id"],
                [(g["name"], g["last-delivered-id"], g["pending"]) for g in groups],
                [[(p["message_id"], p["consumer"]) for p in group] for group in pending],
            )
        out[key] = (kind, value, ttl > 0)
    return out


def change(client: redis.Redis, key: bytes) -> None:
    """Change one key's value (its type stays)."""
    kind = client.type(key).decode()
    ttl = client.pttl(key)
    {
        "string": lambda: client.append(key, b"!"),
        "list": lambda: client.rpush(key, b"!"),
        "set": lambda: client.sadd(key, b"!new member"),
        "hash": lambda: client.hset(key, b"!new field", b"!"),
        "zset": lambda: client.zadd(key, {b"!new member": 1}),
        "stream": lambda: client.xadd(key, {b"!": b"!"}),
    }[kind]()
    if ttl > 0:
        client.pexpire(key, ttl)


@pytest.fixture
def three_dbs(redis_dbs: Callable[[], int]) -> list[int]:
    """Source, whole restore and subset restore (flushed by each case)."""
    return [redis_dbs() for _ in range(3)]


def _tables(keys: dict[bytes, Any]) -> list[str]:
    return sorted({namespace_table(key, b":") for key in keys})


# -- the round trips -----------------------------------------------------------


@settings(max_examples=generated_examples(12))
@given(keys=keyspaces(), position=st.sampled_from([0, 1, -1]))
@example(keys={b"odd*:[a-z]": ("zset", [(b"m", -math.inf), (b"n", -0.0)], True),
               b"br[ck]:?": ("stream", (0, 0, True), False),
               b"back\\slash:\\": ("set", [b"1", b"-9223372036854775808"], False)},
         position=1)  # fmt: skip
@example(keys={b"\xff\x00bin:": ("string", b"", False)}, position=0)  # not UTF-8: the manifest
def test_redis_logical_round_trip(
    keys: dict[bytes, tuple[str, Any, bool]], position: int, redis_server: RedisServer,
    three_dbs: list[int],
) -> None:  # fmt: skip
    source, whole_db, subset_db = three_dbs
    for db in three_dbs:
        redis_server.client(db).flushdb()
    build(redis_server.client(source), keys)
    repo, snapshot = backed_up(RedisEngine(redis_server.config(source)))
    assert snapshot.fingerprint is not None

    whole = restore_as(RedisEngine, repo, snapshot, redis_server.config(whole_db))
    assert contents(redis_server.client(whole_db)) == contents(redis_server.client(source))
    assert compare_fingerprints(snapshot.fingerprint, whole.fingerprint()) == []

    tables = _tables(keys)
    table = tables[{0: 0, 1: len(tables) // 2, -1: len(tables) - 1}[position]]
    subset = restore_as(RedisEngine, repo, snapshot, redis_server.config(subset_db),
                        tables=(table,))  # fmt: skip
    selector = KeySelector((table,), b":")
    expected = contents(redis_server.client(source), lambda k: bool(selector.matching(k)))
    assert contents(redis_server.client(subset_db)) == expected
    assert compare_fingerprints(snapshot.fingerprint, subset.fingerprint((table,)),
                                (table,)) == []  # fmt: skip

    changed = sorted(keys)[{0: 0, 1: len(keys) // 2, -1: len(keys) - 1}[position]]
    change(redis_server.client(whole_db), changed)
    differences = compare_fingerprints(snapshot.fingerprint, whole.fingerprint())
    named = [d for d in differences if not d.startswith("types: ")]
    assert named == [d for d in named if d.startswith(f"{namespace_table(changed, b':')}: ")]
    assert len(named) == 1, differences


@settings(max_examples=generated_examples(2))
@given(keys=keyspaces())
def test_redis_rdb_round_trip(
    keys: dict[bytes, tuple[str, Any, bool]], redis_server: RedisServer, three_dbs: list[int],
    redis_instance: Callable[[Path], RedisInstance], tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    source = three_dbs[0]
    redis_server.client(source).flushdb()
    build(redis_server.client(source), keys)
    engine = RedisEngine(redis_server.config(source, options={"mode": "rdb"}))
    repo, snapshot = backed_up(engine)
    assert snapshot.fingerprint is not None
    path = tmp_path_factory.mktemp("rdb") / "dump.rdb"
    restored = restore_as(RedisEngine, repo, snapshot, engine.target(str(path)))
    assert compare_fingerprints(snapshot.fingerprint, restored.fingerprint()) == []
    instance = redis_instance(path)
    assert contents(instance.client(source)) == contents(redis_server.client(source))
    logical = RedisEngine(redis_server.config(source)).fingerprint()
    assert logical["tables"] == snapshot.fingerprint["tables"]
