"""Every engine's health sampler against its real test server (the
conformance cases: a populated source per engine).

The contract (engines/base.py ``HealthSampler``): a sample of a running
server has plausible readings; a closed port or a wrong password gives
``up=False`` with a one-line error that holds no secret; the sampler never
raises and bounds its time.
"""

from __future__ import annotations

import os
import re
import socket
import time

import pytest

from dbfleet.config import DatabaseConfig
from dbfleet.engines.base import HealthSample
from dbfleet.engines.registry import health_sampler
from tests.conformance.engine_cases import CASES, EngineCase

TIMEOUT = 5.0
# What each engine's server can tell (docs/health.md): the others stay None.
HAS_CONNECTIONS = {"postgresql", "mysql", "redis", "clickhouse", "neo4j"}
HAS_SIZE = {"postgresql", "mysql", "redis", "mongodb", "clickhouse", "influxdb", "sqlite"}
HAS_CACHE = {"postgresql", "mysql", "redis", "clickhouse"}
# The case's mutation reads pages through these engines' caches (ClickHouse's
# mark cache counts reads of MergeTree marks only, which an update may skip;
# Redis counts hits of read commands only, and the mutation only writes)
CACHE_GROWS = {"postgresql", "mysql"}
COUNTERS = ("cache_hits_total", "cache_misses_total", "deadlocks_total", "slow_queries_total")
WRONG_PASSWORD = "dbfleet-health-wrong-Secret-7f3a"


def _sample(config: DatabaseConfig, timeout: float = TIMEOUT) -> HealthSample:
    return health_sampler("case", config).sample(timeout)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _elsewhere(config: DatabaseConfig, port: int) -> DatabaseConfig:
    """``config`` pointing at a port where nothing listens."""
    if config.engine == "sqlite":
        assert config.path is not None
        return config.with_changes(path=config.path.with_name("nothing-here.db"))
    assert config.url is not None
    url = re.sub(
        r"@?(127\.0\.0\.1|localhost):\d+",
        lambda m: f"{m[0][0] if m[0][0] == '@' else ''}127.0.0.1:{port}",
        config.url,
        count=1,
    )
    assert url != config.url, config.url
    return config.with_changes(url=url)


def test_a_running_server_gives_plausible_readings(engine_case: EngineCase) -> None:
    engine = engine_case.engine
    started = time.monotonic()
    sample = _sample(engine_case.source)
    assert time.monotonic() - started < TIMEOUT * 3
    assert sample.up, sample.error
    assert sample.error is None
    assert sample.engine == engine and sample.database == "case"
    assert sample.version
    assert 0 < sample.probe_seconds < TIMEOUT * 3
    if engine in HAS_CONNECTIONS:
        # the sampler's own connection is open while it counts
        assert sample.connections is not None and sample.connections >= 1
    else:
        assert sample.connections is None
    if sample.connections_max is not None:
        assert sample.connections_max >= (sample.connections or 0)
    if engine in HAS_SIZE:
        assert sample.size_bytes is not None and sample.size_bytes > 0, "the case holds data"
    else:
        assert sample.size_bytes is None
    if engine in HAS_CACHE:
        assert sample.cache_hits_total is not None and sample.cache_misses_total is not None
    for name in ("lock_waits", "longest_transaction_seconds", "replication_lag_seconds"):
        value = getattr(sample, name)
        assert value is None or value >= 0, name
    assert sample.is_replica in (None, False), "the test servers are primaries"


def test_counters_never_go_back(engine_case: EngineCase) -> None:
    first = _sample(engine_case.source)
    engine_case.mutate()
    deadline = time.monotonic() + 3
    while True:  # PostgreSQL flushes its statistics up to a second late
        second = _sample(engine_case.source)
        grew = any((getattr(second, c) or 0) > (getattr(first, c) or 0) for c in COUNTERS)
        if grew or engine_case.engine not in CACHE_GROWS or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert second.up and first.up
    for counter in COUNTERS:
        before, after = getattr(first, counter), getattr(second, counter)
        assert (before is None) == (after is None), counter
        if before is not None:
            assert after >= before, counter
    if engine_case.engine in CACHE_GROWS:
        assert grew, "the mutation read or wrote pages: some counter must grow"
    assert second.taken_at > first.taken_at


def test_a_closed_port_is_a_down_sample(engine_case: EngineCase) -> None:
    config = _elsewhere(engine_case.source, _closed_port())
    started = time.monotonic()
    sample = _sample(config, timeout=2)
    assert time.monotonic() - started < 10
    assert not sample.up
    assert sample.error and "\n" not in sample.error
    password = os.environ.get(engine_case.source.password_env or "", "")
    if password:
        assert password not in sample.error
    assert sample.connections is None and sample.size_bytes is None


def test_a_missing_database_is_not_up(engine_case: EngineCase) -> None:
    sample = _sample(engine_case.broken)
    assert not sample.up
    assert sample.error and "\n" not in sample.error


# The engines whose test server checks a password: SQLite has none, the
# Weaviate test server runs without authentication, and FerretDB (the MongoDB
# test server) accepts any password. The test asserts that each listed case
# has one, so the list cannot drift silently.
PASSWORD_CHECKED = sorted(set(CASES) - {"sqlite", "weaviate", "mongodb"})


@pytest.mark.parametrize("engine_case", PASSWORD_CHECKED, indirect=True)
def test_a_wrong_password_is_down_without_the_password(
    engine_case: EngineCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert engine_case.source.password_env, f"{engine_case.engine}: test server without password"
    monkeypatch.setenv("DBFLEET_TEST_HEALTH_WRONG", WRONG_PASSWORD)
    config = engine_case.source.with_changes(password_env="DBFLEET_TEST_HEALTH_WRONG")
    sample = _sample(config)
    assert not sample.up
    assert sample.error and "\n" not in sample.error
    assert WRONG_PASSWORD not in sample.error
    assert os.environ[engine_case.source.password_env] not in sample.error
