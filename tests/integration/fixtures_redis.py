"""Redis fixtures: the test server of ``scripts/test-servers.sh`` (registered
as a pytest plugin by ``tests/conftest.py``).

``redis_server`` describes the server; ``redis_dbs`` hands out database
numbers (1-12, flushed before and after use; the engine's scratch picks the
highest empty ones); ``redis_source`` is a database filled by ``populate``
with every type, encodings small and large, TTLs, binary keys and a
namespace with glob characters; ``redis_instance`` starts a separate
``redis-server`` on a TCP port of its own ("a new instance").
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from dbfleet.config import DatabaseConfig
from tests.integration.conftest import _load_env_file, _unavailable

REDIS_PASSWORD_ENV = "DBFLEET_TEST_REDIS_PASSWORD"
REDIS_APP_PASSWORD_ENV = "DBFLEET_TEST_REDIS_APP_PASSWORD"
TEST_DBS = range(1, 13)


@dataclass
class RedisServer:
    url: str  # redis://127.0.0.1:port/0
    app_url: str | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    def config(self, db: int, **changes: Any) -> DatabaseConfig:
        base = self.url.rsplit("/", 1)[0]
        changes.setdefault("password_env", REDIS_PASSWORD_ENV)
        return DatabaseConfig(engine="redis", url=f"{base}/{db}", **changes)

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(
            port=self.port, db=db, password=os.environ[REDIS_PASSWORD_ENV], protocol=2
        )


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    if not os.environ.get("DBFLEET_TEST_REDIS_URL"):
        _load_env_file()
    url = os.environ.get("DBFLEET_TEST_REDIS_URL")
    if not url or not os.environ.get(REDIS_PASSWORD_ENV):
        _unavailable("Redis test server not configured (DBFLEET_TEST_REDIS_URL)")
    assert url is not None
    os.environ.setdefault(REDIS_APP_PASSWORD_ENV, "app-test-pw")  # the script's test-only value
    server = RedisServer(url, os.environ.get("DBFLEET_TEST_REDIS_APP_URL"))
    try:
        server.client().ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis test server at {url} unreachable ({exc})")
    return server


@pytest.fixture
def redis_dbs(redis_server: RedisServer) -> Iterator[Callable[[], int]]:
    """Hands out empty database numbers; flushes each of them afterwards."""
    taken: list[int] = []

    def new() -> int:
        for db in TEST_DBS:
            if db not in taken:
                taken.append(db)
                redis_server.client(db).flushdb()
                return db
        raise AssertionError("no free test database")

    yield new
    for db in taken:
        redis_server.client(db).flushdb()


def populate(client: redis.Redis, users: int = 200) -> None:
    """Every type, in small (listpack/intset) and large (hashtable,
    quicklist) encodings; TTLs; binary and glob-character keys."""
    pipe = client.pipeline(transaction=False)
    for i in range(1, users + 1):
        pipe.hset(f"user:{i}", mapping={"name": f"user {i}", "age": 20 + i % 50, "n": i})
        if i % 10 == 0:
            pipe.rpush(f"user:{i}:cart", *[f"item-{j}" for j in range(i % 7 + 1)])
        if i % 4 == 0:
            pipe.set(f"session:{i:04d}", os.urandom(16).hex(), ex=3600)
    pipe.hset("user:big", mapping={f"field{j}": f"value {j} " * 5 for j in range(600)})
    pipe.expire("user:3", 7200)
    pipe.set("counter", 12345)
    pipe.set("negative", -987654321)
    pipe.set("blob:text", "lorem ipsum " * 20000)  # LZF-compressed in DUMP/RDB
    pipe.set(b"bin:\xff\x00\x01", b"\x00\xff" * 50)
    pipe.sadd("ids", 1, 2, 3, 1000, -5)  # intset
    pipe.sadd("tags", "red", "green", "blue")
    pipe.sadd("tags:many", *[f"t{j}" for j in range(300)])
    pipe.zadd("board:global", {f"p{j}": j * 1.5 for j in range(50)})
    pipe.zadd("board:big", {f"p{j}": -j / 7 for j in range(400)})
    pipe.rpush("queue:jobs", *[f"job-{j}" for j in range(2000)])
    pipe.set("odd*name:1", "glob characters in the namespace")
    for j in range(30):
        pipe.xadd("events:stream", {"kind": "click", "n": j})
    pipe.xadd("events:stream", {"other": "fields"})
    pipe.execute()
    first = cast(list[tuple[bytes, Any]], client.xrange("events:stream", count=1))
    client.xdel("events:stream", first[0][0])
    client.xgroup_create("events:stream", "readers", id="0")
    client.xreadgroup("readers", "c1", {"events:stream": ">"}, count=2)


@dataclass
class RedisDb:
    db: int
    config: DatabaseConfig
    server: RedisServer

    def client(self) -> redis.Redis:
        return self.server.client(self.db)


@pytest.fixture
def redis_source(redis_server: RedisServer, redis_dbs: Callable[[], int]) -> RedisDb:
    db = redis_dbs()
    with redis_server.client(db) as client:
        populate(client)
    return RedisDb(db, redis_server.config(db), redis_server)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RedisInstance:
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, protocol=2)


@pytest.fixture
def redis_instance(tmp_path: Path) -> Iterator[Callable[[Path], RedisInstance]]:
    """Start a new ``redis-server`` (no password, TCP on 127.0.0.1) whose
    data file is the given path; stopped afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not installed")
    assert binary is not None
    procs: list[subprocess.Popen[bytes]] = []

    def start(rdb_file: Path) -> RedisInstance:
        port = _free_port()
        argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(rdb_file.parent),
                "--dbfilename", rdb_file.name, "--save", "", "--appendonly", "no",
                "--logfile", str(tmp_path / f"redis-{port}.log")]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        instance = RedisInstance(port, rdb_file.parent)
        deadline = time.monotonic() + 20
        while True:
            try:
                instance.client().ping()
                return instance
            except (redis.ConnectionError, redis.BusyLoadingError):
                assert proc.poll() is None, (tmp_path / f"redis-{port}.log").read_text()
                assert time.monotonic() < deadline, "the new redis-server did not start"
                time.sleep(0.05)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
