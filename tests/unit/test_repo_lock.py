"""Repository locks: shared and exclusive, stale detection and removal."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from repokit import RepoKit

from dbfleet.errors import EXIT_FAILED, LockedError, StorageError
from dbfleet.repo import Repository
from dbfleet.repo import lock as lock_module
from dbfleet.repo.check import check_repository
from dbfleet.repo.lock import STALE_AFTER, list_locks, remove_stale_locks, repository_lock
from dbfleet.storage import LocalStorage, MemoryStorage, Storage


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
        assert info.value.exit_code == EXIT_FAILED  # try again later; nothing is damaged
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


# -- holders that are gone, though their pid still "exists" -------------------

LOCK_AND_DIE = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from dbfleet.repo.lock import repository_lock
    from dbfleet.storage import LocalStorage

    with repository_lock(LocalStorage(Path(sys.argv[1])), exclusive=True, operation="doomed"):
        print("locked", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _proc_stat(pid: int) -> list[str]:
    """The fields after ``(comm)``: state first, start time at index 19."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def test_lock_of_a_zombie_process_is_stale(tmp_path: Path) -> None:
    """A holder killed but not yet reaped by its parent is <defunct>: kill(pid, 0)
    still succeeds, yet it will never release or refresh its lock."""
    storage = LocalStorage(tmp_path / "repo")
    child = subprocess.Popen(
        [sys.executable, "-c", LOCK_AND_DIE, str(tmp_path / "repo")], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"locked\n"
        deadline = time.monotonic() + 30
        while _proc_stat(child.pid)[0] != "Z":  # not waited for: a zombie
            assert time.monotonic() < deadline, "the child did not die"
            time.sleep(0.01)
        (lock,) = list_locks(storage)
        assert lock.pid == child.pid and lock.operation == "doomed"
        assert lock.is_stale()
        with repository_lock(storage, exclusive=True, operation="prune"):
            pass
        assert [r.name for r in remove_stale_locks(storage)] == [lock.name]
    finally:
        child.kill()
        child.wait()
        if child.stdout:
            child.stdout.close()


def test_lock_of_a_reused_pid_is_stale() -> None:
    """The lock records its holder's start time: a live process that merely
    got the same pid later does not keep the lock alive."""
    storage = MemoryStorage("locks-pid-reuse")
    other = subprocess.Popen(["sleep", "60"])  # alive, and never took a lock
    try:
        started = int(_proc_stat(other.pid)[19])
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        for name, start in (("reused", started - 1), ("holder", started)):
            doc = {"hostname": socket.gethostname(), "pid": other.pid, "exclusive": True}
            doc |= {"refreshed": time.time(), "boot_id": boot_id, "process_start": start}
            storage.put(f"locks/{name}", json.dumps(doc).encode())
        stale = {lock.name: lock.is_stale() for lock in list_locks(storage)}
        assert stale == {"locks/reused": True, "locks/holder": False}
    finally:
        other.kill()
        other.wait()


def test_lock_from_before_a_reboot_waits_for_its_refresh_time() -> None:
    """Another boot id: this host rebooted, or another machine has our name;
    its pids say nothing here, so only the refresh time can make it stale."""
    storage = MemoryStorage("locks-boot")
    doc = {"hostname": socket.gethostname(), "pid": _dead_pid(), "exclusive": True}
    doc |= {"refreshed": time.time(), "boot_id": "another-boot", "process_start": 1}
    storage.put("locks/old-boot", json.dumps(doc).encode())
    (lock,) = list_locks(storage)
    assert not lock.is_stale()
    assert lock.is_stale(now=time.time() + STALE_AFTER + 1)


# -- a lock that cannot be removed never hides the operation's own outcome -----


class DeletesFail(MemoryStorage):
    """Storage that went away for deletes (MinIO killed mid-backup, say)."""

    def delete(self, name: str) -> None:
        raise StorageError(f"S3 delete {name!r} failed: Could not connect")


class DumpFailed(Exception):
    pass


def test_failure_to_remove_the_lock_does_not_replace_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = DeletesFail("locks-masking")
    with pytest.raises(DumpFailed), repository_lock(storage, exclusive=False, operation="b"):
        raise DumpFailed("the real cause")
    assert "could not remove the lock locks/" in caplog.text and "of b" in caplog.text

    # a refused lock stays refused (not a StorageError about our own lock)
    _plant_lock(storage, "holder", exclusive=True, hostname="other-host.invalid")
    with pytest.raises(LockedError), repository_lock(storage, exclusive=False, operation="c"):
        pass

    # and a finished operation is not failed afterwards: a warning says it
    caplog.clear()
    storage.objects.pop("locks/holder")
    with repository_lock(storage, exclusive=False, operation="done"):
        pass
    assert "could not remove the lock" in caplog.text and "repo unlock" in caplog.text


class LockPutsFail(MemoryStorage):
    def __init__(self, name: str, failures: int) -> None:
        super().__init__(name)
        self.failures = failures
        self.lock_puts = 0

    def put(self, name: str, data: bytes) -> None:
        if name.startswith("locks/"):
            self.lock_puts += 1
            if 1 < self.lock_puts <= 1 + self.failures:
                raise StorageError("S3 put failed: Read timeout")
        super().put(name, data)


def test_lock_refresh_survives_failures(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed refresh (a network blip) must not end the refreshing: the lock
    would go stale under a running backup and let a prune delete its data."""
    monkeypatch.setattr(lock_module, "REFRESH_EVERY", 0.02)
    monkeypatch.setattr(lock_module, "RETRY_REFRESH_EVERY", 0.02, raising=False)
    storage = LockPutsFail("locks-refresh", failures=2)
    with repository_lock(storage, exclusive=False, operation="long backup"):
        deadline = time.monotonic() + 10
        while storage.lock_puts < 6:
            assert time.monotonic() < deadline, f"refreshing stopped after {storage.lock_puts}"
            time.sleep(0.01)
        (lock,) = list_locks(storage)
        assert time.time() - lock.refreshed < 5
    assert "could not refresh the lock" in caplog.text
    assert list_locks(storage) == []


# -- the command line: a lock conflict is "try again" (1), not "damaged" (3) ---


def test_commands_refused_by_a_lock_exit_1(tmp_path: Path) -> None:
    from dbfleet.operations.demo import create_sample_database

    create_sample_database(tmp_path / "notes.db", notes=200)
    config = tmp_path / "dbfleet.yaml"
    repository = {"url": f"file://{tmp_path / 'repo'}", "passphrase_env": "DBFLEET_PASSPHRASE"}
    databases = {"notes": {"engine": "sqlite", "path": str(tmp_path / "notes.db")}}
    config.write_text(json.dumps({"repositories": {"local": repository}, "databases": databases}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBFLEET_")}
    env |= {"DBFLEET_PASSPHRASE": "cli-lock-Passphrase-3b", "COLUMNS": "200"}

    def dbfleet(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "dbfleet", "--config", str(config), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    storage = LocalStorage(tmp_path / "repo")
    Repository.init(storage, env["DBFLEET_PASSPHRASE"], RepoKit.kdf)
    with repository_lock(storage, exclusive=True, operation="prune elsewhere"):
        backup = dbfleet("backup", "notes")
        check = dbfleet("repo", "check")
    with repository_lock(storage, exclusive=False, operation="backup elsewhere"):
        prune = dbfleet("prune")
    for proc, holder in (
        (backup, "prune elsewhere"),
        (check, "prune elsewhere"),
        (prune, "backup"),
    ):
        assert proc.returncode == EXIT_FAILED, (proc.args, proc.returncode, proc.stderr)
        assert "repository is locked" in proc.stderr and holder in proc.stderr
    assert check.stderr.startswith("dbfleet: error: repository is locked")
