"""Prune: frees unreferenced data, repacks mostly-garbage packs, never loses a
kept snapshot, and survives a crash at any step."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from repokit import RepoKit

from dbfleet.errors import IntegrityError, StorageError
from dbfleet.repo import Repository
from dbfleet.repo.check import check_repository
from dbfleet.repo.pack import pack_name
from dbfleet.repo.prune import prune
from dbfleet.storage import MemoryStorage
from dbfleet.storage.base import ObjectInfo

MiB = 1 << 20


def _stored_bytes(repo: Repository) -> int:
    return sum(o.size for o in repo.storage.list("data/"))


def test_prune_frees_forgotten_data(kit: RepoKit) -> None:
    repo = kit.init()
    a = kit.random(6 * MiB, seed=1)
    b = kit.random(6 * MiB, seed=2)
    snap_a = kit.backup(repo, a, database="a")
    snap_b = kit.backup(repo, b, database="b")
    before = _stored_bytes(repo)
    repo.delete_snapshot(snap_a.id)
    stats = prune(repo)
    assert stats.packs_deleted >= 1
    assert _stored_bytes(repo) < before * 0.6
    fresh = kit.reopen(repo)
    assert kit.restore(fresh, fresh.load_snapshot(snap_b.id)) == b
    report = check_repository(fresh, read_data=True)
    assert report.ok and not report.warnings, report.errors + report.warnings


def test_prune_repacks_mostly_unused_packs(kit: RepoKit) -> None:
    repo = kit.init()
    data = kit.random(10 * MiB, seed=3)
    first = kit.backup(repo, data, database="db")
    keep = kit.backup(repo, data[: 2 * MiB], database="db")  # shares only the first chunks
    repo.delete_snapshot(first.id)
    stats = prune(repo)
    assert stats.packs_repacked >= 1 and stats.packs_written >= 1
    assert stats.bytes_written < stats.bytes_deleted
    fresh = kit.reopen(repo)
    assert kit.restore(fresh, fresh.load_snapshot(keep.id)) == data[: 2 * MiB]
    assert check_repository(fresh, read_data=True).ok


def test_dry_run_changes_nothing(kit: RepoKit) -> None:
    repo = kit.init()
    snap = kit.backup(repo, kit.random(3 * MiB), database="a")
    repo.delete_snapshot(snap.id)
    storage = repo.storage
    assert isinstance(storage, MemoryStorage)
    objects = dict(storage.objects)
    stats = prune(repo, dry_run=True)
    assert stats.packs_deleted == 1 and stats.dry_run
    assert storage.objects == objects


def test_prune_removes_packs_of_interrupted_backups(kit: RepoKit) -> None:
    repo = kit.init()
    kept = kit.backup(repo, kit.random(2 * MiB, seed=5), database="a")
    repo.storage.put(pack_name("ab" * 32), b"left by a crashed backup")
    assert check_repository(kit.reopen(repo)).warnings
    stats = prune(repo)
    assert stats.unindexed_packs_deleted == 1
    fresh = kit.reopen(repo)
    assert kit.restore(fresh, fresh.load_snapshot(kept.id)) == kit.random(2 * MiB, seed=5)
    assert not check_repository(fresh).warnings


def test_prune_refuses_when_a_used_blob_is_missing(kit: RepoKit) -> None:
    repo = kit.init()
    kit.backup(repo, kit.random(2 * MiB, seed=6), database="a")
    storage = repo.storage
    assert isinstance(storage, MemoryStorage)
    for name in [n for n in storage.objects if n.startswith("index/")]:
        del storage.objects[name]
    packs_before = {n for n in storage.objects if n.startswith("data/")}
    with pytest.raises(IntegrityError):
        prune(kit.reopen(repo))
    assert {n for n in storage.objects if n.startswith("data/")} == packs_before


class CrashingStorage(MemoryStorage):
    """Memory storage that 'crashes' (raises) on the N-th mutating call."""

    def __init__(self, source: MemoryStorage, crash_at: int) -> None:
        super().__init__(source.url.removeprefix("memory://") + "-crash")
        self.objects = dict(source.objects)
        self.crash_at = crash_at
        self.calls = 0

    def _tick(self) -> None:
        self.calls += 1
        if self.calls == self.crash_at:
            raise StorageError("simulated crash")

    def put(self, name: str, data: bytes) -> None:
        if not name.startswith("locks/"):
            self._tick()
        super().put(name, data)

    def delete(self, name: str) -> None:
        if not name.startswith("locks/"):
            self._tick()
        super().delete(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return super().list(prefix)


def test_a_crash_at_any_step_leaves_kept_snapshots_restorable(kit: RepoKit) -> None:
    base = kit.init()
    shared = kit.random(10 * MiB, seed=7)
    gone = kit.backup(base, shared, database="db")
    kept = kit.backup(base, shared[: 3 * MiB] + kit.random(MiB, seed=8), database="db")
    base.delete_snapshot(gone.id)
    source = base.storage
    assert isinstance(source, MemoryStorage)

    # count the mutating calls of a complete prune, then crash at each one
    probe = CrashingStorage(source, crash_at=0)
    prune(Repository.open(probe, kit.passphrase))
    steps = probe.calls
    assert steps >= 3
    for crash_at in range(1, steps + 1):
        storage = CrashingStorage(source, crash_at)
        with pytest.raises(StorageError):
            prune(Repository.open(storage, kit.passphrase))
        storage.crash_at = 0  # the machine is back
        repo = Repository.open(storage, kit.passphrase)
        report = check_repository(repo, read_data=True)
        assert report.ok, (crash_at, report.errors)
        expected = shared[: 3 * MiB] + kit.random(MiB, seed=8)
        assert kit.restore(repo, repo.load_snapshot(kept.id)) == expected
        prune(repo)  # a second prune finishes the job
        done = Repository.open(storage, kit.passphrase)
        final = check_repository(done, read_data=True)
        assert final.ok and not final.warnings, (crash_at, final.errors, final.warnings)
