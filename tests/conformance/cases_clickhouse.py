"""The ClickHouse conformance case: the sample database of the integration
tests (several engines, views, materialized views) on the real test server
(scripts/servers/clickhouse.sh). ``table`` is a MergeTree table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.engine_cases import EngineCase
from tests.integration.fixtures_clickhouse import (
    ClickHouseServer,
    create_sample_database,
    insert_events,
)

ENGINE = "clickhouse"


def case(request: pytest.FixtureRequest) -> Iterator[EngineCase]:
    server: ClickHouseServer = request.getfixturevalue("ch_server")
    new_name: Any = request.getfixturevalue("ch_databases")
    name = new_name("conf")
    create_sample_database(server, name)

    def mutate() -> None:
        insert_events(server, name, 10**6, 10)

    yield EngineCase(
        engine=ENGINE,
        source=server.config(name),
        table="events",
        mutate=mutate,
        broken=server.config(new_name("missing")),
    )
