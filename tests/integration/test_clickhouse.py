"""The ClickHouse engine against the real test server (scripts/servers/clickhouse.sh)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.clickhouse import ClickHouseEngine
from dbfleet.engines.clickhouse.http import Client, Location, ServerError, parse_error
from dbfleet.engines.clickhouse.schema import (
    classify,
    column_hash_terms,
    replicated_path_is_shared,
    rewrite_create,
)
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.registry import engine_for
from dbfleet.errors import EngineError, IntegrityError, UsageError
from dbfleet.operations.common import SnapshotSource
from dbfleet.repo import BackupWriter, Repository, Snapshot, iter_stream
from dbfleet.repo.pack import pack_name
from dbfleet.storage import MemoryStorage
from tests.integration.conftest import BackupFn, restore_as
from tests.integration.fixtures_clickhouse import (
    CH_PASSWORD_ENV,
    SAMPLE_ROWS,
    ClickHouseServer,
    create_sample_database,
    insert_events,
)

NewName = Callable[[str], str]


@pytest.fixture
def ch_source(ch_server: ClickHouseServer, ch_databases: NewName) -> str:
    name = ch_databases("src")
    create_sample_database(ch_server, name)
    return name


def _restore(repo: Repository, snapshot: Snapshot, config: Any, **options: Any) -> ClickHouseEngine:
    return restore_as(ClickHouseEngine, repo, snapshot, config, **options)


def _tables(server: ClickHouseServer, db: str) -> list[str]:
    return server.query(f"SELECT name FROM system.tables WHERE database = '{db}'").split()


def test_round_trip_into_a_new_database(
    ch_server: ClickHouseServer, ch_source: str, ch_databases: NewName, repo: Repository,
    backup: BackupFn,
) -> None:  # fmt: skip
    engine = engine_for(ch_server.config(ch_source))
    meta, snapshot = backup(engine)
    fp = meta.fingerprint
    assert fp is not None
    assert set(fp["tables"]) == {"events", "latest", "audit", "cache", "daily", "by_country"}
    assert fp["tables"]["events"]["rows"] == SAMPLE_ROWS
    assert fp["tables"]["latest"]["rows"] == 500  # FINAL: duplicates collapsed
    assert fp["tables"]["by_country"]["rows"] == 3  # an MV with a SummingMergeTree inside
    assert fp["objects"] == {"daily_mv": "MaterializedView", "events_buffer": "Buffer",
                             "recent": "View", "recent_buys": "View"}  # fmt: skip
    assert meta.server_version and meta.tool == "clickhouse-http-native"
    assert meta.options["changed_during_backup"] == []
    names = [s.name for s in snapshot.streams]
    assert names[0] == "schema" and "data/events" in names and "data/recent" not in names
    schema = json.loads(b"".join(iter_stream(repo, snapshot, "schema")))
    assert schema["database"] == ch_source
    assert {o["name"] for o in schema["objects"]} == set(fp["tables"]) | set(fp["objects"])

    target_name = ch_databases("rt")
    target = _restore(repo, snapshot, engine.target(target_name))
    assert compare_fingerprints(fp, target.fingerprint()) == []
    assert ch_server.value(f"SELECT count() FROM `{target_name}`.recent_buys") == ch_server.value(
        f"SELECT count() FROM `{ch_source}`.recent_buys"
    )
    # Every reference points into the restored database, none at the source.
    for name in ("daily_mv", "recent_buys", "events_buffer", "by_country"):
        create = ch_server.value(f"SHOW CREATE TABLE `{target_name}`.{name}")
        assert ch_source not in create, create
    # The restored MVs work: a new row flows into the restored copies only.
    before = ch_server.value(f"SELECT sum(n) FROM `{ch_source}`.daily")
    insert_events(ch_server, target_name, 10**6, 1)
    assert ch_server.value(f"SELECT sum(n) FROM `{target_name}`.daily") == str(SAMPLE_ROWS + 1)
    assert ch_server.value(f"SELECT sum(n) FROM `{target_name}`.by_country") == str(SAMPLE_ROWS + 1)
    assert ch_server.value(f"SELECT sum(n) FROM `{ch_source}`.daily") == before
    # Merges cannot change a fingerprint: FINAL for engines whose merges change rows.
    restored = target.fingerprint()
    for table in ("latest", "daily", "by_country"):
        ch_server.query(f"OPTIMIZE TABLE `{target_name}`.{table} FINAL")
    assert target.fingerprint()["tables"]["latest"] == restored["tables"]["latest"]
    assert target.fingerprint()["tables"]["daily"] == restored["tables"]["daily"]


def test_fingerprint_sees_every_column(
    ch_server: ClickHouseServer, ch_source: str, repo: Repository, backup: BackupFn
) -> None:
    engine = engine_for(ch_server.config(ch_source))
    before = engine.fingerprint()["tables"]
    changes = {
        "user": "user = NULL WHERE id = 1",  # Nullable: NULL and '' differ
        "tags": "tags = arrayMap(x -> if(x = 'x', NULL, x), tags) WHERE id = 2",
        "amount": "amount = amount + 1 WHERE id = 3",
        "point": "point = (0, 0) WHERE id = 4",
        "note": "note = 'changed' WHERE id = 5",
    }
    for column, change in changes.items():
        ch_server.query(f"ALTER TABLE `{ch_source}`.events UPDATE {change}")
        deadline = time.monotonic() + 20
        while (
            ch_server.value(
                "SELECT count() FROM system.mutations"
                f" WHERE database = '{ch_source}' AND NOT is_done"
            )
            != "0"
        ):
            assert time.monotonic() < deadline, "mutation did not finish"
            time.sleep(0.05)
        after = engine.fingerprint()["tables"]
        assert after["events"]["rows"] == before["events"]["rows"]
        assert after["events"]["digest"] != before["events"]["digest"], column
        before = after


def test_backup_of_a_missing_database_fails_and_records_nothing(
    ch_server: ClickHouseServer, ch_databases: NewName, repo: Repository, backup: BackupFn
) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        backup(engine_for(ch_server.config(ch_databases("missing"))))
    assert repo.list_snapshots() == []


def test_an_error_in_the_middle_of_a_result_fails_the_read(ch_server: ClickHouseServer) -> None:
    """ClickHouse appends an exception to a body it has begun to send (200 OK)."""
    config = ch_server.config("default")
    assert config.url is not None
    client = Client(Location.parse(config.url), os.environ[CH_PASSWORD_ENV])
    sql = "SELECT number, throwIf(number = 3000000) FROM system.numbers LIMIT 5000000 FORMAT Native"
    with pytest.raises(ServerError, match="throwIf") as failure, client.stream(sql, "nums") as body:
        while body.read(1 << 20):
            pass
        pytest.fail("the stream ended without an error")
    assert failure.value.code == 395
    assert body.bytes_read > 1 << 20  # it did fail after data had arrived


def test_a_corrupted_part_fails_the_backup(
    ch_server: ClickHouseServer, ch_databases: NewName, repo: Repository, backup: BackupFn
) -> None:
    name = ch_databases("corrupt")
    ch_server.query(f"CREATE DATABASE `{name}`")
    ch_server.query(
        f"CREATE TABLE `{name}`.big (id UInt64, s String) ENGINE = MergeTree ORDER BY id"
    )
    for first in (0, 10**7):
        ch_server.query(
            f"INSERT INTO `{name}`.big SELECT number + {first}, toString(cityHash64(number))"
            " FROM system.numbers LIMIT 400000"
        )
    path = Path(ch_server.value(f"SELECT data_path FROM system.tables WHERE database = '{name}'"))
    for part in [p for p in path.iterdir() if (p / "s.bin").exists()]:
        data = bytearray((part / "s.bin").read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 64):
            data[i] ^= 0xFF
        (part / "s.bin").write_bytes(bytes(data))
    with pytest.raises(EngineError, match="(?i)checksum|corrupt"):
        backup(engine_for(ch_server.config(name)))
    assert repo.list_snapshots() == []


def test_wrong_password_is_reported_without_the_password(
    ch_server: ClickHouseServer, ch_source: str, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "not-the-password-7f3a"
    monkeypatch.setenv("DBFLEET_TEST_WRONG_PW", wrong)
    engine = engine_for(ch_server.config(ch_source, password_env="DBFLEET_TEST_WRONG_PW"))
    with pytest.raises(EngineError) as failure, BackupWriter(repo) as writer:
        engine.backup(writer)
    message = str(failure.value)
    assert wrong not in message and "password" in message.lower()
    assert "$DBFLEET_TEST_WRONG_PW" in message
    health = engine.health()
    assert not health.ok and health.error and wrong not in health.error
    assert repo.list_snapshots() == []


def test_unreachable_server(ch_server: ClickHouseServer) -> None:
    engine = engine_for(ch_server.config("x").with_changes(url="http://dbfleet@127.0.0.1:9/x"))
    with pytest.raises(EngineError, match="cannot connect to ClickHouse"):
        engine.fingerprint()
    assert engine.health().ok is False


def test_restore_of_one_table_and_unknown_names(
    ch_server: ClickHouseServer, ch_source: str, ch_databases: NewName, repo: Repository,
    backup: BackupFn,
) -> None:  # fmt: skip
    engine = engine_for(ch_server.config(ch_source))
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    target_name = ch_databases("one")
    target = _restore(repo, snapshot, engine.target(target_name), tables=("events",))
    assert _tables(ch_server, target_name) == ["events"]
    assert compare_fingerprints(meta.fingerprint, target.fingerprint(), ("events",)) == []
    with pytest.raises(UsageError, match="nope"):
        _restore(repo, snapshot, engine.target(target_name), tables=("nope",))
    # A view restored alone next to the table it reads.
    _restore(repo, snapshot, engine.target(target_name), tables=("recent",))
    assert ch_server.value(f"SELECT count() FROM `{target_name}`.recent") == str(SAMPLE_ROWS - 101)


def test_restore_over_existing_objects(
    ch_server: ClickHouseServer, ch_source: str, ch_databases: NewName, repo: Repository,
    backup: BackupFn,
) -> None:  # fmt: skip
    engine = engine_for(ch_server.config(ch_source))
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    target_name = ch_databases("over")
    target = _restore(repo, snapshot, engine.target(target_name))
    ch_server.query(f"INSERT INTO `{target_name}`.cache VALUES ('extra', 0)")
    ch_server.query(f"CREATE TABLE `{target_name}`.kept (x UInt8) ENGINE = Memory")
    changed = target.fingerprint()
    with pytest.raises(EngineError, match="already exist"):
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    assert target.fingerprint() == changed

    target.restore(SnapshotSource(repo, snapshot), RestoreOptions(clean=True))
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == [
        "kept: present after restore but not in the backup"
    ]

    # A restore that fails half-way (the repository is damaged) changes nothing.
    ch_server.query(f"INSERT INTO `{target_name}`.cache VALUES ('extra', 0)")
    changed = target.fingerprint()
    storage = repo.storage
    assert isinstance(storage, MemoryStorage)
    for pack_id in list(repo.index.pack_sizes):
        data = bytearray(storage.objects[pack_name(pack_id)])
        data[len(data) // 2] ^= 0x01
        storage.objects[pack_name(pack_id)] = bytes(data)
    with pytest.raises(IntegrityError):
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions(clean=True))
    assert target.fingerprint() == changed
    assert not [t for t in _tables(ch_server, target_name) if t.startswith("_dbfleet")]


def test_a_read_only_user_can_back_up(
    ch_server: ClickHouseServer, ch_source: str, ch_databases: NewName, repo: Repository,
    backup: BackupFn,
) -> None:  # fmt: skip
    reader = engine_for(ch_server.config(ch_source, user="reader"))
    meta, snapshot = backup(reader)
    assert meta.fingerprint and meta.fingerprint["tables"]["events"]["rows"] == SAMPLE_ROWS
    with pytest.raises(EngineError, match="(?i)readonly|read-only"):
        _restore(repo, snapshot, reader.target(ch_databases("ro")))
    target = _restore(repo, snapshot, engine_for(ch_server.config(ch_source)).target(
        ch_databases("ro2")))  # fmt: skip
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == []


def test_writes_during_the_backup(
    ch_server: ClickHouseServer, ch_source: str, ch_databases: NewName, repo: Repository,
    backup: BackupFn,
) -> None:  # fmt: skip
    """Each table is read as of its query's start; a table written while it
    is read is reported, the others' fingerprints match their stored rows."""
    ch_server.query(f"CREATE TABLE `{ch_source}`.hot (n UInt64) ENGINE = MergeTree ORDER BY n")
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        while not stop.is_set():
            ch_server.query(f"INSERT INTO `{ch_source}`.hot VALUES ({written[0]})")
            written[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while written[0] < 5:
            time.sleep(0.01)
        meta, snapshot = backup(engine_for(ch_server.config(ch_source)))
    finally:
        stop.set()
        thread.join()
    assert meta.fingerprint is not None
    target = _restore(repo, snapshot, engine_for(ch_server.config(ch_source)).target(
        ch_databases("hot")))  # fmt: skip
    restored = target.fingerprint()
    changed = set(meta.options["changed_during_backup"])
    assert changed <= {"hot"}
    for table in set(meta.fingerprint["tables"]) - changed:
        assert restored["tables"][table] == meta.fingerprint["tables"][table], table


def test_health(ch_server: ClickHouseServer, ch_source: str, ch_databases: NewName) -> None:
    health = engine_for(ch_server.config(ch_source)).health()
    assert health.ok, health.error
    assert health.version == ch_server.value("SELECT version()")
    assert health.size_bytes and health.size_bytes > 100_000
    assert health.details["tables"] == 11  # the MV's inner table counts
    assert health.details["active_parts"] >= 6 and health.details["uptime_seconds"] > 0
    missing = engine_for(ch_server.config(ch_databases("nohealth"))).health()
    assert not missing.ok and "does not exist" in (missing.error or "")


@contextmanager
def _watch_command_lines(secret: bytes) -> Iterator[list[str]]:
    leaks: list[str] = []
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

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield leaks
    finally:
        stop.set()
        thread.join()


def test_password_never_appears_in_a_command_line_or_the_server_log(
    ch_server: ClickHouseServer, ch_source: str, ch_databases: NewName, repo: Repository,
    backup: BackupFn,
) -> None:  # fmt: skip
    password = os.environ[CH_PASSWORD_ENV]
    engine = engine_for(ch_server.config(ch_source))
    with _watch_command_lines(password.encode()) as leaks:
        meta, snapshot = backup(engine)
        _restore(repo, snapshot, engine.target(ch_databases("argv")))
    assert leaks == []
    logs = ch_server.query(
        "SELECT count() FROM system.processes WHERE position(query, "
        f"'{password}') > 0 AND position(query, 'system.processes') = 0"
    )
    assert logs.strip() == "0"


def test_scratch_target_and_drop(ch_server: ClickHouseServer, ch_source: str) -> None:
    engine = engine_for(ch_server.config(ch_source))
    assert isinstance(engine, ClickHouseEngine)
    scratch = engine_for(engine.scratch("verify_abc"))
    assert isinstance(scratch, ClickHouseEngine)
    name = scratch.location.database
    assert name == f"{ch_source}_dbfleet_verify_abc"
    assert scratch.config.password_env == CH_PASSWORD_ENV
    ch_server.query(f"CREATE DATABASE `{name}`")
    scratch.drop()
    assert ch_server.value(f"SELECT count() FROM system.databases WHERE name = '{name}'") == "0"
    scratch.drop()  # dropping what is gone is fine
    for system in ("system", "default"):
        with pytest.raises(UsageError, match="system database"):
            engine_for(engine.target(system)).drop()


def test_configuration_errors() -> None:
    for url, message in (
        ("clickhouse://h/db", "http:// or https://"),
        ("http://h:8123/", "name one database"),
        ("http://h:8123/db?user=x", "no query parameters"),
    ):
        with pytest.raises(UsageError, match=message):
            engine_for(ClickHouseServer(url).config("db").with_changes(url=url))
    with pytest.raises(UsageError, match="unknown clickhouse option"):
        engine_for(ClickHouseServer("http://h/db").config("db", options={"nope": 1}))


# -- pure functions ----------------------------------------------------------


def test_rewrite_create_moves_every_reference() -> None:
    create = (
        "CREATE MATERIALIZED VIEW src.mv TO src.target (id UInt64) AS SELECT id, "
        "'src.keep' AS s FROM `src`.events JOIN other.t USING id WHERE src_x.y = 1"
    )
    assert rewrite_create(create, "src", "dst", "mv") == (
        "CREATE MATERIALIZED VIEW `dst`.`mv` TO `dst`.target (id UInt64) AS SELECT id, "
        "'src.keep' AS s FROM `dst`.events JOIN other.t USING id WHERE src_x.y = 1"
    )
    buffer = "CREATE TABLE src.b (x UInt8) ENGINE = Buffer(src, t, 1, 1, 1, 1, 1, 1, 1)"
    assert "Buffer(`dst`, t," in rewrite_create(buffer, "src", "dst", "b")
    merge = "CREATE TABLE src.m (x UInt8) ENGINE = Merge('src', '^t')"
    assert "Merge('dst', '^t')" in rewrite_create(merge, "src", "dst", "m")
    dist = "CREATE TABLE src.d (x UInt8) ENGINE = Distributed(c, 'src', t, rand())"
    assert "Distributed(c, 'dst', t" in rewrite_create(dist, "src", "dst", "d")
    assert rewrite_create("CREATE TABLE src.t (x UInt8) ENGINE = Memory", "src", "src", "_s_t") == (
        "CREATE TABLE `src`.`_s_t` (x UInt8) ENGINE = Memory"
    )


def test_classification_and_replication_paths() -> None:
    assert classify("t", "ReplicatedReplacingMergeTree", "").final
    assert not classify("t", "MergeTree", "").final
    assert not classify("v", "View", "CREATE VIEW db.v AS SELECT 1").data
    assert not classify("d", "Distributed", "").data
    shared = "CREATE TABLE a.t (x UInt8) ENGINE = ReplicatedMergeTree('/ch/t', '{replica}')"
    macro = "CREATE TABLE a.t (x UInt8) ENGINE = ReplicatedMergeTree('/ch/{database}/t', 'r')"
    assert replicated_path_is_shared(shared, "ReplicatedMergeTree", "a", "b")
    assert not replicated_path_is_shared(shared, "ReplicatedMergeTree", "a", "a")
    assert not replicated_path_is_shared(macro, "ReplicatedMergeTree", "a", "b")


def test_hash_terms_and_error_messages() -> None:
    # 18.16's cityHash64 takes no Tuple inside an Array: one array per element
    assert column_hash_terms("x", "Array(Tuple(UInt8, String))") == [
        "arrayMap(x1 -> tupleElement(x1, 1), `x`)", "arrayMap(x1 -> tupleElement(x1, 2), `x`)",
    ]  # fmt: skip
    assert column_hash_terms("x", "DateTime('Europe/Berlin')") == ["`x`"]
    assert column_hash_terms("x", "Nullable(String)") == ["isNull(`x`)", "assumeNotNull(`x`)"]
    assert column_hash_terms("x", "Decimal(18, 4)") == ["reinterpretAsString(`x`)"]
    assert column_hash_terms("x", "Array(Nullable(UUID))") == [
        "arrayMap(x1 -> isNull(x1), `x`)",
        "arrayMap(x1 -> reinterpretAsString(assumeNotNull(x1)), `x`)",
    ]
    assert column_hash_terms("x", "LowCardinality(Nullable(String))") == [
        "isNull(CAST(`x` AS Nullable(String)))", "assumeNotNull(CAST(`x` AS Nullable(String)))",
    ]  # fmt: skip
    assert column_hash_terms("x", "Enum8('Nullable' = 1, 'a,b' = 2)") == ["`x`"]
    assert column_hash_terms("x", "Tuple(a String, b Decimal(9, 2))") == [
        "tupleElement(`x`, 1)", "reinterpretAsString(tupleElement(`x`, 2))",
    ]  # fmt: skip
    old = (
        "Code: 60, e.displayText() = DB::Exception: Table a.b doesn't exist.,"
        " e.what() = DB::Exception"
    )
    new = "Code: 60. DB::Exception: Table a.b does not exist. (UNKNOWN_TABLE) (version 24.3.1.1)\n"
    assert parse_error(old) == (60, "Table a.b doesn't exist.")
    assert parse_error(new) == (60, "Table a.b does not exist. (UNKNOWN_TABLE)")
