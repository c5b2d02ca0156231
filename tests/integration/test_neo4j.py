"""The neo4j engine against the real Neo4j Community 5.26 test server.

Logical mode: round trip of the sample graph (shape, every property type,
schema), subset restore by label, restore conflicts and ``--clean``, broken
sources, secrets, a restore drill through the operations layer. Offline
mode: a DBMS of the test's own is really stopped, dumped with neo4j-admin
through dbfleet, loaded into a fresh home, started, and compared.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from dbfleet.config import parse_inventory
from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.registry import engine_for
from dbfleet.errors import EngineError, UsageError
from dbfleet.operations.backup import backup_many
from dbfleet.operations.common import Repositories, SnapshotSource
from dbfleet.operations.drill import drill_targets
from dbfleet.operations.repository import init_repository
from dbfleet.repo import Repository
from tests.integration.conftest import FAST_KDF, BackupFn
from tests.integration.fixtures_neo4j import (
    NEO4J_PASSWORD_ENV,
    Neo4jServer,
    create_sample_graph,
    own_dbms,
)

OFFLINE_PORTS = (17689, 17690)


def _scratch(server: Neo4jServer) -> Any:
    return engine_for(engine_for(server.config()).scratch("it"))


def test_round_trip_preserves_shape_types_and_schema(
    neo4j_server: Neo4jServer, backup: BackupFn, repo: Repository
) -> None:
    create_sample_graph(neo4j_server)
    meta, snapshot = backup(engine_for(neo4j_server.config()))
    fp = snapshot.fingerprint
    assert fp is not None and fp["nodes"] == 55 and fp["relationships"] == 57
    assert fp["tables"]["Employee"]["count"] == 2 and fp["tables"]["()"]["count"] == 1
    assert fp["tables"]["[KNOWS]"]["count"] == 3 and meta.options["skipped_relationships"] == 0
    target = _scratch(neo4j_server)
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    assert compare_fingerprints(fp, target.fingerprint()) == []

    scratch = neo4j_server.scratch_url
    run = neo4j_server.run
    # shape: multi-label nodes, parallel relationships, a self-loop, direction
    assert run("MATCH (n:Person:Manager:Employee) RETURN n.name AS n", scratch) == [{"n": "Carol"}]
    knows = run("MATCH (:Person {name: 'Alice'})-[r:KNOWS]->(:Person {name: 'Bob'}) "
                "RETURN r.weight AS w", scratch)  # fmt: skip
    assert knows == [{"w": 0.5}, {"w": 0.5}]
    assert run("MATCH (c)-[:MANAGES]->(c) RETURN c.name AS n", scratch) == [{"n": "Carol"}]
    assert run("MATCH (n) WHERE size(labels(n)) = 0 RETURN n.`odd key` AS k", scratch) == [
        {"k": "x"}]  # fmt: skip
    # property types come back as the same Neo4j types
    (alice,) = run("MATCH (n {name: 'Alice'}) RETURN n", scratch)
    original = run("MATCH (n {name: 'Alice'}) RETURN n")[0]["n"]
    assert alice["n"] == original
    # byte arrays come back as bytes (valueType() calls them LIST<INTEGER>)
    assert isinstance(alice["n"]["photo"], bytes) and alice["n"]["photo"] == b"\x00\x01\xffjpeg"
    types = run("MATCH (n {name: 'Alice'}) RETURN valueType(n.score) AS score, "
                "valueType(n.created) AS created, valueType(n.photo) AS photo, "
                "valueType(n.days) AS days, valueType(n.peak) AS peak, "
                "valueType(n.empty) AS empty, toString(n.created) AS zone", scratch)  # fmt: skip
    assert types[0] == {
        "score": "FLOAT NOT NULL", "created": "ZONED DATETIME NOT NULL",
        "photo": "LIST<INTEGER NOT NULL> NOT NULL", "days": "LIST<DATE NOT NULL> NOT NULL",
        "peak": "POINT NOT NULL", "empty": types[0]["empty"],
        "zone": "2024-03-31T03:30:00.5+02:00[Europe/Berlin]",
    }  # fmt: skip
    assert run("MATCH (n {name: 'Bob'}) RETURN valueType(n.score) AS t", scratch) == [
        {"t": "INTEGER NOT NULL"}]  # fmt: skip
    # schema: the constraint is enforced, the indexes exist; no import leftovers
    with pytest.raises(Exception, match="already exists"):
        run("CREATE (:Person {email: 'alice@example.org'})", scratch)
    indexes = {r["name"]: r["type"] for r in run("SHOW INDEXES YIELD name, type", scratch)}
    assert indexes["person_name_text"] == "TEXT" and indexes["company_name"] == "RANGE"
    assert "__dbfleet_import" not in indexes
    assert run("MATCH (n) WHERE n:__DbfleetImport OR n.__dbfleet_id IS NOT NULL "
               "RETURN count(n) AS c", scratch) == [{"c": 0}]  # fmt: skip


def test_subset_restore_of_a_label(
    neo4j_server: Neo4jServer, backup: BackupFn, repo: Repository
) -> None:
    create_sample_graph(neo4j_server)
    _, snapshot = backup(engine_for(neo4j_server.config()))
    assert snapshot.fingerprint is not None
    target = _scratch(neo4j_server)
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions(tables=("Person",)))
    restored = target.fingerprint()
    assert compare_fingerprints(snapshot.fingerprint, restored, ("Person",)) == []
    # the Person nodes with all their labels, the relationships among them only
    assert set(restored["tables"]) == {"Person", "Employee", "Manager", "[KNOWS]", "[MANAGES]"}
    assert restored["tables"]["[KNOWS]"] == snapshot.fingerprint["tables"]["[KNOWS]"]
    names = {r["name"] for r in neo4j_server.run("SHOW INDEXES YIELD name",
                                                  neo4j_server.scratch_url)}  # fmt: skip
    assert {"person_email", "person_name_text"} <= names and "company_name" not in names

    with pytest.raises(UsageError, match="labels, not relationship types"):
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions(tables=("[KNOWS]",)))
    with pytest.raises(UsageError, match="no node in the backup has label"):
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions(tables=("Nope",)))


def test_existing_data_needs_clean_and_clean_leaves_other_labels(
    neo4j_server: Neo4jServer, backup: BackupFn, repo: Repository
) -> None:
    create_sample_graph(neo4j_server, tags=5)
    _, snapshot = backup(engine_for(neo4j_server.config()))
    assert snapshot.fingerprint is not None
    scratch = neo4j_server.scratch_url
    neo4j_server.run("CREATE (:Other {keep: true})", scratch)
    target = _scratch(neo4j_server)
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    neo4j_server.run("MATCH (t:Tag {n: 1}) SET t.n = -1", scratch)
    with pytest.raises(EngineError, match="already holds data of the backup") as caught:
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    assert "--clean" in str(caught.value)
    assert neo4j_server.run("MATCH (t:Tag) RETURN count(t) AS c", scratch) == [{"c": 5}]
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions(clean=True))
    restored = target.fingerprint()
    assert compare_fingerprints(snapshot.fingerprint, restored, tuple(
        snapshot.fingerprint["tables"])) == []  # fmt: skip
    assert neo4j_server.run("MATCH (o:Other) RETURN o.keep AS k", scratch) == [{"k": True}]


def test_broken_sources_fail_with_clear_errors_and_record_nothing(
    neo4j_server: Neo4jServer, backup: BackupFn, repo: Repository,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    password = os.environ[NEO4J_PASSWORD_ENV]
    missing = engine_for(neo4j_server.config(url=neo4j_server.url + "/nosuchdb"))
    with pytest.raises(EngineError, match="nosuchdb") as caught:
        backup(missing)
    assert "database name" in str(caught.value)
    monkeypatch.setenv("DBFLEET_TEST_NEO4J_WRONG", "not-the-password")
    wrong = engine_for(neo4j_server.config(password_env="DBFLEET_TEST_NEO4J_WRONG"))
    with pytest.raises(EngineError, match="DBFLEET_TEST_NEO4J_WRONG") as caught:
        backup(wrong)
    assert "not-the-password" not in str(caught.value)
    down = engine_for(neo4j_server.config(url="bolt://neo4j@127.0.0.1:1"))
    with pytest.raises(EngineError, match="server is running") as caught:
        backup(down)
    health = down.health()
    assert not health.ok and health.error and password not in health.error
    assert repo.list_snapshots() == []
    good = engine_for(neo4j_server.config()).health()
    assert good.ok and good.version and good.version.startswith("5.")
    assert good.details["edition"] == "community"
    routed = neo4j_server.config(url=neo4j_server.url.replace("bolt://", "neo4j://"))
    assert engine_for(routed).health().ok  # neo4j:// (routing) URLs work on one server
    with pytest.raises(UsageError, match="neo4j url must start with"):
        engine_for(neo4j_server.config(url="http://127.0.0.1:7474"))


def test_drop_refuses_a_location_not_marked_disposable(neo4j_server: Neo4jServer) -> None:
    neo4j_server.run("CREATE (:Precious)")
    with pytest.raises(UsageError, match="not marked disposable"):
        engine_for(neo4j_server.config()).drop()
    assert neo4j_server.run("MATCH (n:Precious) RETURN count(n) AS c") == [{"c": 1}]
    with pytest.raises(UsageError, match="scratch_url"):
        engine_for(neo4j_server.config(options={"scratch_url": ""})).scratch("x")


class _ProcSpy:
    """A sink that, while a stream is being read, looks at every process's
    command line for the password."""

    def __init__(self, password: str) -> None:
        self.password = password.encode()
        self.seen: list[str] = []
        self.scanned = 0

    def write_stream(self, name: str, source: BinaryIO, media_type: str = "") -> None:
        first = True
        while chunk := source.read(1 << 16):
            if first:
                for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                    try:
                        data = cmdline.read_bytes()
                    except OSError:
                        continue
                    self.scanned += 1
                    if self.password in data:
                        self.seen.append(str(cmdline))
                first = False
            assert chunk


def test_password_never_on_a_command_line(neo4j_server: Neo4jServer, tmp_path: Path) -> None:
    password = os.environ[NEO4J_PASSWORD_ENV]
    create_sample_graph(neo4j_server, tags=3)
    spy = _ProcSpy(password)
    engine_for(neo4j_server.config()).backup(spy)
    assert spy.scanned > 3 and spy.seen == []  # the launchers run while the backup reads
    with own_dbms(neo4j_server, tmp_path / "home", OFFLINE_PORTS[0]):
        pass  # start and stop: the home now holds a stopped database
    offline = neo4j_server.config(url=f"bolt://127.0.0.1:{OFFLINE_PORTS[0]}", options={
        "mode": "offline", "neo4j_admin": neo4j_server.admin,
        "neo4j_home": str(tmp_path / "home")})  # fmt: skip
    spy = _ProcSpy(password)
    engine_for(offline).backup(spy)  # neo4j-admin runs while the dump streams
    assert spy.scanned > 3 and spy.seen == []


def test_drill_restores_into_the_scratch_server(
    neo4j_server: Neo4jServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_sample_graph(neo4j_server)
    monkeypatch.setenv("DBFLEET_TEST_NEO4J_REPO_PW", "drill")
    entry = neo4j_server.config(rto="10m").model_dump(mode="json", exclude_defaults=True)
    inventory = parse_inventory({
        "repositories": {"mem": {"url": f"memory://neo4j-{secrets.token_hex(4)}",
                                 "passphrase_env": "DBFLEET_TEST_NEO4J_REPO_PW"}},
        "databases": {"graph": entry},
    })  # fmt: skip
    init_repository(inventory, "mem", kdf=FAST_KDF)
    repos = Repositories(inventory)
    (result,) = backup_many(repos, ["graph"])
    assert result.ok, result
    (drill,) = drill_targets(repos, ["graph"])["graph"]
    print(f"\nDRILL neo4j: rto={drill.rto_seconds}s restore={drill.restore_seconds}s")
    assert drill.result == "pass", (drill.reason, drill.differences)
    assert drill.scratch == neo4j_server.scratch_url and drill.tables_compared > 10
    assert drill.within_objective is True
    assert neo4j_server.run("MATCH (n) RETURN count(n) AS c", neo4j_server.scratch_url) == [
        {"c": 0}]  # fmt: skip


def test_offline_dump_and_load_of_a_stopped_dbms(
    neo4j_server: Neo4jServer, repo: Repository, backup: BackupFn, tmp_path: Path
) -> None:
    if not neo4j_server.admin:
        pytest.fail("DBFLEET_TEST_NEO4J_ADMIN (the neo4j-admin wrapper) is not set")
    source_home, target_home = tmp_path / "source", tmp_path / "target"
    port, target_port = OFFLINE_PORTS

    def offline(url_port: int, home: Path) -> Any:
        options = {"mode": "offline", "neo4j_admin": neo4j_server.admin, "neo4j_home": str(home)}
        return neo4j_server.config(url=f"bolt://neo4j@127.0.0.1:{url_port}", options=options)

    with own_dbms(neo4j_server, source_home, port) as url:
        create_sample_graph(neo4j_server, url)
        expected = engine_for(offline(port, source_home)).fingerprint()
        with pytest.raises(EngineError, match="is running; offline mode needs it stopped"):
            backup(engine_for(offline(port, source_home)))
    # the DBMS is stopped now: dump it through dbfleet
    meta, snapshot = backup(engine_for(offline(port, source_home)))
    assert meta.tool == "neo4j-admin database dump" and snapshot.fingerprint is None
    assert snapshot.size > 0 and meta.options["mode"] == "offline"
    target = engine_for(offline(target_port, target_home))
    target_home.mkdir()
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    with pytest.raises(EngineError, match="neo4j-admin exited"):  # exists: needs clean
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions(clean=True))
    with own_dbms(neo4j_server, target_home, target_port):
        assert compare_fingerprints(expected, target.fingerprint()) == []
        assert expected["nodes"] == 55 and expected["relationships"] == 57
