"""Repository locks: shared and exclusive, stale detection and removal."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from repokit import RepoKit

from dbfleet.errors import EXIT_INTEGRITY, LockedError
from dbfleet.repo.check import check_repository
from dbfleet.repo.lock import STALE_AFTER, list_locks, remove_stale_locks, repository_lock
from dbfleet.storage import MemoryStorage, Storage


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant_lock(
    storage: Storage,
    name: str,
    *,
    exclusive: bool,
    hostname: str | None = None,
    pid: int = 1,
    refreshed: float | None = None,
) -> None:
    doc = {
        "hostname": hostname or socket.gethostname(),
        "pid": pid,
        "exclusive": exclusive,
        "operation": "planted",
        "refreshed": time.time() if refreshed is None else refreshed,
    }
    storage.put(f"locks/{name}", json.dumps(doc).encode())


def test_lock_is_visible_while_held_and_removed_after() -> None:
    storage = MemoryStorage("locks-visible")
    with repository_lock(storage, exclusive=False, operation="backup x"):
        (lock,) = list_locks(storage)
        assert not lock.exclusive and lock.operation == "backup x"
        assert not lock.is_stale()
    assert list_locks(storage) == []


def test_shared_locks_coexist() -> None:
    storage = MemoryStorage("locks-shared")
    with (
        repository_lock(storage, exclusive=False, operation="backup a"),
        repository_lock(storage, exclusive=False, operation="backup b"),
    ):
        assert len(list_locks(storage)) == 2
    assert list_locks(storage) == []


def test_exclusive_conflicts_with_live_shared_lock() -> None:
    storage = MemoryStorage("locks-excl")
    with repository_lock(storage, exclusive=False, operation="backup a"):
        with (
            pytest.raises(LockedError) as info,
            repository_lock(storage, exclusive=True, operation="prune"),
        ):
            pytest.fail("exclusive lock granted while a shared lock is live")
        assert info.value.exit_code == EXIT_INTEGRITY
        assert "shared lock" in str(info.value) and "backup a" in str(info.value)
        # the refused attempt left nothing behind
        assert len(list_locks(storage)) == 1


def test_shared_conflicts_with_live_exclusive_lock() -> None:
    storage = MemoryStorage("locks-excl2")
    with repository_lock(storage, exclusive=True, operation="prune"):
        with pytest.raises(LockedError), repository_lock(storage, exclusive=False, operation="b"):
            pass
        with pytest.raises(LockedError), repository_lock(storage, exclusive=True, operation="c"):
            pass
    with repository_lock(storage, exclusive=True, operation="after"):
        pass


def test_live_lock_of_another_host_blocks() -> None:
    storage = MemoryStorage("locks-remote")
    _plant_lock(storage, "remote", exclusive=True, hostname="other-host.invalid", pid=1)
    with (
        pytest.raises(LockedError, match="other-host.invalid"),
        repository_lock(storage, exclusive=False, operation="backup"),
    ):
        pass
    assert remove_stale_locks(storage) == []


def test_stale_locks_are_ignored_and_removed(kit: RepoKit) -> None:
    repo = kit.init()
    storage = repo.storage
    old = time.time() - STALE_AFTER - 60
    _plant_lock(storage, "old", exclusive=True, hostname="other-host.invalid", refreshed=old)
    _plant_lock(storage, "dead", exclusive=True, pid=_dead_pid())
    storage.put("locks/garbage", b"{half a lock")
    _plant_lock(storage, "live", exclusive=False, hostname="other-host.invalid")

    with repository_lock(storage, exclusive=False, operation="backup"):
        pass  # stale exclusive locks do not block
    with (  # the live shared one does
        pytest.raises(LockedError),
        repository_lock(storage, exclusive=True, operation="prune"),
    ):
        pass

    report = check_repository(repo)
    assert report.ok
    assert sum("stale" in w for w in report.warnings) == 2

    removed = remove_stale_locks(storage)
    assert sorted(lock.name for lock in removed) == ["locks/dead", "locks/old"]
    assert sorted(o.name for o in storage.list("locks/")) == ["locks/garbage", "locks/live"]
    assert [lock.name for lock in list_locks(storage)] == ["locks/live"]
