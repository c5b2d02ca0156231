"""InfluxDB 1.x test server fixtures (scripts/servers/influxdb.sh starts it).

``influx_server`` describes the server (HTTP API with authentication, and the
backup/RPC address); ``influx_databases`` hands out unique database names and
drops them afterwards; ``create_sample_database`` writes measurements with
every field type into two retention policies across several shards.
Setup goes through plain ``urllib`` (not the code under test).
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from dbfleet.config import DatabaseConfig
from tests.integration.conftest import DatabaseNames, _load_env_file, _unavailable

INFLUX_PASSWORD_ENV = "DBFLEET_TEST_INFLUXDB_PASSWORD"
WEEK_NS = 7 * 24 * 3600 * 10**9
START_NS = 1704067200 * 10**9  # 2024-01-01
FUTURE_NS = 4102444800 * 10**9  # 2100-01-01: beyond now(), must still be backed up


@dataclass
class InfluxServer:
    url: str
    backup_address: str

    def config(self, database: str, **changes: Any) -> DatabaseConfig:
        parts = urlsplit(self.url)
        changes.setdefault("password_env", INFLUX_PASSWORD_ENV)
        options = {"backup_address": self.backup_address, **changes.pop("options", {})}
        return DatabaseConfig(
            engine="influxdb",
            url=f"{parts.scheme}://{parts.netloc}/{database}",
            options=options,
            **changes,
        )

    def _request(self, path: str, body: bytes) -> bytes:
        parts = urlsplit(self.url)
        request = urllib.request.Request(
            f"{parts.scheme}://{parts.hostname}:{parts.port}{path}", data=body, method="POST"
        )
        token = f"{parts.username}:{os.environ[INFLUX_PASSWORD_ENV]}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{path}: {exc.read().decode()}") from None

    def query(self, statement: str, database: str | None = None) -> list[dict[str, Any]]:
        params = {"q": statement, **({"db": database} if database else {})}
        doc = json.loads(self._request("/query", urlencode(params).encode()))
        result = doc["results"][0]
        assert "error" not in result, f"{statement}: {result['error']}"
        series: list[dict[str, Any]] = result.get("series") or []
        return series

    def write(self, database: str, lines: list[str], rp: str | None = None) -> None:
        params = {"db": database, **({"rp": rp} if rp else {})}
        self._request(f"/write?{urlencode(params)}", "\n".join(lines).encode())

    def databases(self) -> set[str]:
        return {v[0] for s in self.query("SHOW DATABASES") for v in s.get("values") or []}

    def drop_database(self, name: str) -> None:
        self.query(f'DROP DATABASE "{name}"')


@pytest.fixture(scope="session")
def influx_server() -> InfluxServer:
    if not os.environ.get("DBFLEET_TEST_INFLUXDB_URL"):
        _load_env_file()
    url = os.environ.get("DBFLEET_TEST_INFLUXDB_URL")
    address = os.environ.get("DBFLEET_TEST_INFLUXDB_BACKUP_ADDRESS")
    if not url or not address or not os.environ.get(INFLUX_PASSWORD_ENV):
        _unavailable("InfluxDB test server not configured (DBFLEET_TEST_INFLUXDB_URL)")
    assert url is not None and address is not None
    server = InfluxServer(url, address)
    try:
        server.query("SHOW DATABASES")
    except (OSError, AssertionError) as exc:
        _unavailable(f"InfluxDB test server at {url} unreachable ({exc})")
    return server


@pytest.fixture
def influx_databases(influx_server: InfluxServer) -> Iterator[Callable[[str], str]]:
    """Hands out unique database names; drops them (and leftovers named
    after them: scratch and temporary databases) afterwards."""
    names = DatabaseNames()
    yield names
    names.drop(influx_server.drop_database, influx_server.databases(), leftover="_dbfleet_")


def cpu_lines(first: int, count: int, hours: int = 3) -> list[str]:
    return [
        f"cpu,host=h{i % 4},region=r{i % 2} usage={i * 0.25},count={i}i,"
        f'ok={"true" if i % 3 else "false"},msg="m{i} \\"q\\""'
        f" {START_NS + i * hours * 3600 * 10**9}"
        for i in range(first, first + count)
    ]


def create_sample_database(server: InfluxServer, name: str) -> None:
    server.query(f'CREATE DATABASE "{name}"')
    server.query(f'CREATE RETENTION POLICY "long" ON "{name}" DURATION 5200w REPLICATION 1')
    server.write(name, cpu_lines(0, 600))  # 75 days: about 11 weekly shards
    server.write(
        name, [f"mem,host=h{i % 3} free={i}i {START_NS + i * 60 * 10**9}" for i in range(300)]
    )
    server.write(name, [f"cpu,host=future usage=1.5 {FUTURE_NS}"])
    server.write(name, [f"disk,dev=sd{c} used={i}i,pct={i / 3}" f" {START_NS + i * 10**9}"
                        for i, c in enumerate("abc")], rp="long")  # fmt: skip
