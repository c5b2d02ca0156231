"""The Weaviate conformance case: the sample collections of the integration
tests (every property type, a cross-reference, named vectors, a multi-tenant
collection with two tenants) under a unique prefix on the real test server
(scripts/servers/weaviate.sh). A "database" is a collection-name prefix, a
"table" a collection's name after the prefix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.engine_cases import EngineCase
from tests.integration.fixtures_weaviate import WeaviateServer, create_sample, oid

ENGINE = "weaviate"


def case(request: pytest.FixtureRequest) -> Iterator[EngineCase]:
    server: WeaviateServer = request.getfixturevalue("weaviate_server")
    new_prefix: Any = request.getfixturevalue("weaviate_prefixes")
    prefix = new_prefix("conf")
    create_sample(server, prefix)

    def mutate() -> None:
        server.request("PATCH", f"/v1/objects/{prefix}Article/{oid('article', 5)}",
                       {"class": f"{prefix}Article", "properties": {"words": 123456}})  # fmt: skip

    yield EngineCase(
        engine=ENGINE,
        source=server.config(prefix),
        table="Review",
        mutate=mutate,
        broken=server.config(new_prefix("missing")),
    )
