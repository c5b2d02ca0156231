"""Weaviate test server fixtures (scripts/servers/weaviate.sh starts it).

``weaviate_server`` describes the server (anonymous access, REST and gRPC
ports); ``weaviate_prefixes`` hands out unique collection-name prefixes (a
prefix is a dbfleet "database" on Weaviate) and drops their collections, and
scratch copies of them, afterwards; ``create_sample`` creates collections with
every property type, a cross-reference, named vectors, multi-tenancy and
vectors. Setup goes through plain ``urllib`` (not the code under test).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbfleet.config import DatabaseConfig
from tests.integration.conftest import _load_env_file, _unavailable

NS = uuid.UUID("6f1c2f0e-5a4b-4c1e-9d57-0b7f3f5e2a10")
TENANTS = {"tenantA": 40, "tenantB": 25}
ARTICLES = 300
BEACON = "weaviate://localhost/"
AUTHORS = 12


def oid(kind: str, i: int) -> str:
    return str(uuid.uuid5(NS, f"{kind}-{i}"))


def vec(seed: int, dims: int) -> list[float]:
    return [round(math.sin(seed * 0.37 + d * 1.3), 6) for d in range(dims)]


@dataclass
class WeaviateServer:
    url: str
    grpc_port: int

    def config(self, prefix: str, **changes: Any) -> DatabaseConfig:
        return DatabaseConfig(engine="weaviate", url=f"{self.url}/{prefix}", **changes)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read().decode()}") from None
        return json.loads(raw) if raw.strip() else None

    def classes(self) -> dict[str, dict[str, Any]]:
        schema = self.request("GET", "/v1/schema") or {}
        return {c["class"]: c for c in schema.get("classes") or []}

    def drop(self, name: str) -> None:
        self.request("DELETE", f"/v1/schema/{name}")

    def batch(self, objects: list[dict[str, Any]]) -> None:
        for i in range(0, len(objects), 200):
            results = self.request("POST", "/v1/batch/objects", {"objects": objects[i : i + 200]})
            errors = [
                r["result"]["errors"] for r in results if (r.get("result") or {}).get("errors")
            ]
            assert not errors, errors[:3]


@pytest.fixture(scope="session")
def weaviate_server() -> WeaviateServer:
    if not os.environ.get("DBFLEET_TEST_WEAVIATE_URL"):
        _load_env_file()
    url = os.environ.get("DBFLEET_TEST_WEAVIATE_URL")
    if not url:
        _unavailable("Weaviate test server not configured (DBFLEET_TEST_WEAVIATE_URL)")
    assert url is not None
    server = WeaviateServer(
        url.rstrip("/"), int(os.environ.get("DBFLEET_TEST_WEAVIATE_GRPC_PORT", 0))
    )
    try:
        server.request("GET", "/v1/.well-known/ready")
    except (OSError, AssertionError) as exc:
        _unavailable(f"Weaviate test server at {url} unreachable ({exc})")
    return server


def _weaviate_binary() -> Path:
    """The weaviate-server that scripts/servers/weaviate.sh built and cached."""
    if os.environ.get("DBFLEET_TEST_WEAVIATE_BIN"):
        return Path(os.environ["DBFLEET_TEST_WEAVIATE_BIN"])
    cache = os.environ.get("DBFLEET_TEST_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dbfleet-test-servers"
    )
    version = os.environ.get("DBFLEET_TEST_WEAVIATE_VERSION", "v1.35.2")
    return Path(cache) / f"weaviate-{version}" / "weaviate-server"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="session")
def weaviate_private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeaviateServer]:
    """A Weaviate instance of this test session alone (the cached binary of
    the shared test server, on free ports, data in a temporary directory):
    for whole-instance entries (``url`` without a prefix), whose backups,
    restores and verifies take every collection of the server, which on the
    shared server would include whatever other tests create meanwhile."""
    binary = _weaviate_binary()
    if not os.access(binary, os.X_OK):
        _unavailable(f"no weaviate-server at {binary} (built by scripts/test-servers.sh)")
    rest, grpc, gossip, data, raft, raft_rpc = _free_ports(6)
    home = tmp_path_factory.mktemp("weaviate-private")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
        "AUTHENTICATION_APIKEY_ENABLED": "false",
        "PERSISTENCE_DATA_PATH": str(home / "data"),
        "DEFAULT_VECTORIZER_MODULE": "none",
        "ENABLE_MODULES": "",
        "API_BASED_MODULES_DISABLED": "true",
        "DISABLE_TELEMETRY": "true",
        "GO_PROFILING_DISABLE": "true",
        "LOG_LEVEL": "warning",
        "CLUSTER_HOSTNAME": "node1",
        "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
        "CLUSTER_BIND_ADDR": "127.0.0.1",
        "CLUSTER_GOSSIP_BIND_PORT": str(gossip),
        "CLUSTER_DATA_BIND_PORT": str(data),
        "RAFT_PORT": str(raft),
        "RAFT_INTERNAL_RPC_PORT": str(raft_rpc),
        "RAFT_BOOTSTRAP_EXPECT": "1",
        "RAFT_JOIN": f"node1:{raft_rpc}",
        "GRPC_PORT": str(grpc),
        "GOMEMLIMIT": "1GiB",
    }
    with open(home / "weaviate.log", "wb") as log:
        process = subprocess.Popen(
            [str(binary), "--host", "127.0.0.1", "--port", str(rest), "--scheme", "http"],
            cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    server = WeaviateServer(f"http://127.0.0.1:{rest}", grpc)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                server.request("GET", "/v1/.well-known/ready")
                break
            except (OSError, AssertionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (home / "weaviate.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"private Weaviate did not start: {tail}")
                time.sleep(0.25)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def weaviate_empty_instance(weaviate_private: WeaviateServer) -> Iterator[WeaviateServer]:
    """The private instance, without any collection before and after."""
    for name in weaviate_private.classes():
        weaviate_private.drop(name)
    yield weaviate_private
    for name in weaviate_private.classes():
        weaviate_private.drop(name)


@pytest.fixture
def weaviate_prefixes(weaviate_server: WeaviateServer) -> Iterator[Callable[[str], str]]:
    """Hands out unique prefixes (``It_<label>_<hex>_``); drops their
    collections and scratch copies of them (``Dbfleet_..._<prefix>``) after."""
    prefixes: list[str] = []

    def new(label: str = "db") -> str:
        prefix = f"It_{label}_{secrets.token_hex(3)}_"
        prefixes.append(prefix)
        return prefix

    yield new
    for name in weaviate_server.classes():
        if any(name.startswith(p) or (name.startswith("Dbfleet_") and p in name) for p in prefixes):
            weaviate_server.drop(name)


def create_sample(server: WeaviateServer, prefix: str, articles: int = ARTICLES) -> None:
    """Three collections under ``prefix``: Author (two named vectors, hnsw and
    flat; a reference to itself, in a cycle), Article (every property type, a
    reference to Author with one or two targets, one unnamed vector) and
    Review (multi-tenant, two tenants)."""
    author, article, review = f"{prefix}Author", f"{prefix}Article", f"{prefix}Review"
    server.request("POST", "/v1/schema", {
        "class": author,
        "properties": [{"name": "name", "dataType": ["text"]}],
        "vectorConfig": {
            "title": {"vectorizer": {"none": {}}, "vectorIndexType": "hnsw",
                      "vectorIndexConfig": {"distance": "cosine"}},
            "body": {"vectorizer": {"none": {}}, "vectorIndexType": "flat",
                     "vectorIndexConfig": {"distance": "l2-squared"}},
        },
    })  # fmt: skip
    server.request("POST", "/v1/schema", {
        "class": article,
        "vectorizer": "none",
        "vectorIndexType": "hnsw",
        "vectorIndexConfig": {"distance": "dot", "efConstruction": 64, "maxConnections": 16},
        "invertedIndexConfig": {"indexNullState": True},
        "properties": [
            {"name": "title", "dataType": ["text"], "tokenization": "word"},
            {"name": "slug", "dataType": ["text"], "tokenization": "field"},
            {"name": "words", "dataType": ["int"]},
            {"name": "score", "dataType": ["number"]},
            {"name": "published", "dataType": ["boolean"]},
            {"name": "date", "dataType": ["date"]},
            {"name": "ref", "dataType": ["uuid"]},
            {"name": "writtenBy", "dataType": [author]},  # not last: restores add it last
            {"name": "tags", "dataType": ["text[]"]},
            {"name": "counts", "dataType": ["int[]"]},
            {"name": "ratios", "dataType": ["number[]"]},
            {"name": "location", "dataType": ["geoCoordinates"]},
            {"name": "flags", "dataType": ["boolean[]"]},
            {"name": "dates", "dataType": ["date[]"]},
            {"name": "uuids", "dataType": ["uuid[]"]},
            {"name": "blob", "dataType": ["blob"]},
            {"name": "phone", "dataType": ["phoneNumber"]},
            {"name": "meta", "dataType": ["object"], "nestedProperties": [
                {"name": "pages", "dataType": ["int"]},
                {"name": "editor", "dataType": ["text"]},
                {"name": "stamp", "dataType": ["date"]},
            ]},
        ],
    })  # fmt: skip
    server.request("POST", "/v1/schema", {
        "class": review,
        "vectorizer": "none",
        "multiTenancyConfig": {"enabled": True},
        "vectorIndexConfig": {"distance": "l2-squared"},
        "properties": [{"name": "text", "dataType": ["text"]},
                       {"name": "stars", "dataType": ["int"]}],
    })  # fmt: skip
    # a reference of a collection to itself
    server.request("POST", f"/v1/schema/{author}/properties",
                   {"name": "mentor", "dataType": [author]})  # fmt: skip
    server.request("POST", f"/v1/schema/{review}/tenants",
                   [{"name": t} for t in TENANTS])  # fmt: skip
    server.batch([
        {"class": author, "id": oid("author", i), "properties": {"name": f"Author {i} ☃"},
         "vectors": {"title": vec(i, 4), "body": vec(i + 100, 6)}}
        for i in range(AUTHORS)
    ])  # fmt: skip
    refs = server.request("POST", "/v1/batch/references", [
        {"from": f"{BEACON}{author}/{oid('author', i)}/mentor",
         "to": f"{BEACON}{author}/{oid('author', (i + 1) % AUTHORS)}"}
        for i in range(AUTHORS)
    ])  # fmt: skip
    assert not [r for r in refs if (r.get("result") or {}).get("errors")], refs
    server.batch([
        {"class": article, "id": oid("article", i), "vector": vec(i, 8), "properties": {
            "title": f"Article {i} \"quoted\" ünïcode",
            "slug": f"article-{i}",
            "words": i * 7,
            "score": i / 3,
            "published": i % 2 == 0,
            "date": f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:30:00.{i % 1000:03d}Z",
            "ref": oid("ref", i),
            "tags": [f"t{i % 5}", "all"],
            "counts": [i, i + 1, -i],
            "ratios": [0.1 * i, 1e-7],
            "location": {"latitude": 52.5 + i / 1000, "longitude": 13.4 - i / 1000},
            "flags": [True, i % 3 == 0],
            "dates": ["2020-02-29T23:59:59Z", f"2021-03-{1 + i % 28:02d}T00:00:00+02:00"],
            "uuids": [oid("u", i), oid("u", i + 1)],
            "blob": "aGVsbG8gd29ybGQ=",
            "phone": {"input": f"030 1234{i:03d}", "defaultCountry": "de"},
            "meta": {"pages": i % 13, "editor": f"ed{i % 3}", "stamp": "2023-05-06T07:08:09Z"},
            "writtenBy": [{"beacon": f"{BEACON}{author}/{oid('author', i % AUTHORS)}"}]
            + ([{"beacon": f"{BEACON}{author}/{oid('author', 0)}"}] if i % 10 == 3 else []),
        }}
        for i in range(articles)
    ])  # fmt: skip
    server.batch([
        {"class": review, "tenant": tenant, "id": oid(f"review-{tenant}", i),
         "vector": vec(i + 7, 5), "properties": {"text": f"review {i} of {tenant}", "stars": i % 5}}
        for tenant, count in TENANTS.items() for i in range(count)
    ])  # fmt: skip
