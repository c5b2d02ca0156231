"""The InfluxDB 1.x engine against the real test server (scripts/servers/influxdb.sh)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from dbfleet.engines import influxdb as influxdb_module
from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.influxdb import InfluxDBEngine
from dbfleet.engines.influxdb.api import QueryError
from dbfleet.engines.registry import engine_for
from dbfleet.errors import EngineError, IntegrityError, UsageError
from dbfleet.operations.backup import backup_many
from dbfleet.operations.common import SnapshotSource
from dbfleet.operations.restore import verify_snapshot
from dbfleet.repo import BackupWriter, Repository, Snapshot, iter_stream
from dbfleet.repo.pack import pack_name
from dbfleet.storage import MemoryStorage
from tests.integration.conftest import BackupFn, restore_as
from tests.integration.fixtures_influxdb import (
    FUTURE_NS,
    INFLUX_PASSWORD_ENV,
    START_NS,
    InfluxServer,
    cpu_lines,
    create_sample_database,
)
from tests.integration.verify_kit import backup_and_verify, inventory_for

NewName = Callable[[str], str]


@pytest.fixture
def influx_source(influx_server: InfluxServer, influx_databases: NewName) -> str:
    name = influx_databases("src")
    create_sample_database(influx_server, name)
    return name


def _restore(repo: Repository, snapshot: Snapshot, config: Any, **options: Any) -> InfluxDBEngine:
    return restore_as(InfluxDBEngine, repo, snapshot, config, **options)


def test_round_trip_into_a_new_database(
    influx_server: InfluxServer, influx_source: str, influx_databases: NewName,
    repo: Repository, backup: BackupFn,
) -> None:  # fmt: skip
    engine = engine_for(influx_server.config(influx_source))
    meta, snapshot = backup(engine)
    fp = meta.fingerprint
    assert fp is not None
    assert set(fp["tables"]) == {"autogen.cpu", "autogen.mem", "long.disk"}
    assert fp["tables"]["autogen.cpu"]["rows"] == 600 * 4 + 1  # four fields, one future point
    assert fp["tables"]["autogen.cpu"]["series"] == 4 + 1
    assert fp["retention_policies"] == ["autogen", "long"]
    assert meta.options["changed_during_backup"] == []
    assert meta.tool == "influxd backup -portable" and meta.tool_version and meta.server_version
    names = [s.name for s in snapshot.streams]
    assert names[-2:] == ["meta", "manifest"]
    shards = [n for n in names if n.startswith("shard/")]
    assert len(shards) == meta.options["shards"] > 10 and "shard/long/" in " ".join(shards)
    manifest = json.loads(b"".join(iter_stream(repo, snapshot, "manifest")))
    assert manifest["database"] == influx_source
    tar = b"".join(iter_stream(repo, snapshot, shards[0]))
    assert tar[257:262] == b"ustar"  # stored as a plain tar: deduplicates

    target_name = influx_databases("rt")
    target = _restore(repo, snapshot, engine.target(target_name))
    assert compare_fingerprints(fp, target.fingerprint()) == []
    assert influx_server.query('SHOW FIELD KEYS FROM "cpu"', target_name) == influx_server.query(
        'SHOW FIELD KEYS FROM "cpu"', influx_source
    )
    future = influx_server.query(
        f"SELECT usage FROM cpu WHERE host = 'future' AND time = {FUTURE_NS}", target_name
    )
    assert future and future[0]["values"][0][1] == 1.5


def test_backup_of_a_missing_database_fails_and_records_nothing(
    influx_server: InfluxServer, influx_databases: NewName, repo: Repository, backup: BackupFn
) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        backup(engine_for(influx_server.config(influx_databases("missing"))))
    assert repo.list_snapshots() == []


def test_unreachable_backup_service_fails_fast(
    influx_server: InfluxServer, influx_source: str, repo: Repository, backup: BackupFn
) -> None:
    engine = engine_for(
        influx_server.config(influx_source, options={"backup_address": "127.0.0.1:9"})
    )
    began = time.monotonic()
    with pytest.raises(EngineError, match="backup service .* not reachable") as failure:
        backup(engine)
    assert time.monotonic() - began < 10  # influxd itself would retry for minutes
    assert failure.value.hint and "backup_address" in failure.value.hint
    assert repo.list_snapshots() == []
    assert "not reachable" in engine.health().details["backup_service"]


def test_wrong_password_is_reported_without_the_password(
    influx_server: InfluxServer, influx_source: str, repo: Repository,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    wrong = "not-the-password-7f3a"
    monkeypatch.setenv("DBFLEET_TEST_WRONG_PW", wrong)
    engine = engine_for(influx_server.config(influx_source, password_env="DBFLEET_TEST_WRONG_PW"))
    with pytest.raises(EngineError) as failure, BackupWriter(repo) as writer:
        engine.backup(writer)
    message = str(failure.value)
    assert wrong not in message and "credentials" in message
    assert "$DBFLEET_TEST_WRONG_PW" in message
    health = engine.health()
    assert not health.ok and health.error and wrong not in health.error
    assert repo.list_snapshots() == []


def test_restore_of_measurements(
    influx_server: InfluxServer, influx_source: str, influx_databases: NewName,
    repo: Repository, backup: BackupFn,
) -> None:  # fmt: skip
    engine = engine_for(influx_server.config(influx_source))
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    target_name = influx_databases("sub")
    target = _restore(repo, snapshot, engine.target(target_name), tables=("autogen.cpu", "disk"))
    restored = target.fingerprint()
    assert set(restored["tables"]) == {"autogen.cpu", "long.disk"}
    assert compare_fingerprints(meta.fingerprint, restored, ("autogen.cpu", "long.disk")) == []
    assert restored["retention_policies"] == ["autogen", "long"]
    assert not [d for d in influx_server.databases() if "_dbfleet_tmp_" in d]
    with pytest.raises(UsageError, match="nope"):
        _restore(repo, snapshot, engine.target(target_name), tables=("nope",))
    # Into the target again: the measurement has data there.
    with pytest.raises(EngineError, match="already have data"):
        _restore(repo, snapshot, engine.target(target_name), tables=("cpu",))
    influx_server.write(target_name, cpu_lines(0, 5, hours=1))  # changes cpu in the target
    _restore(repo, snapshot, engine.target(target_name), tables=("cpu",), clean=True)
    after = target.fingerprint()
    assert compare_fingerprints(meta.fingerprint, after, ("autogen.cpu", "long.disk")) == []
    assert "autogen.mem" not in after["tables"]  # never selected


def test_restore_over_an_existing_database(
    influx_server: InfluxServer, influx_source: str, influx_databases: NewName,
    repo: Repository, backup: BackupFn,
) -> None:  # fmt: skip
    engine = engine_for(influx_server.config(influx_source))
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    target_name = influx_databases("over")
    target = _restore(repo, snapshot, engine.target(target_name))
    influx_server.write(target_name, ["extra value=1i 1704067200000000000"])
    changed = target.fingerprint()
    with pytest.raises(EngineError, match="already exists"):
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    assert target.fingerprint() == changed
    # A damaged repository is detected before the target is dropped.
    storage = repo.storage
    assert isinstance(storage, MemoryStorage)
    saved = dict(storage.objects)
    for pack_id in list(repo.index.pack_sizes):
        data = bytearray(storage.objects[pack_name(pack_id)])
        data[len(data) // 2] ^= 0x01
        storage.objects[pack_name(pack_id)] = bytes(data)
    with pytest.raises(IntegrityError):
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions(clean=True))
    assert target.fingerprint() == changed
    storage.objects.update(saved)
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions(clean=True))
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == []


def test_writes_during_the_backup_are_reported(
    influx_server: InfluxServer, influx_source: str, repo: Repository, backup: BackupFn
) -> None:
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        while not stop.is_set():
            influx_server.write(influx_source, [f"live value={written[0]}i"])
            written[0] += 1
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while written[0] < 3:
            time.sleep(0.01)
        meta, _ = backup(engine_for(influx_server.config(influx_source)))
    finally:
        stop.set()
        thread.join()
    assert meta.options["changed_during_backup"] == ["autogen.live"]


@contextmanager
def _watch_command_lines(secret: bytes) -> Iterator[dict[str, Any]]:
    """Poll every process's argv while the block runs."""
    seen: dict[str, Any] = {"leaks": [], "tools": set()}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if secret in argv:
                    seen["leaks"].append(argv.replace(b"\0", b" ").decode(errors="replace"))
                if argv.startswith(b"/usr/bin/influxd\0"):
                    seen["tools"].add(argv.split(b"\0")[1].decode())

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


class _StagingSpy:
    """A sink that notes how many shard archives are staged whenever a
    stream is stored."""

    def __init__(self, sink: BackupWriter, staging: Path) -> None:
        self.sink = sink
        self.staging = staging
        self.staged: list[int] = []

    def write_stream(self, name: str, source: BinaryIO, media_type: str = "") -> Any:
        self.staged.append(len(list(self.staging.rglob("*.tar.gz"))))
        return self.sink.write_stream(name, source, media_type)


def test_one_shard_staged_at_a_time_and_no_password_in_argv(
    influx_server: InfluxServer, influx_source: str, influx_databases: NewName,
    repo: Repository, backup: BackupFn, tmp_path: Path,
) -> None:  # fmt: skip
    engine = engine_for(influx_server.config(influx_source, options={"staging_dir": tmp_path}))
    with BackupWriter(repo) as writer:
        spy = _StagingSpy(writer, tmp_path)
        meta = engine.backup(spy)
    assert len(spy.staged) == meta.options["shards"] + 2  # shards, meta, manifest
    assert set(spy.staged[:-2]) == {1} and spy.staged[-2:] == [0, 0]

    password = os.environ[INFLUX_PASSWORD_ENV]
    with _watch_command_lines(password.encode()) as seen:
        meta, snapshot = backup(engine)
        _restore(repo, snapshot, engine.target(influx_databases("argv")))
    assert seen["leaks"] == []
    assert seen["tools"], "the poller never saw influxd running"
    assert list(tmp_path.iterdir()) == []


def test_health(influx_server: InfluxServer, influx_source: str, influx_databases: NewName) -> None:
    health = engine_for(influx_server.config(influx_source)).health()
    assert health.ok, health.error
    assert health.version and health.version.startswith("1.")
    assert health.details["shards"] > 10 and health.details["measurements"] == 3
    assert health.details["retention_policies"] == 2
    assert health.details["backup_service"] == "reachable"
    assert health.size_bytes is not None
    missing = engine_for(influx_server.config(influx_databases("nohealth"))).health()
    assert not missing.ok and "does not exist" in (missing.error or "")


def test_scratch_target_and_drop(influx_server: InfluxServer, influx_source: str) -> None:
    engine = engine_for(influx_server.config(influx_source))
    assert isinstance(engine, InfluxDBEngine)
    scratch = engine_for(engine.scratch("verify_abc"))
    assert isinstance(scratch, InfluxDBEngine)
    name = scratch.location.database
    assert name == f"{influx_source}_dbfleet_verify_abc"
    assert scratch.backup_address == influx_server.backup_address
    influx_server.query(f'CREATE DATABASE "{name}"')
    scratch.drop()
    assert name not in influx_server.databases()
    scratch.drop()  # dropping what is gone is fine
    with pytest.raises(UsageError, match="system database"):
        engine_for(engine.target("_internal")).drop()


def test_configuration_errors(influx_server: InfluxServer) -> None:
    with pytest.raises(UsageError, match="not supported yet"):
        engine_for(influx_server.config("db", options={"api": "v2"}))
    with pytest.raises(UsageError, match="unknown influxdb option"):
        engine_for(influx_server.config("db", options={"nope": 1}))
    with pytest.raises(UsageError, match="name one database"):
        engine_for(influx_server.config("db").with_changes(url="http://h:8086/"))
    default = engine_for(influx_server.config("db").with_changes(options={}))
    assert isinstance(default, InfluxDBEngine) and default.backup_address == "127.0.0.1:8088"


def test_an_empty_database_round_trips(
    influx_server: InfluxServer, influx_databases: NewName, repo: Repository, backup: BackupFn
) -> None:
    """influxd 1.6 cannot restore a database without shards; dbfleet recreates it."""
    name = influx_databases("empty")
    influx_server.query(f'CREATE DATABASE "{name}"')
    influx_server.query(f'CREATE RETENTION POLICY "week" ON "{name}" DURATION 1w REPLICATION 1')
    engine = engine_for(influx_server.config(name))
    meta, snapshot = backup(engine)
    assert meta.fingerprint == {"tables": {}, "retention_policies": ["autogen", "week"],
                                "format": 2}  # fmt: skip
    target = _restore(repo, snapshot, engine.target(influx_databases("empty2")))
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == []


MAX_FLOAT = 1.7976931348623157e308


def test_float_sums_that_overflow_never_make_a_backup_impossible(
    influx_server: InfluxServer, influx_databases: NewName, repo: Repository,
    backup: BackupFn, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """100 points of the largest float: their sum is +Inf, which the server
    cannot encode (``json: unsupported value: +Inf``). The fingerprint hashes
    values instead of summing them (issue #17, defect 5)."""
    name = influx_databases("maxf")
    influx_server.query(f'CREATE DATABASE "{name}"')
    influx_server.write(name, [
        f"big,host=h{i % 3} f={MAX_FLOAT!r},g={-MAX_FLOAT!r},i=9223372036854775807i,"
        f'n=-9223372036854775808i,s="x{i}",b={"true" if i % 2 else "false"} {START_NS + i}'
        for i in range(100)
    ])  # fmt: skip
    engine = engine_for(influx_server.config(name))
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None and "fingerprint_unavailable" not in meta.options
    table = meta.fingerprint["tables"]["autogen.big"]
    assert (table["rows"], table["series"]) == (600, 3)
    target_name = influx_databases("maxf_rt")
    target = _restore(repo, snapshot, engine.target(target_name))
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == []
    # a string (which sums never saw) and a float changed: the measurement is named
    for line in (f'big,host=h1 s="changed" {START_NS + 1}', f"big,host=h2 f=1.5 {START_NS + 2}"):
        influx_server.write(target_name, [line])
        (difference,) = compare_fingerprints(meta.fingerprint, target.fingerprint())
        assert difference.startswith("autogen.big: digest ")
        target.drop()
        target = _restore(repo, snapshot, engine.target(target_name))
    # and through the CLI's own path: backup, then verify into a scratch database
    done, verified = backup_and_verify(engine.config, monkeypatch)
    assert verified.ok and verified.differences == [] and verified.tables_compared == 1


def test_a_fingerprint_the_server_cannot_compute_leaves_the_backup_and_verify_says_so(
    influx_server: InfluxServer, influx_databases: NewName, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The decision for a failed fingerprint query (issue #17, defect 5): the
    backup is kept (the dump is what must not be lost) without a fingerprint,
    the snapshot records why, and ``verify`` refuses it with that reason
    instead of passing. A failed dump still fails the backup."""
    name = influx_databases("nofp")
    influx_server.query(f'CREATE DATABASE "{name}"')
    influx_server.write(name, [f"m v={i} {START_NS + i}" for i in range(10)])
    refusal = "max-select-point limit exceeded: (10/1)"

    def refuse(client: Any, database: str) -> dict[str, Any]:
        raise QueryError(f"InfluxDB: SELECT * ...: {refusal}")

    monkeypatch.setattr(influxdb_module, "fingerprint", refuse)
    repos = inventory_for(influx_server.config(name), monkeypatch)
    (done,) = backup_many(repos, ["db"])
    assert done.ok, done.error
    (snapshot,) = repos.for_database("db").list_snapshots()
    assert snapshot.fingerprint is None
    assert refusal in snapshot.options["fingerprint_unavailable"]
    with pytest.raises(UsageError, match="no fingerprint to verify against") as refused:
        verify_snapshot(repos, "db:latest")
    assert f"fingerprint unavailable at backup: InfluxDB: SELECT * ...: {refusal}" in str(
        refused.value
    )


def test_the_fingerprint_sees_the_sign_of_zero(
    influx_server: InfluxServer, influx_databases: NewName
) -> None:
    """The server writes -0.0 as ``-0`` and 0.0 as ``0``; both were 0 to
    Python's json, so a -0.0 turned 0.0 went unseen."""
    name = influx_databases("zero")
    influx_server.query(f'CREATE DATABASE "{name}"')
    influx_server.write(name, [f"z f=-0.0 {START_NS}"])
    engine = engine_for(influx_server.config(name))
    before = engine.fingerprint()
    influx_server.write(name, [f"z f=0.0 {START_NS}"])
    (difference,) = compare_fingerprints(before, engine.fingerprint())
    assert difference.startswith("autogen.z: digest ")
