"""The engine conformance suite: every engine, the same round trips, real servers.

Each case (tests/conformance/engine_cases.py) is a populated source database.
The suite backs it up into a repository, restores it elsewhere, and holds the
engine to the contracts in dbfleet/engines/base.py.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest

from dbfleet.config import DatabaseConfig
from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.registry import engine_for
from dbfleet.errors import EngineError, IntegrityError
from dbfleet.operations.common import SnapshotSource
from dbfleet.repo import BackupWriter, Repository, Snapshot
from dbfleet.repo.pack import pack_name
from dbfleet.storage import MemoryStorage
from tests.conformance.engine_cases import EngineCase

FAST_KDF = {"n": 2**10, "r": 8, "p": 1}


def _repo() -> Repository:
    return Repository.init(MemoryStorage(), "conformance", FAST_KDF)


def _backup(repo: Repository, config: DatabaseConfig) -> Snapshot:
    engine = engine_for(config)
    started = datetime.now(UTC)
    with BackupWriter(repo) as writer:
        meta = engine.backup(writer)
        return writer.commit(
            Snapshot(
                database="case",
                engine=config.engine,
                hostname=socket.gethostname(),
                started=started,
                finished=datetime.now(UTC),
                fingerprint=meta.fingerprint,
                consistency_point=meta.consistency_point,
                server_version=meta.server_version,
                tool=meta.tool,
            )
        )


def _target(case: EngineCase, label: str) -> DatabaseConfig:
    return engine_for(case.source).scratch(label)


def test_health_reports_version(engine_case: EngineCase) -> None:
    health = engine_for(engine_case.source).health()
    assert health.ok, health.error
    assert health.version


def test_round_trip_matches_fingerprint(engine_case: EngineCase) -> None:
    repo = _repo()
    snapshot = _backup(repo, engine_case.source)
    assert snapshot.fingerprint and snapshot.fingerprint["tables"]
    assert engine_case.table in snapshot.fingerprint["tables"]
    assert snapshot.size > 0 and snapshot.added_bytes > 0
    target = engine_for(_target(engine_case, "rt"))
    target.drop()
    try:
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
        assert compare_fingerprints(snapshot.fingerprint, target.fingerprint()) == []
    finally:
        target.drop()


def test_fingerprint_sees_a_change(engine_case: EngineCase) -> None:
    repo = _repo()
    before = _backup(repo, engine_case.source)
    engine_case.mutate()
    after = _backup(repo, engine_case.source)
    assert before.fingerprint and after.fingerprint
    assert compare_fingerprints(before.fingerprint, after.fingerprint) != []


def test_subset_restore_of_one_table(engine_case: EngineCase) -> None:
    engine = engine_for(engine_case.source)
    if not engine.capabilities.subset_restore:
        pytest.fail(f"{engine.name} claims no subset restore; the suite expects every engine to")
    repo = _repo()
    snapshot = _backup(repo, engine_case.source)
    assert snapshot.fingerprint
    target = engine_for(_target(engine_case, "subset"))
    target.drop()
    try:
        tables = (engine_case.table,)
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions(tables=tables))
        restored = target.fingerprint()
        assert set(restored["tables"]) == {engine_case.table}
        assert compare_fingerprints(snapshot.fingerprint, restored, tables) == []
    finally:
        target.drop()


def test_restore_over_existing_needs_clean(engine_case: EngineCase) -> None:
    repo = _repo()
    snapshot = _backup(repo, engine_case.source)
    assert snapshot.fingerprint
    target = engine_for(_target(engine_case, "clean"))
    target.drop()
    try:
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
        with pytest.raises(EngineError):
            target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
        # the failed restore changed nothing
        assert compare_fingerprints(snapshot.fingerprint, target.fingerprint()) == []
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions(clean=True))
        assert compare_fingerprints(snapshot.fingerprint, target.fingerprint()) == []
    finally:
        target.drop()


def test_failing_backup_records_nothing(engine_case: EngineCase) -> None:
    repo = _repo()
    with pytest.raises(EngineError):
        _backup(repo, engine_case.broken)
    assert repo.list_snapshots() == []


def test_corrupted_repository_is_never_restored(engine_case: EngineCase) -> None:
    repo = _repo()
    snapshot = _backup(repo, engine_case.source)
    storage = repo.storage
    assert isinstance(storage, MemoryStorage)
    for pack_id in list(repo.index.pack_sizes):
        name = pack_name(pack_id)
        data = bytearray(storage.objects[name])
        data[len(data) // 3] ^= 0x01
        storage.objects[name] = bytes(data)
    target = engine_for(_target(engine_case, "corrupt"))
    target.drop()
    try:
        with pytest.raises(IntegrityError):
            target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    finally:
        target.drop()
