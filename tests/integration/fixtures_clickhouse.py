"""ClickHouse test server fixtures (scripts/servers/clickhouse.sh starts it).

``ch_server`` describes the server; ``ch_databases`` hands out unique database
names and drops them afterwards; ``create_sample_database`` fills one with
tables of several engines, a view, materialized views and a Buffer table.
Setup queries go through plain ``urllib`` (not the code under test).
"""

from __future__ import annotations

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

CH_PASSWORD_ENV = "DBFLEET_TEST_CLICKHOUSE_PASSWORD"
CH_READER_PASSWORD_ENV = "DBFLEET_TEST_CLICKHOUSE_READER_PASSWORD"


@dataclass
class ClickHouseServer:
    url: str
    """``http://dbfleet@127.0.0.1:port/default``"""

    @property
    def base(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def http(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port}/"

    def config(self, database: str, *, user: str | None = None, **changes: Any) -> DatabaseConfig:
        base = self.base
        password_env = CH_PASSWORD_ENV
        if user is not None:
            base = f"http://{user}@{base.rpartition('@')[2]}"
            password_env = CH_READER_PASSWORD_ENV
        changes.setdefault("password_env", password_env)
        return DatabaseConfig(engine="clickhouse", url=f"{base}/{database}", **changes)

    def query(self, sql: str, **settings: Any) -> str:
        """Run ``sql`` as the test user; the response body as text."""
        return self.raw(sql, **settings).decode()

    def raw(self, sql: str, **settings: Any) -> bytes:
        """Run ``sql`` as the test user; the response body as it is."""
        url = self.http + ("?" + urlencode(settings) if settings else "")
        request = urllib.request.Request(url, data=sql.encode(), method="POST")
        request.add_header("X-ClickHouse-User", urlsplit(self.url).username or "default")
        request.add_header("X-ClickHouse-Key", os.environ[CH_PASSWORD_ENV])
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{sql[:200]}: {exc.read().decode()}") from None

    def value(self, sql: str) -> str:
        return self.query(sql).strip()

    def drop_database(self, name: str) -> None:
        self.query(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def ch_server() -> ClickHouseServer:
    if not os.environ.get("DBFLEET_TEST_CLICKHOUSE_URL"):
        _load_env_file()
    url = os.environ.get("DBFLEET_TEST_CLICKHOUSE_URL")
    if not url or not os.environ.get(CH_PASSWORD_ENV):
        _unavailable("ClickHouse test server not configured (DBFLEET_TEST_CLICKHOUSE_URL)")
    assert url is not None
    os.environ.setdefault(CH_READER_PASSWORD_ENV, "reader-test-ch")  # the script's test value
    server = ClickHouseServer(url)
    try:
        server.query("SELECT 1")
    except (OSError, AssertionError) as exc:
        _unavailable(f"ClickHouse test server at {url} unreachable ({exc})")
    return server


@pytest.fixture
def ch_databases(ch_server: ClickHouseServer) -> Iterator[Callable[[str], str]]:
    """Hands out unique database names; drops them (and staging leftovers
    named ``<name>_dbfleet_...``) afterwards."""
    names = DatabaseNames()
    yield names
    existing = ch_server.query("SELECT name FROM system.databases").split()
    names.drop(ch_server.drop_database, existing, leftover="_dbfleet_")


SAMPLE_ROWS = 6000

SAMPLE_SCHEMA = """
CREATE TABLE {db}.events (
    id UInt64,
    ts DateTime,
    kind Enum8('click' = 1, 'view' = 2, 'buy' = 3),
    user Nullable(String),
    tags Array(Nullable(String)),
    amount Decimal(18, 4),
    uid UUID,
    code FixedString(2),
    country LowCardinality(String),
    point Tuple(Float64, Float64),
    attrs Nested(key String, value Int32),
    score Float64,
    note String DEFAULT 'none',
    day Date MATERIALIZED toDate(ts),
    id2 UInt64 ALIAS id * 2
) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (kind, id);
CREATE TABLE {db}.latest (key UInt32, value String, version UInt32)
    ENGINE = ReplacingMergeTree(version) ORDER BY key;
CREATE TABLE {db}.audit (at DateTime, message String) ENGINE = Log;
CREATE TABLE {db}.cache (k String, v Nullable(Float64)) ENGINE = Memory;
CREATE TABLE {db}.daily (day Date, kind String, n UInt64)
    ENGINE = SummingMergeTree ORDER BY (day, kind);
CREATE MATERIALIZED VIEW {db}.daily_mv TO {db}.daily
    AS SELECT toDate(ts) AS day, toString(kind) AS kind, count() AS n FROM {db}.events
    GROUP BY day, kind;
CREATE MATERIALIZED VIEW {db}.by_country ENGINE = SummingMergeTree ORDER BY country
    AS SELECT country, count() AS n FROM {db}.events GROUP BY country;
CREATE VIEW {db}.recent AS SELECT id, ts, kind FROM {db}.events WHERE id > 100;
CREATE VIEW {db}.recent_buys AS SELECT id FROM {db}.recent WHERE kind = 'buy';
CREATE TABLE {db}.events_buffer AS {db}.events
    ENGINE = Buffer({db}, events, 1, 3600, 3600, 1000000, 1000000, 1000000000, 1000000000);
"""


def insert_events(server: ClickHouseServer, db: str, first: int, count: int) -> None:
    server.query(
        f"INSERT INTO `{db}`.events (id, ts, kind, user, tags, amount, uid, code, country,"
        " point, `attrs.key`, `attrs.value`, score, note)"
        " SELECT number, toDateTime('2024-01-01 00:00:00') + number * 3600,"
        " toInt8(1 + number % 3), if(number % 7 = 0, NULL, concat('user', toString(number % 50))),"
        " [toString(number), if(number % 5 = 0, NULL, 'x')],"
        " toDecimal64(number / 7, 4), generateUUIDv4(), 'ab',"
        " ['de', 'fr', 'us'][1 + number % 3], (number / 3, -1.5), ['a', 'b'],"
        " [toInt32(number), -1], number * 0.1, if(number % 2 = 0, 'even', 'odd')"
        f" FROM system.numbers LIMIT {count} OFFSET {first}",
        allow_experimental_low_cardinality_type=1,
    )


def create_sample_database(server: ClickHouseServer, db: str, rows: int = SAMPLE_ROWS) -> None:
    server.query(f"CREATE DATABASE `{db}`")
    for statement in SAMPLE_SCHEMA.split(";"):
        if statement.strip():
            server.query(
                statement.replace("{db}", f"`{db}`"), allow_experimental_low_cardinality_type=1
            )
    # Several inserts: several parts (and partitions) per table.
    step = rows // 3
    for first in range(0, rows, step):
        insert_events(server, db, first, min(step, rows - first))
    for version in (1, 2):  # duplicate keys in two parts: FINAL collapses them
        server.query(
            f"INSERT INTO `{db}`.latest SELECT number, concat('v', toString({version})),"
            f" {version} FROM system.numbers LIMIT 500"
        )
    server.query(
        f"INSERT INTO `{db}`.audit VALUES ('2024-01-01 00:00:00', 'created'),"
        " ('2024-01-02 00:00:00', 'it''s \\\\ quoted\\nnewline')"
    )
    server.query(f"INSERT INTO `{db}`.cache VALUES ('a', 1.5), ('b', NULL), ('c', nan)")
