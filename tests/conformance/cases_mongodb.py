"""The MongoDB conformance case: the sample database of the integration tests
(several collections, varied BSON types, indexes, a capped collection) on the
real test server, FerretDB v1 over SQLite (scripts/servers/mongodb.sh). A
"table" is a collection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.engine_cases import EngineCase
from tests.integration.fixtures_mongodb import MongoServer, create_sample_database

ENGINE = "mongodb"


def case(request: pytest.FixtureRequest) -> Iterator[EngineCase]:
    server: MongoServer = request.getfixturevalue("mongo_server")
    new_name: Any = request.getfixturevalue("mongo_databases")
    name = new_name("conf")
    create_sample_database(server, name)

    def mutate() -> None:
        with server.client() as client:
            client[name].orders.update_many({"n": {"$lt": 3}}, {"$inc": {"amount": 1}})

    yield EngineCase(
        engine=ENGINE,
        source=server.config(name),
        table="orders",
        mutate=mutate,
        broken=server.config(new_name("missing")),
    )
