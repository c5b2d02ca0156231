"""``repo check``, ``prune`` and backups next to each other, on a local and an
S3 (MinIO) repository, the way a scheduler runs them.

Adversarial: the check (or prune, or backup) runs in a thread over a storage
wrapper that stops it at one chosen call (a phase: the snapshot listing, an
index read, the middle of the pack listing, a pack header read, a tree blob
read, ...) while a real backup of a real SQLite database commits through the
operations layer; then it goes on. A check must judge a consistent view and
pass, saying which snapshots it left out. Prune holds an exclusive lock, so
next to a backup or a check either it or the other is refused, with exit 1
(try again), and the repository stays whole.
"""

from __future__ import annotations

import functools
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbfleet.config import Inventory, parse_inventory
from dbfleet.errors import EXIT_FAILED, LockedError
from dbfleet.operations import repository as repo_ops
from dbfleet.operations.backup import backup_database, backup_many
from dbfleet.operations.common import Repositories
from dbfleet.operations.demo import create_sample_database
from dbfleet.operations.retention import prune_repository
from dbfleet.repo import Repository, iter_stream
from dbfleet.repo.check import CheckReport, check_repository
from dbfleet.storage import open_storage
from dbfleet.storage.base import Storage
from dbfleet.storage.retry import RetryingStorage
from tests.integration.fixtures_s3 import ACCESS_KEY_ENV, SECRET_KEY_ENV, S3Server, new_prefix
from tests.integration.pausing import (
    WAIT,
    Pause,
    PausingStorage,
    finish,
    in_thread,
    release_all,
    start_paused,
)

FAST_KDF = {"n": 2**10, "r": 8, "p": 1}
PASSPHRASE = "concurrency-Passphrase-51c0"
PASSPHRASE_ENV = "DBFLEET_TEST_CONCURRENCY_PW"


@dataclass
class Estate:
    """A SQLite database, an inventory with one repository, and helpers to
    change the database, back it up, check and prune."""

    document: dict[str, Any]
    database: Path
    make_storage: Callable[[], Storage]
    """Storage for the paused side and concurrent writers: a new object (local),
    one client listing two objects per page (S3)."""
    storage: Storage
    """The one that unpaused operations share (each opens its own Repository
    over it: an S3 client costs most of a second to make)."""

    @property
    def inventory(self) -> Inventory:
        return parse_inventory(self.document)

    def add_database(self, name: str, path: Path) -> None:
        self.document["databases"][name] = {"engine": "sqlite", "path": str(path)}

    def repos(self, storage: Storage | None = None) -> Repositories:
        repo = Repository.open(storage or self.storage, PASSPHRASE)
        return Repositories(self.inventory, {"repo": repo})

    def change(self, rows: int = 300) -> None:
        """New rows of random bytes: the next backup stores a new pack."""
        rng = random.Random()
        with closing(sqlite3.connect(self.database)) as conn, conn:
            conn.executemany(
                "INSERT INTO notes (title, attachment) VALUES (?, ?)",
                [("concurrent", rng.randbytes(1024)) for _ in range(rows)],
            )

    def backup(self, storage: Storage | None = None) -> str:
        self.change()
        result = backup_database(self.repos(storage), "notes")
        assert result.ok and result.snapshot, result.error
        return result.snapshot

    def check(self) -> CheckReport:
        return repo_ops.check(self.repos(), "repo")

    def assert_whole(self) -> CheckReport:
        """A fresh check passes, and the latest snapshot restores the database
        as it was backed up."""
        repo = self.repos().get("repo")
        report = check_repository(repo)
        assert report.ok, report.errors
        assert not [w for w in report.warnings if "not in any index" not in w], report.warnings
        latest = repo.find_snapshot("notes:latest")
        restored = self.database.with_name("restored.db")
        restored.write_bytes(b"".join(iter_stream(repo, latest, latest.streams[0].name)))
        assert _content(restored) == _content(self.database)  # backed up after the last change
        return report


def _content(path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT count(*), sum(length(attachment)), max(id) FROM notes"
        ).fetchall()


def _document(url: str, database: Path, s3: dict[str, Any] | None) -> dict[str, Any]:
    repository: dict[str, Any] = {"url": url, "passphrase_env": PASSPHRASE_ENV}
    if s3:
        repository["s3"] = s3
    return {
        "repositories": {"repo": repository},
        "databases": {"notes": {"engine": "sqlite", "path": str(database)}},
    }


@pytest.fixture(scope="module")
def _passphrase() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PASSPHRASE_ENV, PASSPHRASE)
        yield


@pytest.fixture(scope="module", params=["local", "s3"])
def estate(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, _passphrase: None
) -> Iterator[Estate]:
    """One repository per backend for the whole module: every test leaves it
    whole (that is what each one asserts), and the next builds on it."""
    tmp_path = tmp_path_factory.mktemp(f"concurrency-{request.param}")
    database = tmp_path / "notes.db"
    create_sample_database(database, notes=2000)
    prefix = ""
    if request.param == "local":
        document = _document(f"file://{tmp_path / 'repo'}", database, None)
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        prefix = new_prefix("concurrency")
        s3 = {
            "endpoint": server.endpoint,
            "region": "us-east-1",
            "access_key_env": ACCESS_KEY_ENV,
            "secret_key_env": SECRET_KEY_ENV,
        }
        document = _document(server.url(prefix), database, s3)
    inventory = parse_inventory(document)
    config = inventory.repository("repo")

    paging: list[Storage] = []

    def make_storage() -> Storage:
        if request.param == "local":
            return open_storage(config.url, config)
        if not paging:  # one client (each costs about a second to make), thread-safe
            # two objects per page: listings run over several requests, so a
            # pause mid-listing lets the next page see what was written meanwhile
            paging.append(RetryingStorage(server.storage(prefix, list_page_size=2)))
        return paging[0]

    repo_ops.init_repository(inventory, "repo", kdf=FAST_KDF)
    estate = Estate(document, database, make_storage, open_storage(config.url, config))
    for _ in range(2):  # several packs, index files and snapshots to pause among
        estate.backup()
    yield estate
    for storage in [estate.storage, *paging]:
        storage.close()
    if request.param == "s3":
        server.purge(prefix)


@pytest.fixture(autouse=True)
def _release_pauses() -> Iterator[None]:
    yield
    release_all()


# Every storage call a check makes, in order, and what the check must say of
# the backup committed while it stood there: "judged" (it listed the snapshots
# after the commit), "noted" (not judged, and named in a note), "either" (in
# the middle of the snapshot listing) or "unseen" (the commit came after the
# check was done with snapshots: the WAL archive).
CHECK_PHASES: list[tuple[Pause, str]] = [
    (Pause("get", "data/", read_data=True), "noted"),  # --read-data: a whole pack
    (Pause("list", "snapshots/"), "judged"),
    (Pause("list", "snapshots/", mid_list=True), "either"),  # a later page may list it
    (Pause("list", "index/"), "noted"),
    (Pause("get", "index/"), "noted"),
    (Pause("list", "data/", mid_list=True), "noted"),
    (Pause("get", "data/"), "noted"),  # the first pack header
    (Pause("get", "snapshots/"), "noted"),
    (Pause("get", "data/", after=("get", "snapshots/")), "noted"),  # a tree blob
    (Pause("list", "index/", nth=2), "noted"),  # the closing look for late index files
    (Pause("list", "locks/", nth=2), "noted"),  # after the check's own lock: stale locks
    (Pause("unfinished", ""), "noted"),
    (Pause("list", "snapshots/", nth=2), "noted"),  # the look for late snapshots
    (Pause("list", "wal/"), "unseen"),
]


@pytest.mark.parametrize(("pause", "outcome"), CHECK_PHASES, ids=[str(p) for p, _ in CHECK_PHASES])
def test_check_passes_while_a_backup_commits(estate: Estate, pause: Pause, outcome: str) -> None:
    pause = pause.fresh()
    before = len(estate.repos().get("repo").list_snapshots())
    paused = PausingStorage(estate.make_storage(), pause)
    thread, reports, errors = start_paused(
        pause, lambda: repo_ops.check(estate.repos(paused), "repo", read_data=pause.read_data)
    )
    snapshot = estate.backup()
    finish(pause, thread, errors)

    (report,) = reports
    assert report.ok, f"paused at {pause}: {report.errors}"
    assert report.warnings == [], report.warnings
    skipped = [n for n in report.notes if "were not checked" in n]
    if outcome == "either":
        outcome = "judged" if report.snapshots == before + 1 else "noted"
    assert report.snapshots == before + (outcome == "judged")
    if outcome == "noted":
        assert len(skipped) == 1 and snapshot[:8] in skipped[0], report.notes
    else:
        assert skipped == [], report.notes
    assert estate.assert_whole().snapshots == before + 1


BACKUP_PHASES = [
    Pause("put", "data/"),  # a pack upload
    Pause("put", "index/"),
    Pause("put", "snapshots/"),
]


@pytest.mark.parametrize("pause", BACKUP_PHASES, ids=[str(p) for p in BACKUP_PHASES])
def test_prune_is_refused_next_to_a_running_backup(estate: Estate, pause: Pause) -> None:
    pause = pause.fresh()
    snapshots = len(estate.repos().get("repo").list_snapshots())
    before = {o.name for o in estate.storage.list("")}
    paused = PausingStorage(estate.make_storage(), pause)
    thread, results, errors = start_paused(pause, lambda: estate.backup(paused))
    with pytest.raises(LockedError, match=r"shared lock .*\(backup notes") as refused:
        prune_repository(estate.repos(), "repo")
    assert refused.value.exit_code == EXIT_FAILED
    assert before <= {o.name for o in estate.storage.list("")}, "prune deleted something"
    finish(pause, thread, errors)
    (snapshot,) = results
    stats = prune_repository(estate.repos(), "repo")  # now it may
    assert stats.snapshots == snapshots + 1
    estate.assert_whole()
    assert estate.repos().get("repo").find_snapshot("notes:latest").id == snapshot


PRUNE_PHASES = [
    Pause("list", "snapshots/"),  # marking the used blobs
    Pause("put", "index/"),  # the new index
    Pause("delete", "index/"),  # the old index goes
]


@pytest.mark.parametrize("pause", PRUNE_PHASES, ids=[str(p) for p in PRUNE_PHASES])
def test_backup_and_check_are_refused_while_prune_runs(estate: Estate, pause: Pause) -> None:
    pause = pause.fresh()
    repo = estate.repos().get("repo")
    repo.delete_snapshot(repo.list_snapshots()[0].id)  # something to prune
    paused = PausingStorage(estate.make_storage(), pause)
    thread, _stats, errors = start_paused(
        pause, lambda: prune_repository(estate.repos(paused), "repo")
    )
    estate.change()
    (refused,) = backup_many(estate.repos(), ["notes"])
    assert not refused.ok and refused.error_type == "LockedError", refused
    assert "exclusive lock" in str(refused.error) and "prune" in str(refused.error)
    with pytest.raises(LockedError) as check_refused:
        estate.check()
    assert check_refused.value.exit_code == EXIT_FAILED  # not "damaged" (3)
    finish(pause, thread, errors)
    estate.backup()
    estate.assert_whole()


def test_prune_is_refused_while_a_check_runs(estate: Estate) -> None:
    pause = Pause("get", "snapshots/")
    paused = PausingStorage(estate.make_storage(), pause)
    thread, reports, errors = start_paused(
        pause, lambda: repo_ops.check(estate.repos(paused), "repo")
    )
    with pytest.raises(LockedError, match=r"shared lock .*\(check"):
        prune_repository(estate.repos(), "repo")
    finish(pause, thread, errors)
    assert reports[0].ok and reports[0].warnings == []
    prune_repository(estate.repos(), "repo")
    estate.assert_whole()


def test_many_writers_and_a_check(estate: Estate) -> None:
    """Three backups at once (each of its own database) and a check paused
    while they commit: everything checks, nothing is lost."""
    databases = ("alpha", "beta", "gamma")
    for seed, name in enumerate(databases):
        path = estate.database.with_name(f"{name}.db")
        create_sample_database(path, notes=1500, seed=seed)
        estate.add_database(name, path)

    pause = Pause("get", "index/")
    paused = PausingStorage(estate.make_storage(), pause)
    thread, reports, errors = start_paused(
        pause, lambda: repo_ops.check(estate.repos(paused), "repo")
    )
    barrier = threading.Barrier(len(databases))

    def back_up(name: str) -> str:
        repos = estate.repos(estate.make_storage())
        barrier.wait()
        result = backup_database(repos, name)
        assert result.ok and result.snapshot, result.error
        return result.snapshot

    writers = [in_thread(functools.partial(back_up, name)) for name in databases]
    for writer, _results, writer_errors in writers:
        writer.join(WAIT)
        assert not writer_errors, writer_errors
    finish(pause, thread, errors)
    (report,) = reports
    assert report.ok and report.warnings == [], (report.errors, report.warnings)
    assert any("3 snapshots committed while the check ran" in n for n in report.notes)
    assert {s.database for s in estate.repos().get("repo").list_snapshots()} >= set(databases)
    estate.assert_whole()
