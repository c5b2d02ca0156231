"""The MySQL/MariaDB conformance case: the rich schema of the integration
tests on the MariaDB test server (scripts/test-servers.sh). Tables are plain
table names of the one database an inventory entry names."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conformance.engine_cases import EngineCase
from tests.integration.fixtures_mysql import MySQLServer, create_rich_database

ENGINE = "mysql"


def case(request: pytest.FixtureRequest) -> Iterator[EngineCase]:
    server: MySQLServer = request.getfixturevalue("mysql_server")
    new_name: Callable[[str], str] = request.getfixturevalue("mysql_databases")
    name = new_name("conf")
    create_rich_database(server, name)

    def mutate() -> None:
        server.execute(["UPDATE orders SET amount = amount + 1 WHERE id <= 10"], name)

    yield EngineCase(
        engine="mysql",
        source=server.config(name),
        table="orders",
        mutate=mutate,
        broken=server.config(new_name("missing")),
    )
