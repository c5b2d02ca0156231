"""The Redis conformance case: a database of the test server filled with every
value type (scripts/test-servers.sh). Redis has no tables: the case's table
is the key namespace ``user:*``, which ``restore --table`` takes as a key
pattern and the fingerprint lists as a table (see dbfleet.engines.redis)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conformance.engine_cases import EngineCase
from tests.integration.fixtures_redis import RedisDb, RedisServer

ENGINE = "redis"


def case(request: pytest.FixtureRequest) -> Iterator[EngineCase]:
    server: RedisServer = request.getfixturevalue("redis_server")
    source: RedisDb = request.getfixturevalue("redis_source")
    new_db: Callable[[], int] = request.getfixturevalue("redis_dbs")

    def mutate() -> None:
        with source.client() as client:
            client.hset("user:1", "name", "renamed")
            client.incr("counter")

    yield EngineCase(
        engine="redis",
        source=source.config,
        table="user:*",
        mutate=mutate,
        # a database number the server does not have
        broken=server.config(new_db()).with_changes(url=server.url.rsplit("/", 1)[0] + "/99"),
    )
