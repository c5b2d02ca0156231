"""Damage to any stored object is detected: restore raises IntegrityError and
never hands out wrong bytes; ``check`` reports what its docstring promises."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from repokit import PASSPHRASE, RepoKit

from dbfleet.errors import IntegrityError, SnapshotNotFoundError
from dbfleet.repo import BackupWriter, Repository, iter_stream
from dbfleet.repo.check import check_repository
from dbfleet.repo.pack import BLOB_DATA, BLOB_TREE
from dbfleet.storage import Storage

MiB = 1024 * 1024


@dataclass
class Stored:
    storage: Storage
    snapshot_id: str
    data: bytes
    pack: str  # storage name of the only pack

    def open(self) -> Repository:
        return Repository.open(self.storage, PASSPHRASE)


@pytest.fixture
def stored(kit: RepoKit) -> Stored:
    repo = kit.init()
    data = kit.mixed(3 * MiB, seed=11)
    snapshot = kit.backup(repo, data)
    packs = [o.name for o in repo.storage.list("data/")]
    assert len(packs) == 1
    report = check_repository(kit.reopen(repo), read_data=True)
    assert report.ok and not report.warnings, report.as_dict()
    return Stored(repo.storage, snapshot.id, data, packs[0])


def flip(storage: Storage, name: str, offset: int) -> None:
    content = bytearray(storage.get(name))
    content[offset] ^= 0x40
    storage.put(name, bytes(content))


def restore_must_fail(stored: Stored) -> IntegrityError:
    """Restore raises IntegrityError, and whatever it yielded before is correct."""
    repo = stored.open()
    got = bytearray()
    with pytest.raises(IntegrityError) as info:
        snapshot = repo.load_snapshot(stored.snapshot_id)
        for piece in iter_stream(repo, snapshot, "data", workers=2):
            got += piece
    assert stored.data.startswith(bytes(got))
    assert len(got) < len(stored.data)
    return info.value


def first_blob(repo: Repository, blob_type: int) -> tuple[int, int]:
    locations = sorted(
        (loc.offset, loc.length) for _, loc in repo.index.items() if loc.type == blob_type
    )
    return locations[0]


def test_healthy_repository_checks_clean(stored: Stored) -> None:
    report = check_repository(stored.open(), read_data=True)
    assert report.ok
    assert report.errors == [] and report.warnings == []
    assert report.packs == 1 and report.snapshots == 1 and report.blobs >= 4
    assert report.bytes_read == stored.storage.stat(stored.pack).size


def test_flipped_byte_in_a_data_blob(stored: Stored) -> None:
    offset, length = first_blob(stored.open(), BLOB_DATA)
    flip(stored.storage, stored.pack, offset + length // 2)
    error = restore_must_fail(stored)
    assert "authentication failed" in str(error)
    deep = check_repository(stored.open(), read_data=True)
    assert not deep.ok
    assert any("does not match its name" in e for e in deep.errors)
    assert any("authentication failed" in e for e in deep.errors)
    # the structure check reads pack headers only: by design it cannot see this
    assert check_repository(stored.open()).ok


def test_flipped_byte_in_the_tree_blob(stored: Stored) -> None:
    offset, _ = first_blob(stored.open(), BLOB_TREE)
    flip(stored.storage, stored.pack, offset + 30)
    restore_must_fail(stored)
    # the structure check reads tree blobs, so it catches this one
    assert not check_repository(stored.open()).ok
    assert not check_repository(stored.open(), read_data=True).ok


@pytest.mark.parametrize("from_end", [10, 40, 1, 4])
def test_flipped_byte_in_the_pack_header(stored: Stored, from_end: int) -> None:
    """Header damage (sealed header or its length field) is found by both
    checks. Restore reads blobs through the index, not the header, so it still
    returns the exact data; it must never return anything else."""
    size = stored.storage.stat(stored.pack).size
    flip(stored.storage, stored.pack, size - from_end)
    structure = check_repository(stored.open())
    assert not structure.ok
    assert any(stored.pack.rsplit("/", 1)[1][:16] in e for e in structure.errors)
    assert not check_repository(stored.open(), read_data=True).ok
    repo = stored.open()
    restored = b"".join(iter_stream(repo, repo.load_snapshot(stored.snapshot_id), "data"))
    assert restored == stored.data


def test_flipped_byte_in_an_index_file(stored: Stored) -> None:
    (index_name,) = [o.name for o in stored.storage.list("index/")]
    flip(stored.storage, index_name, 40)
    restore_must_fail(stored)
    for read_data in (False, True):
        report = check_repository(stored.open(), read_data=read_data)
        assert not report.ok
        assert any(index_name in e for e in report.errors)


def test_flipped_byte_in_a_snapshot(stored: Stored) -> None:
    name = f"snapshots/{stored.snapshot_id}"
    flip(stored.storage, name, 30)
    restore_must_fail(stored)
    with pytest.raises(IntegrityError):
        stored.open().find_snapshot("db:latest")
    report = check_repository(stored.open(), read_data=True)
    assert not report.ok
    assert any(stored.snapshot_id[:8] in e for e in report.errors)


def test_swapped_snapshot_content_is_detected(kit: RepoKit, stored: Stored) -> None:
    repo = stored.open()
    other = kit.backup(repo, b"another snapshot")
    content = stored.storage.get(f"snapshots/{other.id}")
    stored.storage.put(f"snapshots/{stored.snapshot_id}", content)
    with pytest.raises(IntegrityError, match="does not match its id"):
        stored.open().load_snapshot(stored.snapshot_id)


def test_flipped_byte_in_config(stored: Stored) -> None:
    flip(stored.storage, "config", 25)
    with pytest.raises(IntegrityError):
        stored.open()


def test_truncated_pack(stored: Stored) -> None:
    content = stored.storage.get(stored.pack)
    stored.storage.put(stored.pack, content[: len(content) // 2])
    report = check_repository(stored.open())
    assert not report.ok
    assert any("the index says" in e for e in report.errors)
    assert not check_repository(stored.open(), read_data=True).ok
    restore_must_fail(stored)


def test_missing_pack(stored: Stored) -> None:
    stored.storage.delete(stored.pack)
    report = check_repository(stored.open())
    assert any("missing from storage" in e for e in report.errors)
    assert any(f"snapshot {stored.snapshot_id[:8]}" in e for e in report.errors)
    error = restore_must_fail(stored)
    assert "missing" in str(error)


def test_missing_snapshot_is_not_found(stored: Stored) -> None:
    stored.storage.delete(f"snapshots/{stored.snapshot_id}")
    with pytest.raises(SnapshotNotFoundError):
        stored.open().load_snapshot(stored.snapshot_id)
    # the pack is now unreferenced by snapshots but still indexed: no error
    assert check_repository(stored.open(), read_data=True).ok


def test_unreferenced_pack_is_a_warning(kit: RepoKit, stored: Stored) -> None:
    """A backup that dies after uploading packs but before its index and
    snapshot leaves unreferenced packs: harmless, reported as a warning."""
    repo = stored.open()
    big = kit.random(40 * MiB, seed=12)

    class Crash(Exception):
        pass

    with pytest.raises(Crash), BackupWriter(repo, workers=2) as writer:
        writer.write_stream("data", io.BytesIO(big))
        raise Crash
    packs = {o.name for o in stored.storage.list("data/")}
    assert len(packs) >= 2, "the interrupted backup should have uploaded a pack"
    assert len(list(stored.storage.list("index/"))) == 1
    report = check_repository(stored.open(), read_data=True)
    assert report.ok, report.errors
    assert len(report.warnings) == len(packs) - 1
    assert all("not in any index" in w for w in report.warnings)
    fresh = stored.open()
    assert [s.id for s in fresh.list_snapshots()] == [stored.snapshot_id]
    assert b"".join(iter_stream(fresh, fresh.load_snapshot(stored.snapshot_id), "data")) == (
        stored.data
    )
