"""MongoDB test server fixtures (scripts/servers/mongodb.sh starts FerretDB v1
over SQLite and builds mongodump/mongorestore).

``mongo_server`` describes the server (a URL without password, the password
in ``DBFLEET_TEST_MONGODB_PASSWORD``, the tools in ``DBFLEET_MONGODB_TOOLS``);
``mongo_databases`` hands out unique database names and drops them (and
scratch copies named after them) afterwards; ``create_sample_database``
fills one with several collections of varied BSON types, indexes and a
capped collection. Setup goes through pymongo directly, not the engine.

What FerretDB v1.24 lacks shapes the sample: no Decimal128, MinKey/MaxKey
or JavaScript code values (the server drops the connection), no TTL or
partial indexes, no validators ("not implemented yet"); ``sparse`` is
accepted and ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from bson import Binary, Int64, ObjectId, Regex, Timestamp
from pymongo import ASCENDING, DESCENDING, MongoClient

from dbfleet.config import DatabaseConfig
from dbfleet.engines.mongodb.location import SCRATCH_PREFIX
from tests.integration.conftest import DatabaseNames, _load_env_file, _unavailable

MONGO_PASSWORD_ENV = "DBFLEET_TEST_MONGODB_PASSWORD"
MONGO_URL_ENV = "DBFLEET_TEST_MONGODB_URL"
TOOLS_ENV = "DBFLEET_MONGODB_TOOLS"


@dataclass
class MongoServer:
    url: str
    """``mongodb://user@host:port/?options``: no database, no password."""

    def url_for(self, database: str | None) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(
            (parts.scheme, parts.netloc, f"/{database or ''}", parts.query, parts.fragment)
        )

    def config(self, database: str | None, **changes: Any) -> DatabaseConfig:
        changes.setdefault("password_env", MONGO_PASSWORD_ENV)
        return DatabaseConfig(engine="mongodb", url=self.url_for(database), **changes)

    def client(self) -> MongoClient[Any]:
        return MongoClient(
            self.url, password=os.environ[MONGO_PASSWORD_ENV], serverSelectionTimeoutMS=5000
        )

    def databases(self) -> list[str]:
        with self.client() as client:
            return list(client.list_database_names())

    def drop_database(self, name: str) -> None:
        with self.client() as client:
            client.drop_database(name)


@pytest.fixture(scope="session")
def mongo_server() -> MongoServer:
    if not os.environ.get(MONGO_URL_ENV):
        _load_env_file()
    url = os.environ.get(MONGO_URL_ENV)
    if not url or not os.environ.get(MONGO_PASSWORD_ENV):
        _unavailable(f"MongoDB test server not configured ({MONGO_URL_ENV})",
                     "run scripts/test-servers.sh start mongodb")  # fmt: skip
    assert url is not None
    server = MongoServer(url)
    try:
        with server.client() as client:
            client.admin.command("ping")
    except Exception as exc:  # any driver error means: no usable server
        _unavailable(f"MongoDB test server at {url} unreachable ({exc})",
                     "run scripts/test-servers.sh start mongodb")  # fmt: skip
    tools = os.environ.get(TOOLS_ENV, "")
    if not os.access(os.path.join(tools, "mongodump"), os.X_OK):
        _unavailable(f"mongodump not found in ${TOOLS_ENV} ({tools!r})",
                     "run scripts/test-servers.sh start mongodb")  # fmt: skip
    return server


@pytest.fixture
def mongo_databases(mongo_server: MongoServer) -> Iterator[Callable[[str], str]]:
    """Hands out unique database names; drops them, and databases named
    after them (``<name>_...``: scratch copies, server entry members;
    ``dbfleet_scratch_<label>_<name>...``: whole-instance scratch copies),
    afterwards."""
    names = DatabaseNames()
    yield names
    existing = mongo_server.databases()
    names.drop(mongo_server.drop_database, existing, leftover="_")
    for db in existing:
        scratch = db.startswith(SCRATCH_PREFIX) and any(f"_{n}" in db for n in names.names)
        if scratch:
            mongo_server.drop_database(db)


START = datetime(2024, 1, 1, tzinfo=UTC)


def order(i: int) -> dict[str, Any]:
    """One document with most BSON types FerretDB v1 stores."""
    return {
        "_id": ObjectId(f"{i:024x}"),
        "n": i,
        "customer": f"c{i % 7}",
        "placed": START + timedelta(minutes=i),
        "amount": i * 1.25,
        "big": Int64(2**40 + i),
        "paid": i % 3 != 0,
        "note": None if i % 5 == 0 else f"order {i} ünïcödé",
        "payload": Binary(bytes([i % 256, 0, 255]) * 3),
        "uuid": Binary(i.to_bytes(16, "big"), 4),
        "lines": [{"sku": f"s{j}", "qty": j} for j in range(i % 4)],
        "address": {"city": f"city{i % 3}", "geo": [i / 10, -i / 10]},
        "pattern": Regex("^o", "i"),
        "seen": Timestamp(1_700_000_000 + i, 1),
        "neg_zero": -0.0,
    }


def create_sample_database(server: MongoServer, name: str, orders: int = 500) -> None:
    """Collections ``orders`` (varied types, unique + compound + descending
    indexes), ``customers`` (string _id, unique email), ``events`` (capped)
    and ``empty`` (no documents, one index)."""
    with server.client() as client:
        db = client[name]
        db.orders.insert_many([order(i) for i in range(orders)])
        db.orders.create_index([("n", ASCENDING)], unique=True, name="n_unique")
        db.orders.create_index([("customer", ASCENDING), ("placed", DESCENDING)])
        db.orders.create_index([("address.city", ASCENDING)])
        db.customers.insert_many(
            [
                {"_id": f"c{i}", "email": f"c{i}@example.org", "tags": ["a", "b"][: i % 3]}
                for i in range(7)
            ]  # fmt: skip
        )
        db.customers.create_index("email", unique=True)
        db.create_collection("events", capped=True, size=1 << 20)
        db.events.insert_many([{"kind": f"k{i % 3}", "at": START + timedelta(seconds=i)}
                               for i in range(50)])  # fmt: skip
        db.create_collection("empty")
        db.empty.create_index("x")
