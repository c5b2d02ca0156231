"""The Neo4j conformance case: the sample graph of the integration tests on
the real test server (scripts/servers/neo4j.sh). A "table" is a label (or a
relationship type in brackets, fingerprint only); ``Tag`` nodes carry no
other label and no relationship among themselves, so a subset restore of
``Tag`` is exactly that table. Scratch targets are the second DBMS the
launcher hosts (Community has one user database per DBMS)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.engine_cases import EngineCase
from tests.integration.fixtures_neo4j import Neo4jServer, create_sample_graph

ENGINE = "neo4j"


def case(request: pytest.FixtureRequest) -> Iterator[EngineCase]:
    server: Neo4jServer = request.getfixturevalue("neo4j_server")
    create_sample_graph(server)

    def mutate() -> None:
        server.run("MATCH (t:Tag) WHERE t.n <= 3 SET t.n = t.n + 100")

    yield EngineCase(
        engine=ENGINE,
        source=server.config(),
        table="Tag",
        mutate=mutate,
        broken=server.config(url=server.url + "/missing"),
    )
