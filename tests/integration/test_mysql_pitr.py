"""MySQL/MariaDB point-in-time recovery against a real MariaDB server.

A private ``mariadbd`` (Debian's binary, its own data and binlog directory,
run as the ``mysql`` user when the tests run as root; ``mysql_binlog_server``
in fixtures_mysql.py): the tests flush and read its binary logs, which on
the shared test server would be large and written to by other tests at the
same time.

The shape of the PostgreSQL test: rows written at t1, t2 and t3 (more than
a second apart, binlog timestamps have one-second resolution), binlogs
captured, a restore to a moment between t2 and t3 has the t1 and t2 rows
and not the t3 rows; ``latest`` has all of them.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dbfleet.cli import main as cli_main
from dbfleet.config import load_inventory
from dbfleet.engines.mysql import cli as pitr_mysql
from dbfleet.engines.mysql.binlog import (
    STREAM,
    capture_binlogs,
    is_binlog,
    oldest_dump_file,
)
from dbfleet.engines.mysql.pitr import obsolete_binlogs, plan_recovery, restore_to_time
from dbfleet.errors import EngineError, SnapshotNotFoundError, UsageError
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


@pytest.fixture
def server(mysql_binlog_server: BinlogServer) -> BinlogServer:
    return mysql_binlog_server


@pytest.fixture
def repos(mysql_binlog_repos: Repositories) -> Repositories:
    return mysql_binlog_repos


def _write_history(server: BinlogServer, dbname: str) -> float:
    """Writes at t1, t2 and t3, each in a later second; returns a time
    between t2 and t3 (a whole second, after every t2 event's second)."""
    server.execute("INSERT INTO orders VALUES (10, 't1', 1), (11, 't1', 1)", dbname)
    time.sleep(1.1)
    server.execute("INSERT INTO orders VALUES (20, 't2', 2)", dbname)
    server.execute("UPDATE orders SET qty = 22 WHERE id = 10", dbname)
    with server.connect(dbname) as open_txn, open_txn.cursor() as cur:
        # begun before the target time, committed after it: not applied
        cur.execute("BEGIN")
        cur.execute("INSERT INTO orders VALUES (25, 'open', 25)")
        target = int(server.now()) + 1
        time.sleep(max(0.0, target - server.now()) + 0.1)
        cur.execute("COMMIT")
    server.execute("INSERT INTO orders VALUES (30, 't3', 3)", dbname)
    server.execute("DELETE FROM orders WHERE id = 11", dbname)
    return float(target)


T0 = [(1, "t0", 0)]
AT_T2 = [(1, "t0", 0), (10, "t1", 22), (11, "t1", 1), (20, "t2", 2)]
LATEST = [(1, "t0", 0), (10, "t1", 22), (20, "t2", 2), (25, "open", 25), (30, "t3", 3)]


def test_restore_to_a_time_between_t2_and_t3(server: BinlogServer, repos: Repositories) -> None:
    dbname = binlog_dbname(repos)
    server.execute("INSERT INTO orders VALUES (1, 't0', 0)", dbname)
    dump = backup_database(repos, "shop")
    # another database's writes in the same binlog must not reach the target
    server.execute(f"CREATE DATABASE {dbname}_noise")
    server.execute("CREATE TABLE noise (x INT)", f"{dbname}_noise")
    target = _write_history(server, dbname)
    server.execute("INSERT INTO noise VALUES (1)", f"{dbname}_noise")

    first = capture_binlogs(repos, "shop", flush=True)
    assert first.captured and first.source == "replication"
    assert first.copies == {"off": len(first.captured)}  # copy_to, like backups
    again = capture_binlogs(repos, "shop", flush=False)
    assert again.captured == [] and again.skipped == len(first.captured)

    # the replication protocol gives the files byte for byte as on disk
    repo = repos.for_database("shop")
    for snap in (s for s in repo.list_snapshots("shop") if is_binlog(s)):
        on_disk = (server.binlog_dir / str(snap.options["file"])).read_bytes()
        assert b"".join(iter_stream(repo, snap, STREAM)) == on_disk

    when = datetime.fromtimestamp(target, UTC)
    result = restore_to_time(repos, "shop", when, target=f"{dbname}_pitr")
    assert result.dump_snapshot == dump.snapshot
    assert server.rows(f"{dbname}_pitr") == AT_T2
    assert result.binlog_events > 0 and result.recovered_until < when.isoformat()
    assert not server.execute(f"SHOW DATABASES LIKE '{dbname}\\_pitr\\_noise'")

    latest = restore_to_time(repos, "shop", "latest", target=f"{dbname}_latest")
    assert server.rows(f"{dbname}_latest") == LATEST == server.rows(dbname)
    assert latest.binlog_events > result.binlog_events
    assert server.execute(f"SHOW TABLES FROM `{dbname}_latest`") == [("orders",)]


def test_directory_shipping_and_refusals(
    server: BinlogServer, repos: Repositories, tmp_path: Path
) -> None:
    dbname = binlog_dbname(repos)
    server.execute("INSERT INTO orders VALUES (1, 't0', 0)", dbname)
    with pytest.raises(SnapshotNotFoundError):  # nothing to start from yet
        plan_recovery(repos, "shop", None)
    assert capture_binlogs(repos, "shop").note  # no dump: nothing to capture
    backup_database(repos, "shop")
    before_dump = datetime.now(UTC).replace(year=2000)
    target = _write_history(server, dbname)
    with pytest.raises(SnapshotNotFoundError, match="binlog .* is not in the repository"):
        plan_recovery(repos, "shop", None)

    server.execute("FLUSH BINARY LOGS")
    shipped = capture_binlogs(repos, "shop", binlog_dir=str(server.binlog_dir))
    assert shipped.source == "directory" and shipped.captured
    # the replication protocol finds the same files already there
    assert capture_binlogs(repos, "shop").captured == []
    # a damaged file fails its capture and records nothing
    damaged = tmp_path / "binlog"
    shutil.copytree(server.binlog_dir, damaged)
    last_closed = shipped.captured[-1]["file"]
    with open(damaged / last_closed, "r+b") as f:
        f.truncate(int(shipped.captured[-1]["size"]) - 7)
    count = len(repos.for_database("shop").list_snapshots())
    with pytest.raises(EngineError, match="inside an event"):
        capture_binlogs(repos, "shop", binlog_dir=str(damaged))
    assert len(repos.for_database("shop").list_snapshots()) == count

    with pytest.raises(SnapshotNotFoundError, match="no dump"):
        restore_to_time(repos, "shop", before_dump, target=f"{dbname}_never")
    with pytest.raises(UsageError, match="no UTC offset"):
        restore_to_time(repos, "shop", "2030-01-01 00:00:00", target=f"{dbname}_never")
    time.sleep(1.1)
    with pytest.raises(UsageError, match="reach"):  # later than anything captured
        restore_to_time(repos, "shop", datetime.now(UTC), target=f"{dbname}_never")
    assert not server.execute(f"SHOW DATABASES LIKE '{dbname}\\_never'")

    stamp = datetime.fromtimestamp(target, UTC).isoformat()
    result = restore_to_time(repos, "shop", stamp, target=f"{dbname}_dir")
    assert server.rows(f"{dbname}_dir") == AT_T2
    assert result.binlog_files


def test_cli_with_a_server_entry(server: BinlogServer, repos: Repositories, tmp_path: Path) -> None:
    """The commands, on an ``all_databases`` entry: its binlogs are captured
    once for the server and serve each of its databases."""
    dbname = binlog_dbname(repos)
    server.execute("INSERT INTO orders VALUES (1, 't0', 0)", dbname)
    config = tmp_path / "dbfleet.yaml"
    config.write_text(
        f"repositories:\n  r:\n    url: file://{tmp_path / 'repo'}\n"
        f"    passphrase_env: {REPO_PASSWORD_ENV}\n"
        f"databases:\n  srv:\n    engine: mysql\n    url: {server.url}/mysql\n"
        f"    password_env: {ADMIN_PASSWORD_ENV}\n    all_databases: true\n"
        f"    include: [{dbname}]\n"
    )
    file_repos = Repositories(load_inventory(config))
    init_repository(file_repos.inventory, "r", kdf=FAST_KDF)
    backup_database(file_repos, f"srv/{dbname}")
    target = _write_history(server, dbname)
    app = typer.Typer()
    app.callback()(cli_main.main)
    pitr_mysql.register(app)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
        return result.output

    shipped = json.loads(run("binlog-ship", "srv", "--flush", "--json"))
    assert shipped["database"] == "srv" and shipped["captured"]
    assert "nothing new" in run("binlog-stream", "srv", "--interval", "0.1", "--rounds", "2")
    stamp = datetime.fromtimestamp(target, UTC).isoformat()
    plan = json.loads(run("restore-pitr-mysql", f"srv/{dbname}", "--time", stamp, "--plan",
                          "--json"))  # fmt: skip
    assert plan["binlog_files"] == [e["file"] for e in shipped["captured"]]
    out = run("restore-pitr-mysql", f"srv/{dbname}", "--time", stamp, "--target", f"{dbname}_cli")
    assert f"{dbname}_cli" in out
    assert server.rows(f"{dbname}_cli") == AT_T2


def _snap(database: str, at: int, **fields: Any) -> Snapshot:
    when = datetime.fromtimestamp(at, UTC)
    return Snapshot(database=database, engine="mysql", hostname="h", started=when,
                    finished=when, **fields)  # fmt: skip


def _binlog(file: str, created: int, last: int) -> Snapshot:
    times = {"created": created, "last_event_time": last, "max_event_time": last}
    return _snap("srv", last, id=f"{created:064x}", options={
        "kind": "binlog", "file": file, "server_id": 1,
        **{k: datetime.fromtimestamp(v, UTC).isoformat() for k, v in times.items()},
    })  # fmt: skip


def test_binlogs_no_dump_needs() -> None:
    """For retention: binlogs outside every remaining dump's run (of the entry
    or its members), captured before the newest dump, are obsolete; none
    without a dump. File 2's last event has an old time stamp (a session's
    SET TIMESTAMP): the run, not the time, decides."""
    binlogs = [_binlog("b.000001", 0, 100), _binlog("b.000002", 100, 50),
               _binlog("b.000003", 200, 300), _binlog("b.000005", 400, 500)]  # fmt: skip
    dump = _snap("srv/app", 150, consistency_point={"binlog_file": "b.000002", "server_id": 1})
    other = _snap("elsewhere", 150, consistency_point={"binlog_file": "b.000001"})
    everything = [*binlogs, dump, other]
    assert obsolete_binlogs(everything, "srv") == [binlogs[0]]  # b.000005: after a gap, later
    assert obsolete_binlogs([*binlogs, other], "srv") == []
    assert oldest_dump_file(everything, "srv") == "b.000002"


def test_recovery_window_reaches_the_captured_binlogs(
    server: BinlogServer, repos: Repositories
) -> None:
    """The newest restorable moment is the latest event of the binlogs
    captured after the dump, later than the dump itself; the window starts
    at the dump's end."""
    from dbfleet.observe.recovery import recovery_window

    dbname = binlog_dbname(repos)
    dump = backup_database(repos, "shop")
    time.sleep(1.1)  # binlog times have one-second resolution
    server.execute("INSERT INTO orders VALUES (40, 't4', 4)", dbname)
    written = datetime.now(UTC).replace(microsecond=0)
    capture_binlogs(repos, "shop", flush=True)
    repo = repos.for_database("shop")
    window = recovery_window(repos.inventory, "shop", repo)
    snaps = [s for s in repo.list_snapshots() if s.database == "shop"]
    dumps = sorted((s for s in snaps if not is_binlog(s)), key=lambda s: s.finished)
    assert window.log is not None and window.log.stream == "binlog"
    assert window.newest_snapshot == dumps[-1].finished
    assert dumps[-1].id == dump.snapshot
    assert window.window_start == dumps[0].finished
    assert window.newest_point is not None
    assert written <= window.newest_point <= datetime.now(UTC)
    assert window.newest_point > dumps[-1].finished
    newest_capture = max(s.finished for s in snaps if is_binlog(s))
    assert window.log.last_archived == newest_capture


def test_binlog_coverage_stops_at_a_hole() -> None:
    """Files 2 and 3 follow the dump; 5 comes after a hole and does not count."""
    from dbfleet.engines.registry import recovery_log

    binlogs = [_binlog("b.000001", 0, 100), _binlog("b.000002", 100, 50),
               _binlog("b.000003", 200, 300), _binlog("b.000005", 400, 500)]  # fmt: skip
    dump = _snap("srv/app", 150, consistency_point={"binlog_file": "b.000002", "server_id": 1})
    coverage = recovery_log("mysql")
    assert coverage is not None
    found = coverage.coverage(None, "srv", [*binlogs, dump])  # type: ignore[arg-type]
    assert found is not None
    assert found.newest_point == datetime.fromtimestamp(300, UTC)
    assert (found.pieces, found.stream) == (2, "binlog")
    assert found.last_archived == datetime.fromtimestamp(500, UTC)
    assert coverage.coverage(None, "srv", binlogs) is None  # type: ignore[arg-type]
