"""The PostgreSQL conformance case: the rich schema of the integration tests
on the real test server (scripts/test-servers.sh)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.engine_cases import EngineCase
from tests.integration.conftest import PgServer, create_rich_database

ENGINE = "postgresql"


def case(request: pytest.FixtureRequest) -> Iterator[EngineCase]:
    server: PgServer = request.getfixturevalue("pg_server")
    new_name: Any = request.getfixturevalue("pg_databases")
    name = new_name("conf")
    create_rich_database(server, name)

    def mutate() -> None:
        with server.connect(name) as conn:
            conn.execute("UPDATE sales.orders SET amount = amount + 1 WHERE id <= 10")

    yield EngineCase(
        engine="postgresql",
        source=server.config(name),
        table="sales.orders",
        mutate=mutate,
        broken=server.config(new_name("missing")),
    )
