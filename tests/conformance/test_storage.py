"""Conformance suite for every Storage backend (contracts in dbfleet.storage.base).

Every test takes the ``storage`` fixture and runs once per backend in
``BACKENDS``. To add a backend (S3, a retry wrapper, ...) add one entry that
builds a fresh, empty instance; backend-specific tests take ``local`` directly.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dbfleet.errors import NotFoundError, StorageError, UsageError
from dbfleet.storage import LocalStorage, MemoryStorage, ObjectInfo, Storage, open_storage

# name -> factory(tmp_path) returning a fresh, empty backend.
BACKENDS: dict[str, Callable[[Path], Storage]] = {
    "local": lambda tmp: LocalStorage(tmp / "store"),
    "memory": lambda tmp: MemoryStorage(f"conformance-{tmp.name}"),
}


@pytest.fixture(params=sorted(BACKENDS))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    backend = BACKENDS[request.param](tmp_path)
    yield backend
    backend.close()


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")


def names(storage: Storage, prefix: str = "") -> set[str]:
    found = [o.name for o in storage.list(prefix)]
    assert len(found) == len(set(found)), "list yielded a name twice"
    return set(found)


# -- basic contracts ------------------------------------------------------


def test_is_a_storage(storage: Storage) -> None:
    assert isinstance(storage, Storage)
    assert isinstance(storage.url, str) and storage.url


def test_put_get_round_trip(storage: Storage) -> None:
    payloads = {
        "config": b"\x00\x01\x02 binary \xff",
        "empty": b"",
        "big": os.urandom(3 * 1024 * 1024 + 17),
    }
    for name, data in payloads.items():
        storage.put(name, data)
    for name, data in payloads.items():
        assert storage.get(name) == data


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [
        (0, None, b"0123456789"),
        (0, 4, b"0123"),
        (3, 4, b"3456"),
        (7, None, b"789"),
        (0, 0, b""),
        (8, 100, b"89"),  # range runs past the end: what exists
        (10, None, b""),  # offset at the end
        (25, 5, b""),  # offset past the end
    ],
)
def test_get_ranges(storage: Storage, offset: int, length: int | None, expected: bytes) -> None:
    storage.put("data/ab/range", b"0123456789")
    assert storage.get("data/ab/range", offset, length) == expected


def test_get_range_of_large_object(storage: Storage) -> None:
    data = os.urandom(2 * 1024 * 1024)
    storage.put("blob", data)
    assert storage.get("blob", len(data) - 65536, 65536) == data[-65536:]
    assert storage.get("blob", 1_000_000, 12345) == data[1_000_000:1_012_345]


def test_stat_sizes(storage: Storage) -> None:
    for size in (0, 1, 1000, 1 << 20):
        storage.put(f"sized/{size}", b"x" * size)
    for size in (0, 1, 1000, 1 << 20):
        info = storage.stat(f"sized/{size}")
        assert info == ObjectInfo(f"sized/{size}", size)


def test_missing_names_raise_not_found(storage: Storage) -> None:
    storage.put("present", b"x")
    for name in ("absent", "data/00/absent", "presen", "present2"):
        with pytest.raises(NotFoundError):
            storage.get(name)
        with pytest.raises(NotFoundError):
            storage.get(name, 5, 10)
        with pytest.raises(NotFoundError):
            storage.stat(name)


def test_name_below_an_existing_object_is_missing(storage: Storage) -> None:
    # "snapshots" could be a file on a damaged disk; a name below it is simply missing
    storage.put("snapshots", b"x")
    with pytest.raises(NotFoundError):
        storage.get("snapshots/abcd")
    with pytest.raises(NotFoundError):
        storage.stat("snapshots/abcd")


def test_not_found_is_a_storage_error(storage: Storage) -> None:
    with pytest.raises(StorageError):
        storage.get("nope")


def test_delete(storage: Storage) -> None:
    storage.put("locks/a", b"1")
    storage.put("locks/b", b"2")
    storage.delete("locks/a")
    with pytest.raises(NotFoundError):
        storage.get("locks/a")
    assert names(storage) == {"locks/b"}


def test_delete_missing_is_fine(storage: Storage) -> None:
    storage.delete("never-existed")
    storage.delete("deep/never/existed")
    storage.put("x", b"1")
    storage.delete("x")
    storage.delete("x")
    assert names(storage) == set()


def test_overwrite_replaces(storage: Storage) -> None:
    storage.put("locks/l", b"a much longer first version")
    storage.put("locks/l", b"short")
    assert storage.get("locks/l") == b"short"
    assert storage.stat("locks/l").size == 5
    assert names(storage) == {"locks/l"}


def test_nested_names(storage: Storage) -> None:
    storage.put("a/b/c/d/e", b"deep")
    storage.put("a/b/sibling", b"near")
    assert storage.get("a/b/c/d/e") == b"deep"
    assert names(storage, "a/") == {"a/b/c/d/e", "a/b/sibling"}
    assert names(storage, "a/b/c/") == {"a/b/c/d/e"}


# -- list -----------------------------------------------------------------


def test_list_empty(storage: Storage) -> None:
    assert names(storage) == set()
    assert names(storage, "snapshots/") == set()


def test_list_many_with_prefixes(storage: Storage) -> None:
    packs = {f"data/{i % 256:02x}/{i % 256:02x}{i:060x}": i for i in range(500)}
    for name, i in packs.items():
        storage.put(name, b"p" * (i % 7))
    others = {"config", "keys/k1", "index/i1", "snapshots/s1", "database"}
    for name in others:
        storage.put(name, b"o")

    listed = list(storage.list("data/"))
    assert {o.name for o in listed} == set(packs)
    assert all(o.size == packs[o.name] % 7 for o in listed)
    assert names(storage) == set(packs) | others
    assert names(storage, "data/0a/") == {n for n in packs if n.startswith("data/0a/")}
    assert len(names(storage, "data/0a/")) == 2
    # prefixes that end inside a directory or a file name
    assert names(storage, "data/0") == {n for n in packs if n.startswith("data/0")}
    assert names(storage, "dat") == set(packs) | {"database"}
    assert names(storage, "keys/k") == {"keys/k1"}
    assert names(storage, "snapshots/s1") == {"snapshots/s1"}
    assert names(storage, "snapshots/s2") == set()
    assert names(storage, "nothing/") == set()


def test_list_uses_slash_names_and_sizes(storage: Storage) -> None:
    storage.put("index/abc", b"12345")
    assert list(storage.list("index/")) == [ObjectInfo("index/abc", 5)]


def test_list_tolerates_deletes_meanwhile(storage: Storage) -> None:
    all_names = {f"data/{i:02x}/obj{i}" for i in range(40)}
    for name in all_names:
        storage.put(name, b"x")
    seen = set()
    for info in storage.list("data/"):
        seen.add(info.name)
        for name in all_names:
            storage.delete(name)
    assert seen <= all_names and seen
    assert names(storage) == set()


# -- concurrency and atomicity --------------------------------------------


def test_concurrent_puts_from_threads(storage: Storage) -> None:
    def writer(worker: int) -> None:
        for i in range(40):
            # the same few directories from every thread: mkdir races
            storage.put(f"data/{i % 4:02x}/w{worker}-{i}", f"{worker}:{i}".encode() * 100)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    expected = {f"data/{i % 4:02x}/w{w}-{i}" for w in range(8) for i in range(40)}
    assert names(storage, "data/") == expected
    for w in range(8):
        for i in range(40):
            assert storage.get(f"data/{i % 4:02x}/w{w}-{i}") == f"{w}:{i}".encode() * 100


def test_concurrent_puts_to_one_name_leave_one_whole_version(storage: Storage) -> None:
    versions = [bytes([v]) * (256 * 1024 + v) for v in range(6)]

    def writer(v: int) -> None:
        for _ in range(5):
            storage.put("locks/shared", versions[v])

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(writer, range(6)))
    assert storage.get("locks/shared") in versions
    assert names(storage) == {"locks/shared"}


def test_readers_never_see_a_partial_object(storage: Storage) -> None:
    a, b = b"A" * (1024 * 1024), b"B" * (1024 * 1024 + 1)
    storage.put("obj", a)
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            data = storage.get("obj")
            if data not in (a, b):
                problems.append(f"partial read of {len(data)} bytes")
            listed = names(storage)
            if listed != {"obj"}:
                problems.append(f"list showed {sorted(listed)}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(30):
            storage.put("obj", a if i % 2 else b)
    finally:
        stop.set()
        thread.join()
    assert problems == []


# -- local backend specifics ----------------------------------------------


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../x", "data/../../etc/passwd", ".."])
def test_local_rejects_invalid_names(local: LocalStorage, tmp_path: Path, name: str) -> None:
    with pytest.raises(StorageError):
        local.put(name, b"evil")
    with pytest.raises(StorageError):
        local.get(name)
    with pytest.raises(StorageError):
        local.stat(name)
    with pytest.raises(StorageError):
        local.delete(name)
    assert not (tmp_path / "x").exists()
    assert not Path("/abs").exists()


def test_local_put_leaves_no_temp_files(local: LocalStorage) -> None:
    for i in range(20):
        local.put(f"data/{i % 3:02x}/p{i}", os.urandom(1000))
    on_disk = {str(p.relative_to(local.root)) for p in local.root.rglob("*") if p.is_file()}
    assert on_disk == names(local)
    assert len(on_disk) == 20


def test_local_leftover_temp_file_is_not_listed(local: LocalStorage) -> None:
    local.put("data/ab/abcd", b"whole")
    leftover = local.root / "data" / "ab" / ".abce.1a2b3c4d5e6f.dbfleet-tmp"
    leftover.write_bytes(b"half a pack from a crashed write")
    assert names(local) == {"data/ab/abcd"}
    assert names(local, "data/ab/") == {"data/ab/abcd"}


def test_local_files_are_private(local: LocalStorage) -> None:
    local.put("keys/k", b"wrapped key")
    mode = (local.root / "keys" / "k").stat().st_mode & 0o777
    assert mode & 0o077 == 0


def test_local_missing_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "does" / "not" / "exist")
    assert names(storage) == set()
    with pytest.raises(NotFoundError):
        storage.get("config")


def test_open_storage_urls(tmp_path: Path) -> None:
    by_url = open_storage(f"file://{tmp_path}/repo")
    assert isinstance(by_url, LocalStorage) and by_url.root == tmp_path / "repo"
    by_path = open_storage(str(tmp_path / "repo2"))
    assert isinstance(by_path, LocalStorage) and by_path.root == tmp_path / "repo2"
    mem = open_storage("memory://conformance-open")
    assert isinstance(mem, MemoryStorage)
    assert open_storage("memory://conformance-open") is mem
    with pytest.raises(UsageError):
        open_storage("ftp://example.org/repo")
