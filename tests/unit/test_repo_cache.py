"""The local cache of manifests and index files: fewer requests to storage,
never a stale or damaged answer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from repokit import RepoKit

from dbfleet.repo import Repository
from dbfleet.repo.cache import MetadataCache, default_cache_root
from dbfleet.storage import MemoryStorage, ObjectInfo


class CountingStorage:
    """Counts ``get`` calls per top-level folder of a real MemoryStorage."""

    def __init__(self, inner: MemoryStorage) -> None:
        self.inner, self.url, self.gets = inner, inner.url, Counter[str]()

    def put(self, name: str, data: bytes) -> None:
        self.inner.put(name, data)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self.gets[name.partition("/")[0]] += 1
        return self.inner.get(name, offset, length)

    def stat(self, name: str) -> ObjectInfo:
        return self.inner.stat(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def close(self) -> None:
        self.inner.close()


def _cached_repo(kit: RepoKit, tmp_path: Path) -> tuple[Repository, CountingStorage]:
    storage = CountingStorage(kit.memory())
    repo = kit.init(storage)  # type: ignore[arg-type]
    for n in range(5):
        kit.backup(repo, bytes([n]) * 300_000, database=f"db{n}")
    reopened = kit.reopen(repo)
    reopened.use_cache(tmp_path / "cache")
    return reopened, storage


def test_second_listing_reads_no_manifest_from_storage(kit: RepoKit, tmp_path: Path) -> None:
    repo, storage = _cached_repo(kit, tmp_path)
    first = repo.list_snapshots()
    blobs = len(repo.load_index())
    assert storage.gets["snapshots"] == 5 and storage.gets["index"] == 5
    storage.gets.clear()
    again = kit.reopen(repo)
    again.use_cache(tmp_path / "cache")
    assert [s.id for s in again.list_snapshots()] == [s.id for s in first]
    assert len(again.load_index()) == blobs
    assert storage.gets["snapshots"] == 0
    assert storage.gets["index"] == 0


def test_deleted_and_damaged_objects_are_never_served(kit: RepoKit, tmp_path: Path) -> None:
    repo, storage = _cached_repo(kit, tmp_path)
    snapshots = repo.list_snapshots()
    repo.delete_snapshot(snapshots[0].id)  # as another host's prune would
    remaining = [s.id for s in repo.list_snapshots()]
    assert snapshots[0].id not in remaining and len(remaining) == 4
    cached = tmp_path / "cache" / str(repo.config["id"]) / "snapshots"
    assert not (cached / snapshots[0].id).exists()

    damaged = cached / remaining[0]
    damaged.write_bytes(b"planted")
    storage.gets.clear()
    assert [s.id for s in repo.list_snapshots()] == remaining
    assert storage.gets["snapshots"] == 1  # only the damaged copy was fetched again
    assert damaged.read_bytes() != b"planted"


def test_cache_ignores_names_that_are_not_content_addressed(tmp_path: Path) -> None:
    cache = MetadataCache(tmp_path)
    cache.put("snapshots/not-a-hash", b"x")
    cache.put("data/" + "a" * 64, b"x")
    cache.put("snapshots/" + "a" * 64, b"does not hash to that name")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_cache_location_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DBFLEET_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c"
    monkeypatch.setenv("DBFLEET_NO_CACHE", "1")
    assert default_cache_root() is None
    monkeypatch.delenv("DBFLEET_NO_CACHE")
    monkeypatch.delenv("DBFLEET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_root() == tmp_path / "x" / "dbfleet"
