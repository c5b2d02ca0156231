"""Neo4j test server fixtures (scripts/servers/neo4j.sh starts it).

The launcher hosts two Neo4j Community DBMS instances: ``main`` (the tests'
sources) and ``scratch`` (where restores go; Community has one user database
per DBMS). Both are shared by every test, so ``neo4j_server`` empties both
before and after each test that uses it. ``create_sample_graph`` builds a
graph with several labels (multi-label and unlabeled nodes), every property
type, relationships with properties, a self-loop, parallel relationships, a
uniqueness constraint, a range and a text index. Setup goes through the
driver directly (not the code under test).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import neo4j
import pytest

from dbfleet.config import DatabaseConfig
from tests.integration.conftest import _load_env_file, _unavailable

NEO4J_PASSWORD_ENV = "DBFLEET_TEST_NEO4J_PASSWORD"


@dataclass
class Neo4jServer:
    url: str
    scratch_url: str
    admin: str | None
    classpath: str | None

    def config(self, url: str | None = None, **changes: Any) -> DatabaseConfig:
        options = {"scratch_url": self.scratch_url, **changes.pop("options", {})}
        changes.setdefault("password_env", NEO4J_PASSWORD_ENV)
        return DatabaseConfig(engine="neo4j", url=url or self.url, options=options, **changes)

    def driver(self, url: str | None = None) -> neo4j.Driver:
        parts = urlsplit(url or self.url)
        return neo4j.GraphDatabase.driver(
            f"bolt://{parts.hostname}:{parts.port}",
            auth=(parts.username or "neo4j", os.environ[NEO4J_PASSWORD_ENV]),
            notifications_min_severity="OFF",
        )

    def run(self, query: str, url: str | None = None, **params: Any) -> list[dict[str, Any]]:
        with self.driver(url) as driver, driver.session() as session:
            return [r.data() for r in session.run(query, params)]

    def clear(self, url: str | None = None) -> None:
        """Delete every node, constraint and (non-lookup) index."""
        self.run("MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS", url)
        for row in self.run("SHOW CONSTRAINTS YIELD name", url):
            self.run(f"DROP CONSTRAINT `{row['name']}`", url)
        for row in self.run("SHOW INDEXES YIELD name, type", url):
            if row["type"] != "LOOKUP":
                self.run(f"DROP INDEX `{row['name']}`", url)


def _reachable(url: str) -> str | None:
    parts = urlsplit(url)
    try:
        with neo4j.GraphDatabase.driver(
            f"bolt://{parts.hostname}:{parts.port}",
            auth=("neo4j", os.environ.get(NEO4J_PASSWORD_ENV, "")),
            connection_timeout=5,
        ) as driver:
            driver.verify_connectivity()
    except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError) as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def neo4j_session_server() -> Neo4jServer:
    if not os.environ.get("DBFLEET_TEST_NEO4J_URL"):
        _load_env_file()
    url = os.environ.get("DBFLEET_TEST_NEO4J_URL")
    scratch = os.environ.get("DBFLEET_TEST_NEO4J_SCRATCH_URL")
    if not url or not scratch or not os.environ.get(NEO4J_PASSWORD_ENV):
        _unavailable("Neo4j test server not configured (DBFLEET_TEST_NEO4J_URL)")
    assert url is not None and scratch is not None
    for where in (url, scratch):
        problem = _reachable(where)
        if problem:
            _unavailable(f"Neo4j test server at {where} unreachable ({problem})")
    return Neo4jServer(url, scratch, os.environ.get("DBFLEET_TEST_NEO4J_ADMIN"),
                       os.environ.get("DBFLEET_TEST_NEO4J_HOME"))  # fmt: skip


@pytest.fixture
def neo4j_server(neo4j_session_server: Neo4jServer) -> Iterator[Neo4jServer]:
    """The server with both databases empty, emptied again afterwards."""
    server = neo4j_session_server
    server.clear()
    server.clear(server.scratch_url)
    yield server
    server.clear()
    server.clear(server.scratch_url)


SAMPLE = """
CREATE (alice:Person:Employee {name: 'Alice', email: 'alice@example.org', age: 41,
        score: 1.0, ratio: 0.1, active: true, nick: null,
        tags: ['a', 'b'], ints: [1, 2, 3], floats: [1.5, -0.0], bools: [true, false],
        photo: $photo, born: date('1984-02-29'), wake: localtime('06:30:00.000000001'),
        lunch: time('12:00:00+01:00'), seen: localdatetime('2024-01-02T03:04:05.123456789'),
        created: datetime('2024-03-31T03:30:00.5[Europe/Berlin]'),
        updated: datetime('2024-01-01T10:00:00+05:30'),
        tenure: duration('P1Y2M3DT4H5M6.000000007S'),
        home: point({x: 1.5, y: -2.0}), office: point({x: 1, y: 2, z: 3}),
        geo: point({longitude: 13.4, latitude: 52.5}),
        peak: point({longitude: 13.4, latitude: 52.5, height: 35.0}),
        days: [date('2024-01-01'), date('2024-01-02')],
        spots: [point({x: 0, y: 0}), point({x: 1, y: 1})],
        big: 9007199254740993, small: -9223372036854775808, empty: []})
CREATE (bob:Person {name: 'Bob', email: 'bob@example.org', age: 37, score: 2})
CREATE (carol:Person:Manager:Employee {name: 'Carol', email: 'carol@example.org'})
CREATE (acme:Company {name: 'ACME', founded: 1999})
CREATE (orphan {note: 'no label at all', `odd key`: 'x'})
CREATE (alice)-[:WORKS_AT {since: date('2020-01-01'), role: 'engineer'}]->(acme)
CREATE (carol)-[:WORKS_AT {since: date('2019-06-01')}]->(acme)
CREATE (alice)-[:KNOWS {weight: 0.5}]->(bob)
CREATE (alice)-[:KNOWS {weight: 0.5}]->(bob)
CREATE (bob)-[:KNOWS]->(alice)
CREATE (carol)-[:MANAGES]->(carol)
CREATE (orphan)-[:MENTIONS {at: datetime('2024-05-05T05:05:05Z')}]->(acme)
WITH alice, bob, acme
UNWIND range(1, $tags) AS i
CREATE (t:Tag {name: 'tag' + i, n: i})
CREATE (alice)-[:TAGGED {i: i}]->(t)
"""


def create_sample_graph(server: Neo4jServer, url: str | None = None, tags: int = 50) -> None:
    """The sample graph (see the module docstring) plus ``tags`` Tag nodes:
    Tag nodes carry no other label and are linked only to a Person, so a
    subset restore of ``Tag`` is exactly the ``Tag`` table."""
    server.run(SAMPLE, url, photo=bytearray(b"\x00\x01\xffjpeg"), tags=tags)
    server.run("CREATE CONSTRAINT person_email FOR (p:Person) REQUIRE p.email IS UNIQUE", url)
    server.run("CREATE INDEX company_name FOR (c:Company) ON (c.name)", url)
    server.run("CREATE TEXT INDEX person_name_text FOR (p:Person) ON (p.name)", url)
    server.run("CALL db.awaitIndexes(300)", url)


def create_bulk_graph(server: Neo4jServer, nodes: int, rels: int, url: str | None = None) -> None:
    """``nodes`` nodes over three labels and ``rels`` relationships among
    them, built in batches server-side (for size and timing figures)."""
    server.run(
        "UNWIND range(0, $n - 1) AS i CALL { WITH i CREATE (:Item {id: i, name: 'item-' + i, "
        "price: i * 0.25, tags: ['t' + (i % 7), 't' + (i % 11)], added: date('2024-01-01') "
        "+ duration({days: i % 365})}) } IN TRANSACTIONS OF 20000 ROWS", url, n=nodes)  # fmt: skip
    server.run("MATCH (n:Item) WHERE n.id % 3 = 1 SET n:Book", url)
    server.run("MATCH (n:Item) WHERE n.id % 3 = 2 SET n:Music", url)
    server.run("CREATE INDEX item_id FOR (n:Item) ON (n.id)", url)
    server.run("CALL db.awaitIndexes(300)", url)
    links = (
        "UNWIND range(0, $r - 1) AS j CALL { WITH j MATCH (a:Item {id: j % $n}) "
        "MATCH (b:Item {id: (j * 7919 + 13) % $n}) CREATE (a)-[:LINKS {w: j % 100, "
        "kind: 'k' + (j % 5)}]->(b) } IN TRANSACTIONS OF 20000 ROWS"
    )
    server.run(links, url, r=rels, n=nodes)


@contextmanager
def own_dbms(server: Neo4jServer, home: Path, port: int) -> Iterator[str]:
    """A DBMS of the test's own (the launcher, one instance on ``home``),
    stopped cleanly (SIGTERM, the launcher's shutdown hook) when the block
    ends; yields its Bolt URL. The password reaches it through a 0600 file,
    never argv."""
    if not server.classpath:
        _unavailable("DBFLEET_TEST_NEO4J_HOME (the launcher's classpath) is not set")
    assert server.classpath is not None
    secret = home.parent / f".{home.name}.password"
    secret.write_text(os.environ[NEO4J_PASSWORD_ENV])
    secret.chmod(0o600)
    log = home.parent / f"{home.name}.log"
    classpath = f"{server.classpath}/neo4j-launcher.jar:{server.classpath}/lib/*"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["java", "-Xmx512m", "-XX:+UseSerialGC", "-cp", classpath,
             "dbfleet.testserver.Launcher", str(home), str(port)],
            env={**os.environ, "NEO4J_LAUNCHER_PASSWORD_FILE": str(secret)},
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    url = f"bolt://neo4j@127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while b"launcher: all ready" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the launcher did not start in 120 s"
            time.sleep(0.3)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
