"""The InfluxDB 1.x conformance case: the sample database of the integration
tests (two retention policies, several shards) on the real test server
(scripts/servers/influxdb.sh). A "table" is ``retention_policy.measurement``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.engine_cases import EngineCase
from tests.integration.fixtures_influxdb import InfluxServer, cpu_lines, create_sample_database

ENGINE = "influxdb"


def case(request: pytest.FixtureRequest) -> Iterator[EngineCase]:
    server: InfluxServer = request.getfixturevalue("influx_server")
    new_name: Any = request.getfixturevalue("influx_databases")
    name = new_name("conf")
    create_sample_database(server, name)

    def mutate() -> None:
        server.write(name, cpu_lines(5, 3))  # overwrite three points' values...
        server.write(name, [line.replace("usage=", "usage=9") for line in cpu_lines(10, 3)])

    yield EngineCase(
        engine=ENGINE,
        source=server.config(name),
        table="autogen.cpu",
        mutate=mutate,
        broken=server.config(new_name("missing")),
    )
