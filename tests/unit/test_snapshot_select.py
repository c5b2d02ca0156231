"""Snapshot selectors: ``db:latest``, ``db``, id prefixes, and clear errors."""

from __future__ import annotations

import time

import pytest
from repokit import RepoKit

from dbfleet.errors import EXIT_USAGE, SnapshotNotFoundError
from dbfleet.repo import Repository, Snapshot


@pytest.fixture
def repo(kit: RepoKit) -> Repository:
    repo = kit.init()
    for database, payload in [("app", b"one"), ("notes", b"two"), ("app", b"three")]:
        kit.backup(repo, payload, database=database)
        time.sleep(0.002)  # distinct finish times
    return repo


def _ids(repo: Repository, database: str) -> list[str]:
    return [s.id for s in repo.list_snapshots(database)]


def test_list_snapshots_oldest_first(repo: Repository) -> None:
    snapshots = repo.list_snapshots()
    assert [s.database for s in snapshots] == ["app", "notes", "app"]
    assert [s.finished for s in snapshots] == sorted(s.finished for s in snapshots)
    assert len(_ids(repo, "app")) == 2


def test_latest(kit: RepoKit, repo: Repository) -> None:
    latest = repo.find_snapshot("app:latest")
    assert latest.id == _ids(repo, "app")[-1]
    assert kit.restore(repo, latest) == b"three"
    assert repo.find_snapshot("app").id == latest.id
    assert repo.find_snapshot("notes:latest").database == "notes"


@pytest.mark.parametrize("length", [4, 8, 64])
def test_id_prefix(repo: Repository, length: int) -> None:
    target = _ids(repo, "app")[0]
    assert repo.find_snapshot(target[:length]).id == target
    assert repo.find_snapshot(target[:length].upper()).id == target
    assert repo.find_snapshot(f"app:{target[:length]}").id == target


def test_database_and_id_must_agree(repo: Repository) -> None:
    target = _ids(repo, "app")[0]
    with pytest.raises(SnapshotNotFoundError, match="belongs to 'app'"):
        repo.find_snapshot(f"notes:{target[:8]}")


def _ambiguous(kit: RepoKit) -> Repository:
    # two names sharing the prefix "abcd" (content is never read for the error)
    repo = kit.init()
    repo.storage.put("snapshots/abcd" + "0" * 60, b"x")
    repo.storage.put("snapshots/abcd" + "1" * 60, b"y")
    return repo


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("app:abc", "at least 4"),  # too short
        ("app:xyz123", "not a snapshot id"),  # not hex
        ("app:", "not a snapshot id"),
        ("app:0000000000", "no snapshot with id"),
        ("ghost:latest", "no snapshot of 'ghost'"),
        ("ghost", "no snapshot of 'ghost'"),
        ("abc", "no snapshot of 'abc'"),
        ("deadbeef", "no snapshot"),
        ("../../etc", "no snapshot"),
    ],
)
def test_bad_selectors(repo: Repository, selector: str, message: str) -> None:
    with pytest.raises(SnapshotNotFoundError, match=message) as info:
        repo.find_snapshot(selector)
    assert info.value.exit_code == EXIT_USAGE == 2


def test_ambiguous_prefix(kit: RepoKit) -> None:
    repo = _ambiguous(kit)
    for selector in ("abcd", "db:abcd", "ABCD"):
        with pytest.raises(SnapshotNotFoundError, match="ambiguous") as info:
            repo.find_snapshot(selector)
        assert info.value.exit_code == EXIT_USAGE


def test_summary_is_json_ready(repo: Repository) -> None:
    snapshot = repo.find_snapshot("app:latest")
    summary = snapshot.summary()
    assert summary["id"] == snapshot.id and summary["short_id"] == snapshot.id[:8]
    assert summary["database"] == "app" and summary["size"] == len(b"three")
    assert summary["streams"] == ["data"]
    assert Snapshot.model_validate_json(snapshot.model_dump_json()).database == "app"
