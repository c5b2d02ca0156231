"""Failures in the middle of a backup: a killed backup process, a failing or
killed dump tool, concurrent writers. Nothing half-done may become visible."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from repokit import PASSPHRASE, RepoKit

from dbfleet.engines._shared.process import dump_process
from dbfleet.errors import EngineError
from dbfleet.repo import BackupWriter, Repository, Snapshot
from dbfleet.repo.check import check_repository
from dbfleet.repo.debris import DEBRIS_GRACE, remove_stale_unfinished
from dbfleet.repo.lock import list_locks, remove_stale_locks, repository_lock
from dbfleet.repo.prune import prune
from dbfleet.storage import LocalStorage

MiB = 1024 * 1024

CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from dbfleet.repo import BackupWriter, Repository
    from dbfleet.repo.lock import repository_lock
    from dbfleet.storage import LocalStorage

    class Endless:
        def readinto(self, buf):
            n = len(buf)
            buf[:n] = os.urandom(n)
            return n

    repo = Repository.open(LocalStorage(Path(sys.argv[1])), os.environ["TEST_REPO_PASSPHRASE"])
    with repository_lock(repo.storage, exclusive=False, operation="backup crash-test"):
        with BackupWriter(repo, workers=2) as writer:
            writer.write_stream("data", Endless())
    """
)


def _snapshot(database: str = "db") -> Snapshot:
    now = datetime.now(UTC)
    return Snapshot(database=database, engine="raw", hostname="h", started=now, finished=now)


def _pack_count(root: Path) -> int:
    data = root / "data"
    if not data.is_dir():
        return 0
    return sum(1 for p in data.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_backup_process_killed_midway(kit: RepoKit) -> None:
    root = kit.tmp_path / "repo"
    repo = kit.init(LocalStorage(root))
    earlier_data = kit.mixed(2 * MiB, seed=21)
    earlier = kit.backup(repo, earlier_data)
    baseline = _pack_count(root)

    env = {**os.environ, "TEST_REPO_PASSPHRASE": PASSPHRASE}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)], env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while _pack_count(root) < baseline + 2:
            assert child.poll() is None, child.stderr.read() if child.stderr else b""
            assert time.monotonic() < deadline, "the child wrote no packs"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    fresh = Repository.open(LocalStorage(root), PASSPHRASE)
    assert [s.id for s in fresh.list_snapshots()] == [earlier.id]
    report = check_repository(fresh)
    assert report.ok, report.errors
    assert any("not in any index" in w for w in report.warnings)
    assert any("stale" in w and "crash-test" in w for w in report.warnings)
    assert kit.restore(fresh, fresh.find_snapshot("db:latest")) == earlier_data
    assert check_repository(fresh, read_data=True).ok

    # the dead child's lock does not block anyone, and unlock removes it
    (lock,) = list_locks(fresh.storage)
    assert lock.pid == child.pid and lock.is_stale()
    with repository_lock(fresh.storage, exclusive=True, operation="prune"):
        pass
    assert [r.name for r in remove_stale_locks(fresh.storage)] == [lock.name]
    assert list_locks(fresh.storage) == []

    # and the next backup works and dedups against committed data only
    later = kit.backup(fresh, earlier_data + b"more")
    again = Repository.open(LocalStorage(root), PASSPHRASE)
    assert kit.restore(again, again.load_snapshot(later.id)) == earlier_data + b"more"


def _backup_from_tool(repo: Repository, argv: list[str]) -> Snapshot:
    with BackupWriter(repo, workers=2) as writer:
        with dump_process(argv) as out:
            writer.write_stream("dump", out)
        return writer.commit(_snapshot())


def test_dump_tool_failure_records_nothing(kit: RepoKit) -> None:
    repo = kit.init(kit.local())
    kit.backup(repo, b"an earlier snapshot")
    script = "head -c 3000000 /dev/urandom; echo boom >&2; exit 3"
    with pytest.raises(EngineError) as info:
        _backup_from_tool(repo, ["sh", "-c", script])
    message = str(info.value)
    assert "boom" in message and "status 3" in message
    fresh = kit.reopen(repo)
    assert len(fresh.list_snapshots()) == 1
    assert len(list(fresh.storage.list("index/"))) == 1
    assert check_repository(fresh).ok


def test_killed_dump_tool_records_nothing(kit: RepoKit) -> None:
    repo = kit.init()
    script = "head -c 1000000 /dev/urandom; echo dying >&2; kill -9 $$"
    with pytest.raises(EngineError) as info:
        _backup_from_tool(repo, ["sh", "-c", script])
    assert "SIGKILL" in str(info.value)
    assert "dying" in str(info.value)
    assert kit.reopen(repo).list_snapshots() == []


def test_successful_dump_tool(kit: RepoKit) -> None:
    repo = kit.init()
    snapshot = _backup_from_tool(repo, ["sh", "-c", "printf 'hello from the tool'"])
    assert kit.restore(kit.reopen(repo), snapshot, "dump") == b"hello from the tool"


def test_dump_tool_does_not_see_the_passphrase(
    kit: RepoKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBFLEET_PASSPHRASE", "super-secret-value")
    repo = kit.init()
    snapshot = _backup_from_tool(repo, ["sh", "-c", 'printf "[$DBFLEET_PASSPHRASE]"'])
    assert kit.restore(repo, snapshot, "dump") == b"[]"


def test_failed_backup_does_not_poison_the_next_one(kit: RepoKit) -> None:
    """Two backups through the same Repository object (as `backup a b` does).
    The first uploads several packs and then fails, so its packs are never
    indexed. The second backs up the same data and must store (or index)
    every chunk it references: a fresh open must restore it."""
    repo = kit.init()
    data = kit.random(80 * MiB, seed=22)

    class DumpFailed(Exception):
        pass

    with pytest.raises(DumpFailed), BackupWriter(repo, workers=2) as writer:
        writer.write_stream("data", io.BytesIO(data))
        raise DumpFailed
    assert len(list(repo.storage.list("data/"))) >= 4
    assert list(repo.storage.list("index/")) == []

    snapshot = kit.backup(repo, data)
    fresh = kit.reopen(repo)
    report = check_repository(fresh)
    assert report.ok, report.errors
    assert kit.restore(fresh, fresh.load_snapshot(snapshot.id)) == data


def test_concurrent_writers(kit: RepoKit) -> None:
    root = kit.tmp_path / "repo"
    kit.init(LocalStorage(root))
    shared = kit.random(1 * MiB, seed=30)
    inputs = {
        "alpha": shared + kit.mixed(5 * MiB, seed=31),
        "beta": shared + kit.mixed(5 * MiB, seed=32),
    }
    results: dict[str, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(inputs))

    def run(database: str) -> None:
        try:
            repo = Repository.open(LocalStorage(root), PASSPHRASE)
            start.wait()
            with repository_lock(repo.storage, exclusive=False, operation=f"backup {database}"):
                results[database] = kit.backup(repo, inputs[database], database=database).id
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fresh = Repository.open(LocalStorage(root), PASSPHRASE)
    assert {s.database for s in fresh.list_snapshots()} == set(inputs)
    for database, data in inputs.items():
        assert kit.restore(fresh, fresh.find_snapshot(f"{database}:latest")) == data
        assert fresh.find_snapshot(f"{database}:latest").id == results[database]
    report = check_repository(fresh, read_data=True)
    assert report.ok, report.errors
    assert report.warnings == []
    assert len(list(fresh.storage.list("index/"))) == 2


# -- debris of killed writers: temporary files -------------------------------

STALLED_PUT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from dbfleet.storage import LocalStorage

    real_fsync = os.fsync

    def stalled(fd):  # the data is written; the process stops before the rename
        print("writing", flush=True)
        time.sleep(3600)

    os.fsync = stalled
    LocalStorage(Path(sys.argv[1])).put("data/ab/" + "ab" * 32, os.urandom(3 << 20))
    """
)


def _stalled_writer(root: Path) -> subprocess.Popen[bytes]:
    child = subprocess.Popen([sys.executable, "-c", STALLED_PUT, str(root)], stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"writing\n"
    return child


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_temporary_files_of_killed_writers_are_reported_and_removed(kit: RepoKit) -> None:
    root = kit.tmp_path / "repo"
    repo = kit.init(LocalStorage(root))
    kit.backup(repo, kit.mixed(MiB, seed=40))

    writer = _stalled_writer(root)
    try:
        (tmp,) = (root / "data" / "ab").glob("*.dbfleet-tmp")
        assert [o.name for o in repo.storage.list("data/ab/")] == []  # invisible to list
        _age(tmp, DEBRIS_GRACE + 60)  # old, but its writer lives: never removed
        report = check_repository(repo)
        assert report.ok and any("1 unfinished writes left by" in w for w in report.warnings)
        removal = remove_stale_unfinished(repo.storage)
        assert removal.removed == [] and len(removal.in_use) == 1 and tmp.exists()
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        if writer.stdout:
            writer.stdout.close()

    young = _stalled_writer(root)  # killed a moment ago: within the grace period
    young.send_signal(signal.SIGKILL)
    young.wait()
    if young.stdout:
        young.stdout.close()
    report = check_repository(repo)
    assert report.ok
    assert any(f"data/ab/{'ab' * 32}" in w for w in report.warnings)
    assert any("1 unfinished writes younger than" in n for n in report.notes)

    # `repo unlock` (and prune) remove the stale one, not the young one
    removal = remove_stale_unfinished(repo.storage)
    assert [w.name for w in removal.removed] == [f"data/ab/{'ab' * 32}"] and not tmp.exists()
    assert len(list((root / "data" / "ab").glob("*.dbfleet-tmp"))) == 1
    for leftover in (root / "data" / "ab").glob("*.dbfleet-tmp"):
        _age(leftover, DEBRIS_GRACE + 60)
    stats = prune(Repository.open(LocalStorage(root), PASSPHRASE))
    assert stats.unfinished_writes_removed == 1
    assert list(root.rglob("*.dbfleet-tmp")) == []
    assert check_repository(repo).warnings == []


def test_interrupted_local_put_leaves_no_temporary_file(
    kit: RepoKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (KeyboardInterrupt) in the middle of a write cleans up too."""
    storage = kit.local()

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        storage.put("data/cd/object", b"x" * 1000)
    monkeypatch.undo()
    assert list(storage.root.rglob("*.dbfleet-tmp")) == []
    assert storage.unfinished_writes() == []


def test_backup_after_a_prune_between_two_locks(kit: RepoKit) -> None:
    """`backup a b` takes one lock per database; a prune by another process may
    run in between. The second backup must not deduplicate against packs that
    prune deleted (its index was loaded under the first lock)."""
    root = kit.tmp_path / "repo"
    repo = kit.init(LocalStorage(root))
    data = kit.mixed(3 * MiB, seed=50)
    with repository_lock(repo.storage, exclusive=False, operation="backup a"):
        first = kit.backup(repo, data, database="a")

    other = Repository.open(LocalStorage(root), PASSPHRASE)
    with repository_lock(other.storage, exclusive=True, operation="forget"):
        other.delete_snapshot(first.id)
        assert prune(other).packs_deleted >= 1

    with repository_lock(repo.storage, exclusive=False, operation="backup b"):
        second = kit.backup(repo, data, database="b")
    fresh = Repository.open(LocalStorage(root), PASSPHRASE)
    report = check_repository(fresh)
    assert report.ok, report.errors
    assert kit.restore(fresh, fresh.load_snapshot(second.id)) == data
