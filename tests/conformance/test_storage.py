"""Conformance suite for every Storage backend (contracts in dbfleet.storage.base).

Every test takes the ``storage`` fixture and runs once per backend in
``BACKENDS``. To add a backend (S3, a retry wrapper, ...) add one entry that
builds a fresh, empty instance; backend-specific tests take ``local`` or
``s3_storage`` directly.

Backends: ``local``, ``memory``, ``s3`` (the MinIO test server, from the
``tests.integration.fixtures_s3`` plugin: skipped locally when MinIO is not
running, a failure under CI) and ``memory+faults+retry``: a
:class:`RetryingStorage` over a :class:`FlakyStorage` that fails every distinct
call once, so the whole suite also proves that retries are invisible.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dbfleet.errors import NotFoundError, StorageError, UsageError
from dbfleet.storage import LocalStorage, MemoryStorage, ObjectInfo, Storage, open_storage
from dbfleet.storage.retry import PermanentStorageError, RetryingStorage

MiB = 1024 * 1024


class FlakyStorage:
    """Fault injection: a Storage that fails like a bad network would.

    ``fail_next=N``: the next N calls fail (any operation). ``once_per_call``:
    every distinct call (operation and arguments) fails the first time. Half
    of the failures happen *after* the inner operation ran (the answer was
    lost), and a failing ``list`` first yields half of what it finds.
    """

    def __init__(
        self,
        inner: Storage,
        *,
        fail_next: int = 0,
        once_per_call: bool = False,
        error: type[StorageError] = StorageError,
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.fail_next = fail_next
        self.once_per_call = once_per_call
        self.error = error
        self.calls: list[str] = []
        self.failures = 0
        self._seen: set[tuple[Any, ...]] = set()
        self._lock = threading.Lock()

    def _should_fail(self, *call: Any) -> bool:
        with self._lock:
            self.calls.append(str(call[0]))
            if self.fail_next > 0:
                self.fail_next -= 1
                self.failures += 1
                return True
            if self.once_per_call and call not in self._seen:
                self._seen.add(call)
                self.failures += 1
                return True
            return False

    def _fail(self, call: tuple[Any, ...]) -> StorageError:
        return self.error(f"injected failure of {call[0]} {call[1]!r}")

    def _run(self, call: tuple[Any, ...], fn: Callable[[], Any]) -> Any:
        if not self._should_fail(*call):
            return fn()
        if hashlib.sha256(repr(call).encode()).digest()[0] & 1:
            fn()  # the operation happened, its answer was lost
        raise self._fail(call)

    def put(self, name: str, data: bytes) -> None:
        self._run(
            ("put", name, hashlib.sha256(data).hexdigest()), lambda: self.inner.put(name, data)
        )

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data: bytes = self._run(
            ("get", name, offset, length), lambda: self.inner.get(name, offset, length)
        )
        return data

    def stat(self, name: str) -> ObjectInfo:
        info: ObjectInfo = self._run(("stat", name), lambda: self.inner.stat(name))
        return info

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        call = ("list", prefix)
        if not self._should_fail(*call):
            yield from self.inner.list(prefix)
            return
        found = list(self.inner.list(prefix))
        yield from found[: len(found) // 2]
        raise self._fail(call)

    def delete(self, name: str) -> None:
        self._run(("delete", name), lambda: self.inner.delete(name))

    def close(self) -> None:
        self.inner.close()


def _s3(request: pytest.FixtureRequest, tmp: Path) -> Storage:
    # a small page size, so that every listing test also crosses pages
    try:
        make: Callable[..., Storage] = request.getfixturevalue("s3_storage")
    except pytest.FixtureLookupError:
        pytest.fail("register tests.integration.fixtures_s3 in tests/conftest.py's _PLUGINS")
    # one retry per request only: the interrupted-upload test drops connections
    return make("conformance", list_page_size=50, max_attempts=2)


def _faulty_memory(request: pytest.FixtureRequest, tmp: Path) -> Storage:
    flaky = FlakyStorage(MemoryStorage(f"conformance-faults-{tmp.name}"), once_per_call=True)
    return RetryingStorage(flaky, attempts=3, sleep=lambda _delay: None)


# name -> factory(request, tmp_path) returning a fresh, empty backend.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Storage]] = {
    "local": lambda request, tmp: LocalStorage(tmp / "store"),
    "memory": lambda request, tmp: MemoryStorage(f"conformance-{tmp.name}"),
    "memory+faults+retry": _faulty_memory,
    "s3": _s3,
}


@pytest.fixture(params=sorted(BACKENDS))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    backend = BACKENDS[request.param](request, tmp_path)
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


# -- large objects and interrupted uploads ----------------------------------


def test_pack_sized_objects(storage: Storage) -> None:
    # bigger than a 16 MiB pack: S3 uploads it in parts; ranges cross part borders
    data = os.urandom(20 * MiB + 123)
    storage.put("data/ab/pack", data)
    assert storage.stat("data/ab/pack").size == len(data)
    assert storage.get("data/ab/pack") == data
    for offset, length in ((8 * MiB - 10, 20), (16 * MiB - 1, 2), (20 * MiB, 1000), (0, 1)):
        assert storage.get("data/ab/pack", offset, length) == data[offset : offset + length]
    assert names(storage, "data/") == {"data/ab/pack"}


def _interrupt_local(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up halfway through writing a big object."""
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if len(data) > MiB:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def _interrupt_s3(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection drops on every try of the second part."""
    from botocore.exceptions import ConnectionClosedError

    from dbfleet.storage.s3 import S3Storage

    assert isinstance(storage, S3Storage)

    def drop(request: Any, **_kwargs: Any) -> None:
        if "partNumber=2" in request.url:
            raise ConnectionClosedError(endpoint_url=request.url)

    storage.client.meta.events.register("before-send.s3.UploadPart", drop)


def _leftovers(storage: Storage) -> list[str]:
    """What a failed put left behind that the backend itself can see."""
    from dbfleet.storage.s3 import S3Storage

    if isinstance(storage, LocalStorage):
        return [str(p) for p in storage.root.rglob("*") if p.is_file() and p.name != "obj"]
    if isinstance(storage, S3Storage):
        return [name for name, _id, _when in storage.incomplete_uploads()]
    return []


INTERRUPTERS: dict[str, Callable[[Storage, pytest.MonkeyPatch], None]] = {
    "local": _interrupt_local,
    "s3": _interrupt_s3,
}


@pytest.mark.parametrize("backend", sorted(INTERRUPTERS))
def test_interrupted_put_leaves_old_version_and_no_trace(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only backends whose puts can fail halfway; a memory put cannot
    storage = BACKENDS[backend](request, tmp_path)
    old = b"the complete old version"
    storage.put("obj", old)
    INTERRUPTERS[backend](storage, monkeypatch)
    with pytest.raises(StorageError):
        storage.put("obj", os.urandom(20 * MiB))
    with pytest.raises(StorageError):
        storage.put("new", os.urandom(20 * MiB))
    monkeypatch.undo()
    assert storage.get("obj") == old
    assert storage.stat("obj").size == len(old)
    assert names(storage) == {"obj"}
    with pytest.raises(NotFoundError):
        storage.stat("new")
    assert _leftovers(storage) == []
    storage.close()


# -- retries on transient errors --------------------------------------------


def _retrying(flaky: FlakyStorage, sleeps: list[float], attempts: int = 4) -> RetryingStorage:
    return RetryingStorage(flaky, attempts=attempts, base_delay=0.5, sleep=sleeps.append)


def test_retry_recovers_from_transient_failures(storage: Storage) -> None:
    flaky = FlakyStorage(storage)
    sleeps: list[float] = []
    retrying = _retrying(flaky, sleeps)
    assert isinstance(retrying, Storage)
    operations: list[Callable[[], object]] = [
        lambda: retrying.put("index/i1", b"index"),
        lambda: retrying.get("index/i1"),
        lambda: retrying.get("index/i1", 1, 3),
        lambda: retrying.stat("index/i1"),
        lambda: list(retrying.list("index/")),
        lambda: retrying.delete("index/i1"),
    ]
    results = []
    for op in operations:
        flaky.fail_next = 3
        sleeps.clear()
        results.append(op())
        assert len(sleeps) == 3
        # exponential backoff with jitter: 0.25-0.5, 0.5-1, 1-2 seconds
        assert [0.25, 0.5, 1.0] <= sleeps <= [0.5, 1.0, 2.0]
        assert all(0.25 * 2**i <= s <= 0.5 * 2**i for i, s in enumerate(sleeps))
    assert results[1:5] == [
        b"index",
        b"nde",
        ObjectInfo("index/i1", 5),
        [ObjectInfo("index/i1", 5)],
    ]
    assert names(storage) == set()
    assert retrying.retries == 18


def test_retry_gives_up_after_its_attempts(storage: Storage) -> None:
    flaky = FlakyStorage(storage, fail_next=10)
    sleeps: list[float] = []
    with pytest.raises(StorageError, match="injected failure"):
        _retrying(flaky, sleeps, attempts=3).put("x", b"1")
    assert flaky.calls == ["put"] * 3
    assert len(sleeps) == 2


def test_retry_does_not_retry_answers_or_permanent_errors(storage: Storage) -> None:
    flaky = FlakyStorage(storage)
    sleeps: list[float] = []
    retrying = _retrying(flaky, sleeps)
    with pytest.raises(NotFoundError):
        retrying.get("missing")
    with pytest.raises(NotFoundError):
        retrying.stat("missing")
    assert sleeps == []
    flaky.error = PermanentStorageError
    flaky.fail_next = 1
    with pytest.raises(PermanentStorageError):
        retrying.put("x", b"1")
    assert sleeps == []
    assert flaky.calls == ["get", "stat", "put"]


def test_retry_restarts_a_list_without_duplicates(storage: Storage) -> None:
    expected = {f"snapshots/s{i:03d}" for i in range(120)}
    for name in expected:
        storage.put(name, b"s")
    flaky = FlakyStorage(storage, fail_next=2)  # both times after yielding half
    sleeps: list[float] = []
    listed = [o.name for o in _retrying(flaky, sleeps).list("snapshots/")]
    assert len(listed) == len(set(listed)) == 120
    assert set(listed) == expected
    assert len(sleeps) == 2


def test_retry_wrapper_over_a_flaky_repository(storage: Storage) -> None:
    """A whole repository round trip through injected faults."""
    from dbfleet.repo import Repository

    flaky = FlakyStorage(storage, once_per_call=True)
    retrying = RetryingStorage(flaky, attempts=3, sleep=lambda _delay: None)
    repo = Repository.init(retrying, "pw", {"n": 2**10, "r": 8, "p": 1})
    reopened = Repository.open(retrying, "pw")
    assert reopened.config == repo.config
    assert flaky.failures > 0 and retrying.retries == flaky.failures


# -- S3 specifics (MinIO) ---------------------------------------------------

S3Factory = Callable[..., Any]


def _count_sends(storage: Any, operation: str) -> list[str]:
    sent: list[str] = []
    storage.client.meta.events.register(
        f"before-send.s3.{operation}", lambda request, **_: sent.append(request.url)
    )
    return sent


def test_s3_multipart_above_threshold(s3_storage: S3Factory) -> None:
    storage = s3_storage()
    parts = _count_sends(storage, "UploadPart")
    single = _count_sends(storage, "PutObject")
    storage.put("exact", os.urandom(8 * MiB))  # at the threshold: one request
    assert (len(single), len(parts)) == (1, 0)
    storage.put("pack", os.urandom(16 * MiB + 5))  # a pack: 8 + 8 MiB + 5 bytes
    assert (len(single), len(parts)) == (1, 3)
    assert storage.stat("pack").size == 16 * MiB + 5
    assert storage.incomplete_uploads() == []


def test_s3_empty_objects_do_not_stall_the_connection(s3_storage: S3Factory) -> None:
    # botocore's Expect: 100-continue after an empty PUT stalled the next request on
    # the same connection until the read timeout (boto/botocore#3755)
    storage = s3_storage(read_timeout=2, max_attempts=1)
    for i in range(20):
        storage.put(f"locks/l{i}", b"" if i % 2 else b"lock %d" % i)
    assert {o.name: o.size for o in storage.list("locks/")} == {
        f"locks/l{i}": 0 if i % 2 else len(b"lock %d" % i) for i in range(20)
    }


def test_s3_botocore_retries_transient_errors(s3_storage: S3Factory) -> None:
    from botocore.exceptions import ConnectionClosedError

    storage = s3_storage()
    attempts = {"PutObject": 0, "GetObject": 0, "UploadPart": 0}

    def flaky(request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        attempts[operation] += 1
        if attempts[operation] <= 2:  # the first two tries of each operation fail
            raise ConnectionClosedError(endpoint_url=request.url)

    for operation in attempts:
        storage.client.meta.events.register(f"before-send.s3.{operation}", flaky)
    storage.put("small", b"small object")
    assert storage.get("small") == b"small object"
    big = os.urandom(9 * MiB)
    storage.put("big", big)
    assert storage.get("big", 8 * MiB) == big[8 * MiB :]
    assert attempts == {"PutObject": 3, "GetObject": 4, "UploadPart": 4}


def test_s3_interrupt_aborts_the_multipart_upload(s3_storage: S3Factory) -> None:
    storage = s3_storage()
    parts = 0

    def interrupt(**_: Any) -> None:
        nonlocal parts
        parts += 1
        if parts == 2:
            raise KeyboardInterrupt

    storage.client.meta.events.register("before-send.s3.UploadPart", interrupt)
    with pytest.raises(KeyboardInterrupt):
        storage.put("data/ab/pack", os.urandom(20 * MiB))
    assert names(storage) == set()
    assert storage.incomplete_uploads() == []


def test_s3_failed_abort_leaves_only_an_invisible_upload(s3_storage: S3Factory) -> None:
    from botocore.exceptions import EndpointConnectionError

    storage = s3_storage(max_attempts=1)

    def network_gone(request: Any, **_: Any) -> None:
        if "partNumber=2" in request.url or request.method == "DELETE":
            raise EndpointConnectionError(endpoint_url=request.url)

    storage.client.meta.events.register("before-send.s3.UploadPart", network_gone)
    storage.client.meta.events.register("before-send.s3.AbortMultipartUpload", network_gone)
    with pytest.raises(StorageError):
        storage.put("data/ab/pack", os.urandom(20 * MiB))
    storage.client.meta.events.unregister("before-send.s3.UploadPart", network_gone)
    storage.client.meta.events.unregister("before-send.s3.AbortMultipartUpload", network_gone)
    assert names(storage) == set()
    with pytest.raises(NotFoundError):
        storage.get("data/ab/pack")
    assert [name for name, *_ in storage.incomplete_uploads()] == ["data/ab/pack"]
    (write,) = storage.unfinished_writes()  # the same, as the storage interface's debris
    assert write.name == "data/ab/pack" and abs(time.time() - write.started) < 600
    assert storage.unfinished_writes("snapshots/") == []
    assert storage.abort_incomplete_uploads(older_than=3600) == 0  # may still be running
    assert storage.abort_incomplete_uploads(older_than=0) == 1
    assert storage.incomplete_uploads() == []


def test_s3_prefixes_are_isolated(s3_server: Any) -> None:
    from tests.integration.fixtures_s3 import new_prefix

    base = new_prefix("iso")
    one, other = s3_server.storage(base), s3_server.storage(base + "2")
    try:
        one.put("config", b"1")
        other.put("config", b"2")
        assert names(one) == {"config"} and names(other) == {"config"}
        assert one.get("config") == b"1"
        one.client.head_object(Bucket=one.bucket, Key=f"{base}/config")
        assert one.url == f"s3://{one.bucket}/{base}"
    finally:
        for storage in (one, other):
            for name in names(storage):
                storage.delete(name)
            storage.close()


def test_s3_open_storage_and_credentials_file(
    s3_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbfleet.config import RepositoryConfig
    from dbfleet.storage.s3 import S3Storage
    from tests.integration.fixtures_s3 import ACCESS_KEY_ENV, SECRET_KEY_ENV, new_prefix

    prefix = new_prefix("creds")
    url = s3_server.url(prefix)
    opened = open_storage(url, RepositoryConfig(url=url, s3=s3_server.options()))
    by_env = opened.inner if isinstance(opened, RetryingStorage) else opened
    assert isinstance(by_env, S3Storage)
    by_env.put("config", b"via environment")

    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing1\n\n"
        f"[dbfleet]\naws_access_key_id = {os.environ[ACCESS_KEY_ENV]}\n"
        f"aws_secret_access_key = {os.environ[SECRET_KEY_ENV]}\n"
    )
    options = s3_server.options(
        access_key_env="DBFLEET_UNSET_KEY",
        secret_key_env="DBFLEET_UNSET_SECRET",
        credentials_file=credentials,
        profile="dbfleet",
    )
    monkeypatch.delenv("DBFLEET_UNSET_KEY", raising=False)
    monkeypatch.delenv("DBFLEET_UNSET_SECRET", raising=False)
    by_file = S3Storage.from_url(url, options)
    try:
        assert by_file.get("config") == b"via environment"
    finally:
        by_file.delete("config")
        by_file.close()
        by_env.close()


def test_s3_refused_credentials_are_permanent_and_not_echoed(
    s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbfleet.storage.s3 import S3Storage
    from tests.integration.fixtures_s3 import ACCESS_KEY_ENV

    monkeypatch.setenv("DBFLEET_BAD_SECRET", "wrong-secret-value-1234")
    options = s3_server.options(secret_key_env="DBFLEET_BAD_SECRET")
    storage = S3Storage.from_url(s3_server.url("tests/refused"), options)
    flaky = FlakyStorage(storage)
    retrying = RetryingStorage(flaky, sleep=lambda _delay: None)
    try:
        for attempt in (
            lambda: retrying.put("x", b"1"),
            lambda: retrying.get("x"),
            lambda: list(retrying.list()),
        ):
            with pytest.raises(PermanentStorageError) as caught:
                attempt()
            message = str(caught.value)
            assert "refused" in message and "DBFLEET_TEST_S3_ACCESS_KEY" in message
            assert "wrong-secret-value-1234" not in message
            assert os.environ[ACCESS_KEY_ENV] not in message.replace(ACCESS_KEY_ENV, "")
            assert "\n" not in message
        assert retrying.retries == 0
    finally:
        storage.close()


def test_s3_missing_bucket_and_create_bucket(s3_server: Any) -> None:
    import secrets

    bucket = f"dbfleet-missing-{secrets.token_hex(4)}"
    # the same server, a bucket nobody created
    storage = dataclasses.replace(s3_server, bucket=bucket).storage("repo")
    try:
        assert not storage.bucket_exists()
        with pytest.raises(PermanentStorageError, match="does not exist") as caught:
            storage.put("config", b"x")
        assert "repo init" in str(caught.value)
        with pytest.raises(PermanentStorageError, match="does not exist"):
            list(storage.list())
        assert storage.create_bucket() is True
        assert storage.create_bucket() is False
        assert storage.bucket_exists()
        storage.put("config", b"x")
        assert names(storage) == {"config"}
        storage.delete("config")
    finally:
        if storage.bucket_exists():
            storage.client.delete_bucket(Bucket=bucket)
        storage.close()


def test_s3_missing_credentials_say_where_dbfleet_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbfleet.config import S3Options
    from dbfleet.storage.s3 import S3Storage

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "nothing-here"))
    with pytest.raises(UsageError) as caught:
        S3Storage.from_url("s3://bucket/repo", S3Options(endpoint="http://127.0.0.1:1"))
    message = str(caught.value)
    assert "no S3 credentials" in message
    assert "AWS_ACCESS_KEY_ID" in message and "AWS_SECRET_ACCESS_KEY" in message
    assert str(tmp_path / "nothing-here") in message and "[default]" in message

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "only-the-key")
    with pytest.raises(UsageError, match="AWS_SECRET_ACCESS_KEY is not set"):
        S3Storage.from_url("s3://bucket/repo", S3Options())

    (tmp_path / "creds").write_text("[other]\naws_access_key_id = a\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    with pytest.raises(UsageError, match=r"has no profile \[ci\]"):
        S3Storage.from_url(
            "s3://bucket/repo", S3Options(credentials_file=tmp_path / "creds", profile="ci")
        )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("s3:///repo", "has no bucket"),
        ("s3://key:secret@bucket/repo", "must not contain credentials"),
        ("s3://bucket/repo?region=x", "query"),
    ],
)
def test_s3_bad_urls(url: str, problem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dbfleet.storage.s3 import S3Storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    with pytest.raises(UsageError, match=problem) as caught:
        S3Storage.from_url(url)
    assert "secret" not in str(caught.value).replace("must not contain credentials", "")
