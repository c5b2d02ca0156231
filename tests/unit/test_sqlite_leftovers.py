"""What a SQLite backup or restore leaves behind when it does not finish
(issue #17, item 11): a backup stopped by SIGTERM removes its staging copy on
the way out; one killed outright leaves it for the next backup, which
removes it (but never a staging directory another backup is using); a
failed restore leaves no staging file; ``--clean`` over a file with a stale
``-wal`` restores the backup, not the old WAL. Real processes, real signals."""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from clikit import PASSPHRASE, PASSPHRASE_ENV, Estate, tables

from dbfleet.config import DatabaseConfig
from dbfleet.engines.sqlite import STAGING_LOCK, STAGING_PREFIX, SQLiteEngine
from dbfleet.errors import UsageError


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~60 MB of incompressible rows: its backup stages for a second or more."""
    path = tmp_path_factory.mktemp("big") / "big.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60) "
            "INSERT INTO blobs (data) SELECT randomblob(1000000) FROM n"
        )
    return path


@pytest.fixture
def estate(tmp_path: Path, big: Path) -> Estate:
    own = Estate(tmp_path / "estate")
    staging = own.root / "staging"
    staging.mkdir()
    options = {"staging_dir": str(staging)}
    own.write(
        {
            "notes": {"engine": "sqlite", "path": str(own.database), "options": options},
            "big": {"engine": "sqlite", "path": str(big), "options": options},
        }
    )
    return own


def staged(estate: Estate) -> list[Path]:
    return sorted((estate.root / "staging").glob(f"{STAGING_PREFIX}*"))


def start_backup(estate: Estate) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBFLEET_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbfleet", "--config", str(estate.config), "backup", "big"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, PASSPHRASE_ENV: PASSPHRASE},
    )
    deadline = time.monotonic() + 60
    while not staged(estate):  # the backup API is copying the database
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stopped_backup_removes_its_staging_copy(estate: Estate, signum: int) -> None:
    proc = start_backup(estate)
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert err.strip() == (
        f"dbfleet: stopped by {signal.Signals(signum).name}; nothing was recorded for "
        "unfinished work"
    )
    assert staged(estate) == []
    assert list((estate.root / "repo" / "locks").iterdir()) == []
    assert estate.run("snapshots", "big").stdout.count("big") == 0


def test_a_killed_backup_staging_copy_goes_with_the_next_backup(estate: Estate) -> None:
    proc = start_backup(estate)
    proc.kill()
    proc.communicate(timeout=60)
    (left,) = staged(estate)
    assert (left / STAGING_LOCK).exists()
    estate.backup("notes")  # any SQLite backup with that staging directory
    assert staged(estate) == []


def test_a_staging_directory_in_use_is_kept(estate: Estate) -> None:
    staging = estate.root / "staging"
    in_use, abandoned, fresh, old = (
        staging / f"{STAGING_PREFIX}{name}" for name in ("in-use", "abandoned", "fresh", "old")
    )
    for directory in (in_use, abandoned, fresh, old):
        directory.mkdir()
        (directory / "copy.db").write_bytes(b"x" * 1000)
    for directory in (in_use, abandoned):
        (directory / STAGING_LOCK).touch()
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))  # no lock file, long ago: abandoned
    holder = os.open(in_use / STAGING_LOCK, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a running backup holds it
    try:
        estate.backup("notes")
    finally:
        os.close(holder)
    assert staged(estate) == [fresh, in_use]


def test_a_failed_restore_leaves_no_staging_file(estate: Estate, tmp_path: Path) -> None:
    target = tmp_path / "out" / "x.db"
    for args in (["--table", "nope"], ["--table", "notes", "--table", "missing"]):
        result = estate.run("restore", "notes:latest", "--to", target, *args)
        assert result.code == 2, result.stderr
        assert list(target.parent.iterdir()) == [], args
    pack = next(p for p in (estate.root / "repo" / "data").rglob("*") if p.is_file())
    data = bytearray(pack.read_bytes())
    data[200] ^= 0xFF
    pack.write_bytes(bytes(data))
    for args in ([], ["--table", "notes"]):
        result = estate.run("restore", "notes:latest", "--to", target, *args)
        assert result.code == 3, result.stderr
        assert list(target.parent.iterdir()) == [], args


def test_clean_restore_over_a_stale_wal_restores_the_backup(estate: Estate) -> None:
    target = estate.root / "replaced.db"
    with closing(sqlite3.connect(target)) as conn:  # an old database, WAL mode
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("CREATE TABLE old (x)")
        conn.commit()
        conn.execute("INSERT INTO old VALUES ('stale')")
        conn.commit()
        wal = Path(f"{target}-wal").read_bytes()  # as a crashed application leaves it
        shm = Path(f"{target}-shm").read_bytes()
    Path(f"{target}-wal").write_bytes(wal)
    Path(f"{target}-shm").write_bytes(shm)
    result = estate.run("restore", "notes:latest", "--to", target, "--clean")
    assert result.code == 0, result.stderr
    assert tables(target) == tables(estate.database) == {"authors", "notes", "tags"}


def test_sqlite_options_are_checked() -> None:
    for options, expected in (({"staging_dir": 5}, "staging_dir"), ({"bogus": 1}, "bogus")):
        with pytest.raises(UsageError, match=expected):
            SQLiteEngine(DatabaseConfig(engine="sqlite", path=Path("/x.db"), options=options))
