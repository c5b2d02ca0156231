"""MySQL/MariaDB point-in-time recovery across binlog rotations (issue #17).

A restore that needs more than one binlog file replays the dump's file from
the dump's position and every later file from its first event after the
format description. The writer here runs across many rotations: explicit
``FLUSH BINARY LOGS`` and a 4 KiB ``max_binlog_size`` (the server's minimum)
that rotates on its own every few statements. At each checkpoint the test
reads the table through the server and waits for the next whole second
(binlog times have one-second resolution): that second is a target time whose
expected state is known row by row. One transaction begins before its
checkpoint and commits after it.

Also: a rotation exactly at the dump's position, targets whose stopping
event is in the first, a middle and the last file, ``latest``, the command
line (``dbfleet restore DB --time``), and files purged from the server
before they were captured (a gap: the capture reports it, a restore that
would cross it fails and names the file, instead of skipping it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbfleet.config import load_inventory
from dbfleet.engines.mysql.binlog import (
    STREAM,
    capture_binlogs,
    is_binlog,
)
from dbfleet.engines.mysql.binlog_events import HEADER, ROTATE, split_events
from dbfleet.engines.mysql.pitr import missing_after, restore_to_time
from dbfleet.errors import EngineError, SnapshotNotFoundError
from dbfleet.operations.backup import backup_database
from dbfleet.operations.common import Repositories
from dbfleet.operations.repository import init_repository
from dbfleet.repo import Snapshot, iter_stream
from tests.integration.conftest import FAST_KDF
from tests.integration.fixtures_mysql import (
    ADMIN_PASSWORD_ENV,
    REPO_PASSWORD_ENV,
    BinlogServer,
    binlog_dbname,
)

pytestmark = pytest.mark.mysql

Rows = list[tuple[Any, ...]]
SMALLEST_BINLOG = 4096  # the server's minimum max_binlog_size


@contextmanager
def small_binlog_files(server: BinlogServer) -> Iterator[None]:
    """The server rotates its binlog on its own every few statements."""
    old = int(server.execute("SELECT @@global.max_binlog_size")[0][0])
    server.execute(f"SET GLOBAL max_binlog_size = {SMALLEST_BINLOG}")
    try:
        yield
    finally:
        server.execute(f"SET GLOBAL max_binlog_size = {old}")


class Writer:
    """Inserts, updates, deletes and multi-row transactions on ``orders``;
    :meth:`checkpoint` gives a target time and the rows as of it."""

    def __init__(self, server: BinlogServer, dbname: str) -> None:
        self.server, self.dbname = server, dbname
        self.next_id = 100

    def write(self, statements: int, *, flush_every: int = 0) -> None:
        with self.server.connect(self.dbname) as conn, conn.cursor() as cur:
            for n in range(1, statements + 1):
                row = self.next_id
                self.next_id += 1
                if n % 7 == 0:  # a transaction of several statements
                    cur.execute("BEGIN")
                    cur.executemany("INSERT INTO orders VALUES (%s, %s, %s)",
                                    [(row, f"txn{row}", row), (-row, f"neg{row}", 0)])  # fmt: skip
                    cur.execute("UPDATE orders SET qty = qty * 2 WHERE id = %s", (row - 3,))
                    cur.execute("COMMIT")
                else:
                    cur.execute("INSERT INTO orders VALUES (%s, %s, %s)", (row, f"w{row}", n))
                if n % 3 == 0:
                    cur.execute("UPDATE orders SET qty = qty + 1, label = CONCAT(label, '+') "
                                "WHERE id = %s", (row - 2,))  # fmt: skip
                if n % 5 == 0:
                    cur.execute("DELETE FROM orders WHERE id = %s", (row - 4,))
                if flush_every and n % flush_every == 0:
                    cur.execute("FLUSH BINARY LOGS")

    def checkpoint(self, *, straddle: bool = False) -> tuple[datetime, Rows]:
        """The next whole second and the rows before it; with ``straddle``,
        a transaction begun before that second commits after it (not in the
        rows)."""
        rows = self.server.rows(self.dbname)
        with self.server.connect(self.dbname) as conn, conn.cursor() as cur:
            if straddle:
                cur.execute("BEGIN")
                cur.execute("INSERT INTO orders VALUES (1, 'straddles', 1)")
                cur.execute("UPDATE orders SET label = 'straddled' WHERE id = %s", (rows[-1][0],))
            target = int(self.server.now()) + 1
            time.sleep(max(0.0, target - self.server.now()) + 0.05)
            if straddle:
                cur.execute("COMMIT")
        return datetime.fromtimestamp(target, UTC), rows


def next_file(name: str) -> str:
    base, _, number = name.rpartition(".")
    return f"{base}.{int(number) + 1:0{len(number)}d}"


def _files(captured: list[dict[str, Any]]) -> list[str]:
    return [str(e["file"]) for e in captured]


def test_restore_across_many_rotations(
    mysql_binlog_server: BinlogServer, mysql_binlog_repos: Repositories
) -> None:
    server, repos = mysql_binlog_server, mysql_binlog_repos
    dbname = binlog_dbname(repos)
    writer = Writer(server, dbname)
    with small_binlog_files(server):
        server.execute("FLUSH BINARY LOGS")  # the dump's file starts nearly empty
        server.execute("INSERT INTO orders VALUES (10, 'before', 0), (11, 'before', 1)", dbname)
        backup_database(repos, "shop")
        writer.write(2)
        in_first = writer.checkpoint()
        writer.write(70, flush_every=25)
        in_middle = writer.checkpoint(straddle=True)
        writer.write(70, flush_every=30)
        server.execute("FLUSH BINARY LOGS")
        writer.write(1)
        in_last = writer.checkpoint()
        writer.write(1)
        captured = capture_binlogs(repos, "shop", flush=True).captured
    files = _files(captured)
    assert len(files) >= 10, files
    rotated_by_size = [e for e in captured if int(e["size"]) >= SMALLEST_BINLOG]
    assert len(rotated_by_size) >= 4, captured
    assert all(e["closed_by"] == "rotate" for e in captured)

    for label, (when, expected), used in [
        ("first", in_first, files[:1]), ("middle", in_middle, None), ("last", in_last, files),
    ]:  # fmt: skip
        result = restore_to_time(repos, "shop", when, target=f"{dbname}_{label}")
        assert server.rows(f"{dbname}_{label}") == expected, label
        if used is None:
            assert 1 < len(result.binlog_files) < len(files), result.binlog_files
            assert result.binlog_files == files[: len(result.binlog_files)]
        else:
            assert result.binlog_files == used, label
    assert (1, "straddles", 1) not in in_middle[1] and (1, "straddles", 1) in in_last[1]

    latest = restore_to_time(repos, "shop", "latest", target=f"{dbname}_latest")
    assert server.rows(f"{dbname}_latest") == server.rows(dbname)
    assert latest.binlog_files == files


def _dbfleet(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dbfleet", "--config", str(config), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_rotation_at_the_dump_position_from_the_command_line(
    mysql_binlog_server: BinlogServer, mysql_binlog_repos: Repositories, tmp_path: Path
) -> None:
    """``dbfleet restore DB --time T`` (the issue's command) when the server
    rotated right after the dump: the dump's position is the file's closing
    rotate event."""
    server = mysql_binlog_server
    dbname = binlog_dbname(mysql_binlog_repos)
    config = tmp_path / "dbfleet.yaml"
    config.write_text(yaml.safe_dump({
        "repositories": {"r": {"url": f"file://{tmp_path / 'repo'}",
                               "passphrase_env": REPO_PASSWORD_ENV}},
        "databases": {"shop": {"engine": "mysql", "url": f"{server.url}/{dbname}",
                               "password_env": ADMIN_PASSWORD_ENV}},
    }))  # fmt: skip
    repos = Repositories(load_inventory(config))
    init_repository(repos.inventory, "r", kdf=FAST_KDF)
    writer = Writer(server, dbname)
    server.execute("INSERT INTO orders VALUES (10, 'before', 0)", dbname)
    backup_database(repos, "shop")
    server.execute("FLUSH BINARY LOGS")
    writer.write(4)
    when, expected = writer.checkpoint(straddle=True)
    server.execute("FLUSH BINARY LOGS")
    writer.write(4)
    assert len(capture_binlogs(repos, "shop", flush=True).captured) == 3
    repo = repos.for_database("shop")
    dump = next(s for s in repo.list_snapshots("shop") if not is_binlog(s))
    point = dump.consistency_point or {}
    first = next(s for s in repo.list_snapshots("shop")
                 if is_binlog(s) and s.options["file"] == point["binlog_file"])  # fmt: skip
    events = list(split_events(iter_stream(repo, first, STREAM)))
    assert HEADER.unpack_from(events[-1])[1] == ROTATE
    assert int(point["binlog_position"]) == int(first.options["size"]) - len(events[-1])

    at = _dbfleet(config, "restore", "shop", "--time", when.isoformat(), "--target", f"{dbname}_at")
    assert at.returncode == 0, at.stderr
    assert server.rows(f"{dbname}_at") == expected
    latest = restore_to_time(repos, "shop", "latest", target=f"{dbname}_now")
    assert server.rows(f"{dbname}_now") == server.rows(dbname) and len(latest.binlog_files) == 3


def test_files_purged_before_capture(
    mysql_binlog_server: BinlogServer, mysql_binlog_repos: Repositories, tmp_path: Path
) -> None:
    """A file the server purged before it was captured is a hole in the
    run: the capture says so (after capturing the files still there), and a
    restore that would need it fails naming it; one that does not still works."""
    server, repos = mysql_binlog_server, mysql_binlog_repos
    dbname = binlog_dbname(repos)
    writer = Writer(server, dbname)
    server.execute("INSERT INTO orders VALUES (10, 'before', 0)", dbname)
    backup_database(repos, "shop")
    writer.write(3)
    before_gap, expected = writer.checkpoint()
    kept = _files(capture_binlogs(repos, "shop", flush=True).captured)
    writer.write(3)
    lost = str(server.execute("SHOW MASTER STATUS")[0][0])
    server.execute("FLUSH BINARY LOGS")
    writer.write(3)
    after_gap, _ = writer.checkpoint()
    server.execute("FLUSH BINARY LOGS")
    writer.write(3)
    server.execute("PURGE BINARY LOGS TO %s", args=(next_file(lost),))  # it and older ones
    # a file deleted by hand but still in the index: named, not a traceback
    copy = tmp_path / "binlog"
    shutil.copytree(server.binlog_dir, copy)
    (copy / next_file(lost)).unlink()
    with pytest.raises(EngineError, match="listed in .* but cannot be read"):
        capture_binlogs(repos, "shop", binlog_dir=str(copy))

    with pytest.raises(EngineError, match=f"{lost} of shop purged from the server"):
        capture_binlogs(repos, "shop", binlog_dir=str(server.binlog_dir))
    after = capture_binlogs(repos, "shop", flush=True)  # said once: the hole is known now
    assert _files(after.captured) == [next_file(next_file(lost))]
    captured = [s.options["file"] for s in repos.for_database("shop").list_snapshots("shop")
                if is_binlog(s)]  # fmt: skip
    assert sorted(captured) == [*kept, next_file(lost), next_file(next_file(lost))]

    result = restore_to_time(repos, "shop", before_gap, target=f"{dbname}_before")
    assert server.rows(f"{dbname}_before") == expected and result.binlog_files == kept
    for when in ("latest", after_gap):
        with pytest.raises(SnapshotNotFoundError, match=f"{lost} .*not in the repository"):
            restore_to_time(repos, "shop", when, target=f"{dbname}_never")
    assert not server.execute(f"SHOW DATABASES LIKE '{dbname}\\_never'")


def _binlog(file: str, created: int) -> Snapshot:
    when = datetime.fromtimestamp(created, UTC)
    options = {"kind": "binlog", "file": file, "server_id": 1, "created": when.isoformat()}
    return Snapshot(database="shop", engine="mysql", hostname="h", started=when, finished=when,
                    id=f"{created:064x}", options=options)  # fmt: skip


def test_a_hole_is_not_a_restart() -> None:
    """Later files numbered above the run's end: a hole; a later file
    numbered no higher (RESET MASTER): the numbering restarted, no hole."""
    one, two, four = _binlog("b.000001", 10), _binlog("b.000002", 20), _binlog("b.000004", 40)
    assert missing_after([one, two, four], "shop", [one, two]) == "b.000003"
    assert missing_after([one, two], "shop", [one, two]) is None
    restarted = _binlog("b.000001", 30)
    assert missing_after([one, two, restarted, four], "shop", [one, two]) is None
