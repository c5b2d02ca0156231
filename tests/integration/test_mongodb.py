"""The MongoDB engine against the real test server: FerretDB v1.24 over SQLite
with mongodump/mongorestore 100.10.0 (scripts/servers/mongodb.sh).

Not exercised here (FerretDB has no replica sets, users, Decimal128, TTL or
partial indexes, validators): ``--oplog`` against a real oplog (the decision
logic is unit-tested in tests/unit/test_mongodb_units.py), a rejected
password, and those types and index kinds."""

from __future__ import annotations

import glob
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from bson import json_util

from dbfleet.config import parse_inventory
from dbfleet.engines import mongodb as mongodb_engine_module
from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.mongodb import MongoDBEngine
from dbfleet.engines.mongodb.archive import MAGIC
from dbfleet.engines.mongodb.location import SCRATCH_PREFIX, Location
from dbfleet.engines.registry import engine_for
from dbfleet.errors import EngineError, ToolMissingError, UsageError
from dbfleet.operations.backup import backup_many
from dbfleet.operations.common import Repositories, SnapshotSource
from dbfleet.operations.drill import drill_targets
from dbfleet.operations.repository import init_repository
from dbfleet.operations.restore import verify_snapshot
from dbfleet.repo import Repository, Snapshot, iter_stream
from tests.integration.conftest import FAST_KDF, BackupFn, restore_as
from tests.integration.fixtures_mongodb import (
    MONGO_PASSWORD_ENV,
    TOOLS_ENV,
    MongoServer,
    create_sample_database,
    order,
)

NewName = Callable[[str], str]
SAMPLE = {"orders", "customers", "events", "empty"}


@pytest.fixture
def mongo_source(mongo_server: MongoServer, mongo_databases: NewName) -> str:
    name = mongo_databases("src")
    create_sample_database(mongo_server, name)
    return name


def _restore(repo: Repository, snapshot: Snapshot, config: Any, **options: Any) -> MongoDBEngine:
    return restore_as(MongoDBEngine, repo, snapshot, config, **options)


def _documents(server: MongoServer, db: str, collection: str) -> list[str]:
    with server.client() as client:
        docs = client[db][collection].find({}).sort("_id", 1)
        return [json_util.dumps(d, json_options=json_util.CANONICAL_JSON_OPTIONS) for d in docs]


def test_round_trip_under_another_name_keeps_types_indexes_and_options(
    mongo_server: MongoServer, mongo_source: str, mongo_databases: NewName,
    repo: Repository, backup: BackupFn,
) -> None:  # fmt: skip
    engine = engine_for(mongo_server.config(mongo_source))
    meta, snapshot = backup(engine)
    fp = meta.fingerprint
    assert fp is not None and set(fp["tables"]) == SAMPLE
    assert {k: v["count"] for k, v in fp["tables"].items()} == {
        "orders": 500, "customers": 7, "events": 50, "empty": 0,
    }  # fmt: skip
    orders = fp["tables"]["orders"]
    assert 'n_unique {"key":[["n",1]],"unique":true}' in orders["indexes"]
    # a compound index keeps its field order and directions
    assert 'customer_1_placed_-1 {"key":[["customer",1],["placed",-1]]}' in orders["indexes"]
    assert fp["tables"]["events"]["options"] == '{"capped":true,"size":1048576}'
    assert fp["tables"]["empty"]["indexes"] == ['_id_ {"key":[["_id",1]]}', 'x_1 {"key":[["x",1]]}']
    assert meta.tool == "mongodump --archive" and meta.tool_version == "100.10.0"
    assert meta.server_version and meta.consistency_point is None
    assert meta.options["oplog"] is False and "not a replica set" in meta.options["oplog_reason"]
    assert [s.name for s in snapshot.streams] == ["archive", "manifest"]
    assert b"".join(iter_stream(repo, snapshot, "archive"))[:4] == MAGIC

    target_name = mongo_databases("copy")
    target = _restore(repo, snapshot, engine.target(target_name))
    assert compare_fingerprints(fp, target.fingerprint()) == []
    # the fingerprint is not fooled: the documents themselves are equal
    for collection in SAMPLE:
        assert _documents(mongo_server, target_name, collection) == _documents(
            mongo_server, mongo_source, collection
        ), collection
    with mongo_server.client() as client:
        options = client[target_name]["events"].options()
        assert options.get("capped") is True
        index = client[target_name]["orders"].index_information()["n_unique"]
        assert index.get("unique") is True


def test_restore_of_one_collection(
    mongo_server: MongoServer, mongo_source: str, mongo_databases: NewName,
    repo: Repository, backup: BackupFn,
) -> None:  # fmt: skip
    engine = engine_for(mongo_server.config(mongo_source))
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    target_name = mongo_databases("one")
    target = _restore(repo, snapshot, engine.target(target_name), tables=("customers",))
    restored = target.fingerprint()
    assert set(restored["tables"]) == {"customers"}
    assert restored["tables"]["customers"] == meta.fingerprint["tables"]["customers"]
    with pytest.raises(UsageError, match="not in the backup: nope"):
        _restore(repo, snapshot, engine.target(mongo_databases("none")), tables=("nope",))


def test_a_conflicting_restore_changes_nothing_and_clean_replaces(
    mongo_server: MongoServer, mongo_source: str, mongo_databases: NewName,
    repo: Repository, backup: BackupFn,
) -> None:  # fmt: skip
    engine = engine_for(mongo_server.config(mongo_source))
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    target_name = mongo_databases("clash")
    with mongo_server.client() as client:
        client[target_name].customers.insert_one({"_id": "intruder"})
        client[target_name].other.insert_one({"keep": True})
    target = engine_for(engine.target(target_name))
    with pytest.raises(EngineError, match="already exist.*customers"):
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    assert _documents(mongo_server, target_name, "customers") == ['{"_id": "intruder"}']
    assert mongo_server.databases().count(target_name) == 1
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions(clean=True))
    restored = target.fingerprint()
    assert restored["tables"].pop("other")["count"] == 1  # not in the backup: left alone
    assert compare_fingerprints(meta.fingerprint, restored) == []


def test_namespace_filter_leaves_collections_out(
    mongo_server: MongoServer, mongo_source: str, mongo_databases: NewName,
    repo: Repository, backup: BackupFn,
) -> None:  # fmt: skip
    config = mongo_server.config(mongo_source, options={"exclude_collections": ["ev*", "empty"]})
    engine = engine_for(config)
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    assert set(meta.fingerprint["tables"]) == {"orders", "customers"}
    assert meta.options["excluded_collections"] == ["empty", "events"]
    target_name = mongo_databases("filtered")
    _restore(repo, snapshot, engine.target(target_name))
    with mongo_server.client() as client:
        assert set(client[target_name].list_collection_names()) == {"orders", "customers"}
    only = mongo_server.config(mongo_source, options={"collections": ["cust*"]})
    meta, _ = backup(engine_for(only))
    assert meta.fingerprint is not None and set(meta.fingerprint["tables"]) == {"customers"}


def test_whole_instance_backup_and_restore_of_a_subset(
    mongo_server: MongoServer, mongo_source: str, repo: Repository, backup: BackupFn
) -> None:
    engine = engine_for(mongo_server.config(None))
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    tables = meta.fingerprint["tables"]
    assert {f"{mongo_source}.{c}" for c in SAMPLE} <= set(tables)
    assert not [t for t in tables if t.split(".")[0] in ("admin", "config", "local")]
    expected = {f"{mongo_source}.orders", f"{mongo_source}.customers"}
    with pytest.raises(UsageError, match="whole instance"):
        _restore(repo, snapshot, engine.target(f"{mongo_source}_x"))
    with pytest.raises(UsageError, match="a database snapshot into a database"):
        _restore(repo, snapshot, engine.scratch("verify").with_changes(
            url=mongo_server.url_for(f"{mongo_source}_x")))  # fmt: skip
    mongo_server.drop_database(mongo_source)
    restored = _restore(repo, snapshot, mongo_server.config(None), tables=tuple(sorted(expected)))
    after = restored.fingerprint(tuple(sorted(expected)))
    assert set(after["tables"]) == expected
    assert compare_fingerprints(meta.fingerprint, after, tuple(sorted(expected))) == []


def test_backup_of_a_missing_database_fails_and_records_nothing(
    mongo_server: MongoServer, mongo_databases: NewName, repo: Repository, backup: BackupFn
) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        backup(engine_for(mongo_server.config(mongo_databases("missing"))))
    assert repo.list_snapshots() == []


def test_unreachable_server_fails_fast_with_a_clear_error(
    mongo_source: str, repo: Repository, backup: BackupFn
) -> None:
    config = MongoServer("mongodb://dbfleet@127.0.0.1:9/").config(
        mongo_source, options={"connect_timeout": 2}
    )
    began = time.monotonic()
    with pytest.raises(EngineError, match="unreachable") as failure:
        backup(engine_for(config))
    assert time.monotonic() - began < 15
    assert failure.value.hint and "url" in failure.value.hint
    assert repo.list_snapshots() == []
    health = engine_for(config).health()
    assert not health.ok and "unreachable" in (health.error or "")


def test_bad_url_is_a_usage_error(mongo_server: MongoServer) -> None:
    with pytest.raises(UsageError, match="mongodb://"):
        engine_for(mongo_server.config("x").with_changes(url="http://127.0.0.1:17017/x"))
    with pytest.raises(UsageError, match="names a collection"):
        engine_for(mongo_server.config("x").with_changes(url="mongodb://127.0.0.1/a.b"))
    with pytest.raises(UsageError, match="invalid MongoDB url"):
        engine_for(mongo_server.config("x").with_changes(url="mongodb://127.0.0.1/a%24b"))
    with pytest.raises(UsageError, match="invalid MongoDB database name"):
        engine_for(mongo_server.config("x")).target("a/b")
    with pytest.raises(UsageError, match="unknown mongodb option"):
        engine_for(mongo_server.config("x", options={"tool_dir": "/x"}))


def test_missing_mongodump_names_what_to_install(
    mongo_server: MongoServer, mongo_source: str, repo: Repository, backup: BackupFn,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    monkeypatch.delenv(TOOLS_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError) as failure:
        backup(engine_for(mongo_server.config(mongo_source)))
    message = str(failure.value)
    assert "mongodump not found" in message and "mongodb-database-tools" in message
    assert "go build github.com/mongodb/mongo-tools/mongodump/main" in message
    config = mongo_server.config(mongo_source, options={"tools_dir": str(tmp_path)})
    with pytest.raises(ToolMissingError, match="options.tools_dir"):
        backup(engine_for(config))
    assert repo.list_snapshots() == []
    assert "not found" in engine_for(config).health().details["mongodump"]


@contextmanager
def _watch_command_lines(secret: bytes) -> Iterator[tuple[list[str], list[str]]]:
    """Poll every process's argv while the block runs: (leaks, mongo tools seen)."""
    leaks: list[str] = []
    tools: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if secret in argv:
                        leaks.append(argv.replace(b"\0", b" ").decode(errors="replace"))
                    if b"/mongodump\0" in argv or b"/mongorestore\0" in argv:
                        tools.append(argv.replace(b"\0", b" ").decode(errors="replace"))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield leaks, tools
    finally:
        stop.set()
        thread.join()


def test_password_never_appears_in_a_command_line(
    mongo_server: MongoServer, mongo_databases: NewName, repo: Repository, backup: BackupFn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # FerretDB accepts any password (PLAIN, nothing to check against): a
    # fresh one makes any occurrence in an argv a leak of this test's.
    password = f"pw-{secrets.token_hex(8)}"
    monkeypatch.setenv(MONGO_PASSWORD_ENV, password)
    name = mongo_databases("pw")
    create_sample_database(mongo_server, name, orders=3000)
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "dbfleet-mongo-*")))
    engine = engine_for(mongo_server.config(name))
    with _watch_command_lines(password.encode()) as (leaks, tools):
        meta, snapshot = backup(engine)
        _restore(repo, snapshot, engine.target(mongo_databases("pwcopy")))
    assert leaks == []
    assert any("mongodump" in t and "--config" in t for t in tools), "mongodump was not seen"
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "dbfleet-mongo-*"))) == before
    assert meta.fingerprint and meta.fingerprint["tables"]["orders"]["count"] == 3000


def test_unchanged_collections_deduplicate(
    mongo_server: MongoServer, mongo_databases: NewName, repo: Repository, backup: BackupFn
) -> None:
    name = mongo_databases("dedup")
    create_sample_database(mongo_server, name, orders=14000)
    engine = engine_for(mongo_server.config(name))
    _, first = backup(engine)
    with mongo_server.client() as client:
        client[name].customers.insert_one({"_id": "new", "email": "new@example.org"})
    _, second = backup(engine)
    assert first.size > 4 << 20
    # one collection changed: the archive's other collections are stored once
    assert second.added_bytes < first.size // 4


def test_health(mongo_server: MongoServer, mongo_source: str, mongo_databases: NewName) -> None:
    health = engine_for(mongo_server.config(mongo_source)).health()
    assert health.ok, health.error
    assert health.version and health.size_bytes and health.size_bytes > 0
    assert health.details["collections"] == 4 and health.details["replica_set"] is None
    assert "ferretdb" in health.details  # the test server says what it is
    assert health.details["mongodump"].endswith("/mongodump")
    missing = engine_for(mongo_server.config(mongo_databases("nohealth"))).health()
    assert not missing.ok and "does not exist" in (missing.error or "")


def test_server_entry_and_drill(
    mongo_server: MongoServer, mongo_databases: NewName, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = mongo_databases("srv")
    members = [f"{prefix}_a", f"{prefix}_b"]
    for name in members:
        create_sample_database(mongo_server, name, orders=100)
    monkeypatch.setenv("DBFLEET_TEST_REPO_PW", "mongo-server-entry")
    inventory = parse_inventory({
        "repositories": {"mem": {"url": f"memory://mongo-{prefix}",
                                 "passphrase_env": "DBFLEET_TEST_REPO_PW"}},
        "databases": {"mongo-main": {
            "engine": "mongo", "url": mongo_server.url_for(None),
            "password_env": MONGO_PASSWORD_ENV, "all_databases": True,
            "include": [f"{prefix}_*"], "rto": "5m",
        }},
    })  # fmt: skip
    init_repository(inventory, "mem", kdf=FAST_KDF)
    assert set(members) <= set(MongoDBEngine(mongo_server.config(None)).list_databases())
    repos = Repositories(inventory)
    backups = backup_many(repos, ["mongo-main"])
    assert [(b.database, b.ok) for b in backups] == [(f"mongo-main/{m}", True) for m in members]

    results = drill_targets(repos, ["mongo-main"])["mongo-main"]
    assert [(r.database, r.result) for r in results] == [
        (f"mongo-main/{m}", "pass") for m in members
    ], [(r.reason, r.differences) for r in results]
    assert all(r.tables_compared == 4 and r.scratch and "_dbfleet_drill_" in r.scratch
               for r in results)  # fmt: skip
    leftovers = [d for d in mongo_server.databases() if "_dbfleet_" in d and prefix in d]
    assert leftovers == [], "the scratch databases were not dropped"


def test_sample_order_documents_are_varied() -> None:
    """The sample covers the BSON types the round trip claims to exercise."""
    doc = order(7)
    kinds = {type(v).__name__ for v in doc.values()}
    assert {"ObjectId", "datetime", "float", "Int64", "bool", "Binary", "list", "dict",
            "Regex", "Timestamp", "str"} <= kinds  # fmt: skip


def test_a_user_without_a_password_is_told_what_is_missing(
    mongo_server: MongoServer, mongo_source: str, repo: Repository, backup: BackupFn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # mongodump would prompt on its (closed) stdin for the password instead
    monkeypatch.delenv("DBFLEET_TEST_UNSET_PW", raising=False)
    engine = engine_for(mongo_server.config(mongo_source, password_env="DBFLEET_TEST_UNSET_PW"))
    with pytest.raises(UsageError, match="no password for MongoDB user 'dbfleet'") as failure:
        backup(engine)
    assert failure.value.hint == "set $DBFLEET_TEST_UNSET_PW"
    assert repo.list_snapshots() == []


def test_a_failing_dump_tool_fails_the_backup_with_its_message(
    mongo_server: MongoServer, mongo_source: str, repo: Repository, backup: BackupFn,
    tmp_path: Path,
) -> None:  # fmt: skip
    tools = tmp_path / "tools"
    tools.mkdir()
    fake = tools / "mongodump"
    fake.write_text(
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'mongodump version: 0'; exit 0; }\n"
        "printf 'partial'; echo 'Failed: disk on fire' >&2; exit 3\n"
    )
    fake.chmod(0o755)
    engine = engine_for(mongo_server.config(mongo_source, options={"tools_dir": str(tools)}))
    with pytest.raises(EngineError, match="mongodump exited with status 3: Failed: disk on fire"):
        backup(engine)
    assert repo.list_snapshots() == []
    fake.write_text(
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'mongodump version: 0'; exit 0; }\n"
        "printf 'not an archive at all'\n"
    )
    with pytest.raises(EngineError, match="unreadable archive.*magic"):
        backup(engine)
    assert repo.list_snapshots() == []


def _whole_instance_repos(
    mongo_server: MongoServer, label: str, monkeypatch: pytest.MonkeyPatch
) -> Repositories:
    monkeypatch.setenv("DBFLEET_TEST_REPO_PW", "mongo-whole-instance")
    inventory = parse_inventory({
        "repositories": {"mem": {"url": f"memory://mongo-whole-{label}",
                                 "passphrase_env": "DBFLEET_TEST_REPO_PW"}},
        "databases": {"cluster": {
            "engine": "mongodb", "url": mongo_server.url_for(None),
            "password_env": MONGO_PASSWORD_ENV, "rto": "5m",
        }},
    })  # fmt: skip
    init_repository(inventory, "mem", kdf=FAST_KDF)
    return Repositories(inventory)


def _prefix_of(scratch: str | None) -> str:
    """The database prefix of a whole instance's scratch location (its url)."""
    assert scratch is not None
    prefix = Location.parse(scratch).database_prefix
    assert prefix is not None and prefix.startswith(SCRATCH_PREFIX), scratch
    return prefix


def test_whole_instance_verify_and_drill_restore_under_a_prefix(
    mongo_server: MongoServer, mongo_databases: NewName, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Other databases on the shared server are in the snapshot too; the
    # verify is still deterministic: the scratch holds exactly the snapshot's
    # databases, and the comparison is with the snapshot's own fingerprint.
    mine = [mongo_databases("wa"), mongo_databases("wb")]
    for name in mine:
        create_sample_database(mongo_server, name, orders=60)
    repos = _whole_instance_repos(mongo_server, mine[0], monkeypatch)
    (backed_up,) = backup_many(repos, ["cluster"])
    assert backed_up.ok, backed_up.error
    _, snapshot = repos.locate("cluster:latest")
    assert snapshot.fingerprint is not None
    assert {f"{db}.{c}" for db in mine for c in SAMPLE} <= set(snapshot.fingerprint["tables"])

    verified = verify_snapshot(repos, "cluster:latest")
    assert verified.ok, verified.differences
    prefix = _prefix_of(verified.scratch)
    assert prefix.startswith(f"{SCRATCH_PREFIX}verify_")
    assert verified.tables_compared == len(snapshot.fingerprint["tables"]) >= 8
    assert [d for d in mongo_server.databases() if d.startswith(prefix)] == []

    (drilled,) = drill_targets(repos, ["cluster"])["cluster"]
    assert drilled.result == "pass", (drilled.reason, drilled.differences)
    prefix = _prefix_of(drilled.scratch)
    assert prefix.startswith(f"{SCRATCH_PREFIX}drill_")
    assert [d for d in mongo_server.databases() if d.startswith(prefix)] == []
    # the source's databases are untouched
    for name in mine:
        tables = engine_for(mongo_server.config(name)).fingerprint()["tables"]
        assert tables["orders"]["count"] == 60


def test_whole_instance_scratch_sees_a_difference_and_stays_out_of_backups(
    mongo_server: MongoServer, mongo_databases: NewName, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    name = mongo_databases("wk")
    create_sample_database(mongo_server, name, orders=40)
    repos = _whole_instance_repos(mongo_server, name, monkeypatch)
    (backed_up,) = backup_many(repos, ["cluster"])
    assert backed_up.ok, backed_up.error
    _, snapshot = repos.locate("cluster:latest")
    assert snapshot.fingerprint is not None

    # a restore that loses a collection (mongorestore told to skip it) fails the verify
    real_argv = mongodb_engine_module.restore_argv

    def lossy_argv(*args: Any, **kwargs: Any) -> list[str]:
        return [*real_argv(*args, **kwargs), f"--nsExclude={name}.customers"]

    with monkeypatch.context() as patch:
        patch.setattr(mongodb_engine_module, "restore_argv", lossy_argv)
        failed = verify_snapshot(repos, "cluster:latest")
    assert not failed.ok and len(failed.differences) == 1  # the indexes made it empty, not absent
    assert failed.differences[0].startswith(f"{name}.customers: count 7 != 0")
    assert [d for d in mongo_server.databases() if d.startswith(_prefix_of(failed.scratch))] == []

    kept = verify_snapshot(repos, "cluster:latest", keep=True)
    prefix = _prefix_of(kept.scratch)
    scratch = engine_for(mongo_server.config(None).with_changes(url=kept.scratch))
    assert isinstance(scratch, MongoDBEngine)
    try:
        assert kept.ok, kept.differences
        copy = f"{prefix}{name}"
        assert copy in mongo_server.databases()
        # the scratch's fingerprint names the source's databases, and sees a change
        assert compare_fingerprints(snapshot.fingerprint, scratch.fingerprint()) == []
        with mongo_server.client() as client:
            client[copy].orders.delete_one({"n": 7})
        differences = compare_fingerprints(snapshot.fingerprint, scratch.fingerprint())
        assert len(differences) == 1 and differences[0].startswith(f"{name}.orders: count 40 != 39")

        # leftover scratch databases are not part of the instance's snapshots
        instance = MongoDBEngine(mongo_server.config(None))
        assert not [d for d in instance.list_databases() if d.startswith(SCRATCH_PREFIX)]
        assert not [t for t in instance.fingerprint()["tables"] if t.startswith(SCRATCH_PREFIX)]
        with caplog.at_level("WARNING", logger="dbfleet.engines.mongodb"):
            (again,) = backup_many(repos, ["cluster"])
        assert again.ok, again.error
        assert copy in caplog.text
        _, second = repos.locate("cluster:latest")
        assert second.fingerprint is not None
        assert not [t for t in second.fingerprint["tables"] if t.startswith(SCRATCH_PREFIX)]
        assert second.fingerprint["tables"][f"{name}.orders"]["count"] == 40
        # a scratch location is not a source, and refuses to restore over itself
        with pytest.raises(UsageError, match="scratch location"):
            scratch.backup(cast(Any, None))
        with pytest.raises(EngineError, match="already exist"):
            _restore(repos.for_database("cluster"), snapshot, scratch.config)
    finally:
        scratch.drop()
    assert [d for d in mongo_server.databases() if d.startswith(prefix)] == []
    assert name in mongo_server.databases()  # drop() took only the prefixed databases
