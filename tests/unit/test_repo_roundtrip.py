"""Streams go in and come back byte-exact; deduplication works and is keyed."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from repokit import RepoKit

from dbfleet.errors import IntegrityError
from dbfleet.repo import BackupWriter, Snapshot, iter_stream
from dbfleet.repo.pack import BLOB_DATA

MiB = 1024 * 1024


@pytest.mark.parametrize("size", [0, 1, 1000, 600 * 1024, 5 * MiB + 123])
def test_round_trip_sizes(kit: RepoKit, size: int) -> None:
    repo = kit.init()
    data = kit.mixed(size, seed=size)
    snapshot = kit.backup(repo, data)
    assert snapshot.size == size
    assert snapshot.streams[0].size == size
    # restore through a fresh Repository object: only what is stored counts
    fresh = kit.reopen(repo)
    assert kit.restore(fresh, fresh.find_snapshot(snapshot.id)) == data


def test_round_trip_on_local_storage(kit: RepoKit) -> None:
    repo = kit.init(kit.local())
    data = kit.mixed(3 * MiB, seed=3)
    snapshot = kit.backup(repo, data)
    fresh = kit.reopen(repo)
    assert kit.restore(fresh, fresh.find_snapshot("db:latest")) == data
    assert snapshot.stored_size < len(data)  # the text half compresses


def test_several_streams_in_one_snapshot(kit: RepoKit) -> None:
    repo = kit.init()
    streams = {"dump": kit.mixed(2 * MiB, seed=1), "globals": b"CREATE ROLE app;\n", "empty": b""}
    now = datetime.now(UTC)
    with BackupWriter(repo, workers=2) as writer:
        for name, data in streams.items():
            writer.write_stream(name, io.BytesIO(data), media_type="text/x-test")
        snapshot = writer.commit(
            Snapshot(database="pg", engine="raw", hostname="h", started=now, finished=now)
        )
    assert [s.name for s in snapshot.streams] == list(streams)
    assert snapshot.size == sum(len(d) for d in streams.values())
    fresh = kit.reopen(repo)
    loaded = fresh.load_snapshot(snapshot.id)
    assert loaded.streams[0].media_type == "text/x-test"
    for name, data in streams.items():
        assert kit.restore(fresh, loaded, name) == data
    with pytest.raises(IntegrityError, match="no stream"):
        kit.restore(fresh, loaded, "missing")


def test_progress_and_on_bytes(kit: RepoKit) -> None:
    repo = kit.init()
    data = kit.random(3 * MiB)
    seen: list[int] = []
    now = datetime.now(UTC)
    with BackupWriter(repo, workers=2, progress=lambda p: seen.append(p.bytes_read)) as writer:
        writer.write_stream("data", io.BytesIO(data))
        snapshot = writer.commit(
            Snapshot(database="db", engine="raw", hostname="h", started=now, finished=now)
        )
    assert seen and seen == sorted(seen) and seen[-1] == len(data)
    counted: list[int] = []
    restored = b"".join(iter_stream(repo, snapshot, "data", on_bytes=counted.append))
    assert restored == data and sum(counted) == len(data)


def test_second_backup_of_same_data_adds_nothing(kit: RepoKit) -> None:
    repo = kit.init()
    data = kit.mixed(6 * MiB, seed=2)
    first = kit.backup(repo, data)
    packs_before = {o.name for o in repo.storage.list("data/")}
    second = kit.backup(kit.reopen(repo), data)
    assert first.added_bytes > 0
    assert second.added_bytes == 0
    assert second.stored_size == first.stored_size
    assert {o.name for o in repo.storage.list("data/")} == packs_before
    assert second.id != first.id


def test_small_insert_adds_at_most_two_chunks(kit: RepoKit) -> None:
    repo = kit.init()
    data = kit.random(12 * MiB, seed=4)
    first = kit.backup(repo, data)
    assert first.streams[0].chunks >= 6
    middle = len(data) // 2
    changed = data[:middle] + b"a few inserted bytes" + data[middle:]
    now = datetime.now(UTC)
    with BackupWriter(kit.reopen(repo), workers=2) as writer:
        writer.write_stream("data", io.BytesIO(changed))
        second = writer.commit(
            Snapshot(database="db", engine="raw", hostname="h", started=now, finished=now)
        )
        new_chunks = writer.progress.new_chunks
    max_chunk = repo.chunker_params["max"]
    # at most two data chunks around the edit, plus the new tree blob
    assert 1 <= new_chunks <= 3
    assert second.added_bytes <= 2 * max_chunk
    assert second.added_bytes < len(data) / 3
    fresh = kit.reopen(repo)
    assert kit.restore(fresh, fresh.load_snapshot(second.id)) == changed
    assert kit.restore(fresh, fresh.load_snapshot(first.id)) == data


def test_repeated_content_within_a_stream_is_stored_once(kit: RepoKit) -> None:
    repo = kit.init()
    block = kit.random(4 * MiB, seed=5)
    data = block * 4
    snapshot = kit.backup(repo, data)
    # random bytes do not compress: without dedup this would be 4 blocks; with
    # it, one block plus the chunks that straddle each repeat's start
    assert snapshot.added_bytes < 3 * len(block)
    assert kit.restore(kit.reopen(repo), snapshot) == data


def test_chunk_ids_differ_between_repositories(kit: RepoKit) -> None:
    data = kit.random(4 * MiB, seed=6)
    a, b = kit.init(), kit.init()
    kit.backup(a, data)
    kit.backup(b, data)
    ids_a = {blob_id for blob_id, loc in kit.reopen(a).index.items() if loc.type == BLOB_DATA}
    ids_b = {blob_id for blob_id, loc in kit.reopen(b).index.items() if loc.type == BLOB_DATA}
    assert ids_a and ids_b
    assert ids_a.isdisjoint(ids_b)


def test_snapshot_metadata_round_trips(kit: RepoKit) -> None:
    repo = kit.init()
    snapshot = kit.backup(repo, b"hello", database="notes")
    loaded = kit.reopen(repo).load_snapshot(snapshot.id)
    assert loaded.id == snapshot.id
    assert loaded.database == "notes"
    assert loaded.size == 5
    summary = loaded.summary()
    assert summary["id"] == snapshot.id
    assert datetime.fromisoformat(str(summary["time"])) == loaded.finished
