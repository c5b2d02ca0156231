"""PgBouncer (Debian's package, scripts/servers/pgbouncer.sh) in front of
the PostgreSQL test server: client connections through it show in the
sample; a full pool shows waiting clients; backup/verify/drill refuse it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

from dbfleet.config import DatabaseConfig
from dbfleet.engines.base import HealthSample
from dbfleet.engines.registry import engine_for, health_sampler
from dbfleet.errors import UsageError
from tests.integration.conftest import _load_env_file

_load_env_file()
URL = os.environ.get("DBFLEET_TEST_PGBOUNCER_URL")
PASSWORD_ENV = "DBFLEET_TEST_PGBOUNCER_PASSWORD"
if not URL:
    if os.environ.get("CI"):
        raise RuntimeError("CI starts PgBouncer: scripts/test-servers.sh start pgbouncer")
    pytest.skip("no PgBouncer: scripts/test-servers.sh start pgbouncer", allow_module_level=True)
POOL_SIZE = int(os.environ.get("DBFLEET_TEST_PGBOUNCER_POOL_SIZE", "5"))
CONFIG = DatabaseConfig(engine="pgbouncer", url=URL, password_env=PASSWORD_ENV)


def _sample() -> HealthSample:
    return health_sampler("pool", CONFIG).sample(5)


def _client(dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
    parts = urlsplit(URL or "")
    return psycopg.connect(host=parts.hostname, port=parts.port, user=parts.username,
                           password=os.environ[PASSWORD_ENV], dbname=dbname,
                           autocommit=True, connect_timeout=5)  # fmt: skip


def _postgres_pool(sample: HealthSample) -> dict[str, object]:
    assert sample.pool is not None
    (pool,) = [p for p in sample.pool["per_pool"] if p["database"] == "postgres"]
    return pool


@pytest.fixture
def clients() -> Iterator[list[psycopg.Connection[tuple[object, ...]]]]:
    opened: list[psycopg.Connection[tuple[object, ...]]] = []
    yield opened
    for conn in opened:
        conn.close()


def test_client_connections_show_in_the_sample(clients: list[psycopg.Connection]) -> None:
    before = _sample()
    assert before.up, before.error
    assert before.version and before.version.startswith("PgBouncer")
    assert before.connections is not None and before.connections >= 1  # the sampler itself
    assert before.connections_max == 100
    for _ in range(3):
        conn = _client()
        conn.execute("SELECT 1")  # session pooling: now bound to a server connection
        clients.append(conn)
    during = _sample()
    pool = _postgres_pool(during)
    assert pool["clients_active"] == 3 and pool["clients_waiting"] == 0
    assert pool["servers_active"] == 3 and pool["pool_size"] == POOL_SIZE
    assert during.connections == (before.connections or 0) + 3
    assert during.pool is not None and during.pool["clients_active"] >= 3
    assert during.size_bytes is None and during.cache_hits_total is None
    assert during.extra["queries_total"] >= before.extra["queries_total"] + 3


def test_a_full_pool_has_waiting_clients(clients: list[psycopg.Connection]) -> None:
    for _ in range(POOL_SIZE):
        conn = _client()
        conn.execute("SELECT 1")
        clients.append(conn)
    waiters = [_client() for _ in range(2)]  # logged in, no server connection yet
    clients.extend(waiters)
    done: list[float] = []
    threads = [threading.Thread(target=lambda c=c: done.append(c.execute("SELECT 1").fetchone()[0]))
               for c in waiters]  # fmt: skip
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while True:
        pool = _postgres_pool(_sample())
        if pool["clients_waiting"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert pool["clients_waiting"] == 2
    assert pool["servers_active"] == POOL_SIZE
    time.sleep(1.1)
    pool = _postgres_pool(_sample())
    assert isinstance(pool["max_wait_seconds"], float) and pool["max_wait_seconds"] >= 1
    for conn in clients[:POOL_SIZE]:
        conn.close()  # frees the servers: the waiters run
    for thread in threads:
        thread.join(10)
    assert done == [1, 1]
    assert _postgres_pool(_sample())["clients_waiting"] == 0


def test_a_closed_port_and_a_wrong_password(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = health_sampler("pool", CONFIG.with_changes(
        url="postgresql://dbfleet@127.0.0.1:1/pgbouncer")).sample(2)  # fmt: skip
    assert not closed.up and closed.error and "\n" not in closed.error
    monkeypatch.setenv("DBFLEET_TEST_HEALTH_WRONG", "wrong-pgbouncer-Secret-91")
    wrong = health_sampler("pool", CONFIG.with_changes(
        password_env="DBFLEET_TEST_HEALTH_WRONG")).sample(5)  # fmt: skip
    assert not wrong.up and wrong.error and "wrong-pgbouncer-Secret-91" not in wrong.error
    assert os.environ[PASSWORD_ENV] not in wrong.error


def test_it_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="connection pool, not a database"):
        engine_for(CONFIG)
    inventory = tmp_path / "dbfleet.yaml"
    inventory.write_text(yaml.safe_dump({
        "repositories": {"main": {"url": f"file://{tmp_path}/repo"}},
        "databases": {"pool": {"engine": "pgbouncer", "url": URL, "password_env": PASSWORD_ENV}},
    }))  # fmt: skip

    def dbfleet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dbfleet", "--config", str(inventory), *args],
            capture_output=True, text=True, timeout=60, check=False,
            env=os.environ | {"DBFLEET_PASSPHRASE": "pgbouncer-test"},
        )  # fmt: skip

    assert dbfleet("repo", "init", "main").returncode == 0
    commands = (["backup", "pool"], ["verify", "pool"], ["drill", "pool"],
                ["restore", "pool:latest", "--target", "copy"])  # fmt: skip
    for command in commands:
        proc = dbfleet(*command)
        assert proc.returncode == 2, (command, proc.stderr)
        assert "connection pool, not a database" in proc.stderr
        assert "Traceback" not in proc.stderr
    proc = dbfleet("backup", "--all")
    assert proc.returncode == 2 and "no databases to back up" in proc.stderr
    proc = dbfleet("health")
    assert proc.returncode == 0, proc.stderr
    assert "pool" in proc.stdout and "clients_active" in proc.stdout
    proc = dbfleet("config", "check")
    assert proc.returncode == 0, proc.stderr
