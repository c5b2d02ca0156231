"""restore and verify read under a shared repository lock: a prune cannot
delete packs under them, and a running prune makes them wait for it (exit 1,
"try again later") instead of failing halfway with "pack missing". A
repository where no lock can be written (read-only storage) is read with a
warning instead of being refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clikit import PASSPHRASE, PASSPHRASE_ENV, Estate, error_line, tables

from dbfleet.repo.lock import list_locks, repository_lock
from dbfleet.storage import LocalStorage


@pytest.fixture
def estate(tmp_path: Path) -> Estate:
    return Estate(tmp_path / "estate")


def _storage(estate: Estate) -> LocalStorage:
    return LocalStorage(estate.root / "repo")


@pytest.mark.parametrize("command", ["restore", "verify"])
def test_a_running_prune_refuses_readers(estate: Estate, tmp_path: Path, command: str) -> None:
    args = ["restore", "notes:latest", "--to", str(tmp_path / "out.db")]
    if command == "verify":
        args = ["verify", "notes:latest"]
    with repository_lock(_storage(estate), exclusive=True, operation="prune"):
        result = estate.run(*args)
    line = error_line(result, code=1)
    assert "prune" in line and "locked" in line
    assert not (tmp_path / "out.db").exists()
    assert estate.run(*args).code == 0  # once the prune is over


def test_restore_holds_a_shared_lock_that_refuses_prune(
    estate: Estate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the restore runs (caught inside the engine's restore), the
    repository shows its shared lock, and an exclusive lock is refused."""
    import dbfleet.engines.sqlite as sqlite_engine

    seen: list[list[str]] = []
    refused: list[bool] = []
    original = sqlite_engine.SQLiteEngine.restore

    def watched(self: sqlite_engine.SQLiteEngine, source: object, options: object) -> None:
        seen.append([lock.operation for lock in list_locks(_storage(estate))])
        try:
            with repository_lock(_storage(estate), exclusive=True, operation="prune"):
                refused.append(False)
        except Exception as exc:  # noqa: BLE001 - LockedError expected; anything else fails below
            refused.append(type(exc).__name__ == "LockedError")
        original(self, source, options)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_engine.SQLiteEngine, "restore", watched)
    result = estate.run("restore", "notes:latest", "--to", str(tmp_path / "out.db"))
    assert result.code == 0, result.stderr
    assert seen == [["restore notes"]] and refused == [True]
    assert list_locks(_storage(estate)) == []  # released afterwards


def test_a_repository_without_room_for_locks_is_read_with_a_warning(
    estate: Estate, tmp_path: Path
) -> None:
    """``locks`` made a plain file: no lock can be written there (even as
    root, unlike a chmod), as on read-only storage. Run as a real process:
    the warning is what a user sees on stderr."""
    locks = estate.root / "repo" / "locks"
    shutil.rmtree(locks, ignore_errors=True)
    locks.write_text("not a directory")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBFLEET_")}
    env[PASSPHRASE_ENV] = PASSPHRASE
    out = tmp_path / "out.db"
    argv = [sys.executable, "-m", "dbfleet", "--config", str(estate.config)]
    proc = subprocess.run(
        [*argv, "restore", "notes:latest", "--to", str(out)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (warning,) = [line for line in proc.stderr.splitlines() if "reading without one" in line]
    assert warning.startswith("warning: cannot write a lock") and "prune" in warning
    assert PASSPHRASE not in proc.stderr
    assert tables(out) == tables(estate.database)
