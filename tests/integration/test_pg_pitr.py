"""PostgreSQL point-in-time recovery, end to end, on a throw-away cluster.

The module starts its own PostgreSQL 15 cluster (initdb into a directory
under /tmp, as the ``postgres`` OS user) with ``archive_command`` running
``dbfleet wal-push`` and takes base backups of it into a local repository.
Rows are written at t1, t2 and t3; a restore to a moment between t2 and t3
must have the t1 and t2 rows and not the t3 rows; ``--latest`` has them all.

The test's Python lives under /root (mode 0700 on this machine), which the
``postgres`` user cannot enter; the throw-away servers therefore run with
the ambient capability CAP_DAC_READ_SEARCH so their archive and restore
commands can start this interpreter. A real installation puts dbfleet where
the server's user can run it (see docs/pitr-postgresql.md).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from dbfleet.config import Inventory, load_inventory
from dbfleet.engines.postgresql import basebackup as pg_base
from dbfleet.engines.postgresql import pitr as pg_restore
from dbfleet.engines.postgresql import wal as pg_wal
from dbfleet.errors import SnapshotNotFoundError
from dbfleet.repo import Repository, Snapshot
from dbfleet.storage import LocalStorage
from tests.integration.conftest import _unavailable as unavailable

pytestmark = pytest.mark.postgres

PASSPHRASE_KDF = {"n": 2**10, "r": 8, "p": 1}
DB = "pitr"
AS_POSTGRES = [
    *("setpriv", "--reuid", "postgres", "--regid", "postgres", "--init-groups"),
    *("--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search", "--"),
]
ENTRY = f"{shlex.quote(sys.executable)} -m dbfleet"


def _unavailable(message: str) -> None:
    unavailable(message, hint="")


def _bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        _unavailable("PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin)")
    return found[-1].parent


def _as_postgres(*argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*AS_POSTGRES, *map(str, argv)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        pytest.fail(f"{Path(argv[0]).name} failed: {proc.stdout} {proc.stderr}")
    return proc


@dataclass
class Cluster:
    root: Path
    data: Path
    port: int
    inventory_path: Path
    inventory: Inventory
    repo: Repository
    bindir: Path
    base: Snapshot | None = None
    times: dict[str, str] | None = None
    lsns: dict[str, str] | None = None

    def connect(self, port: int | None = None) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=port or self.port, user="postgres", dbname="postgres",
            autocommit=True,
        )  # fmt: skip

    def switch_and_wait(self, timeout: float = 60) -> str:
        """Close the current segment and wait until the archive has it."""
        with self.connect() as conn:
            row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        wait_archived(self, [row[0]], timeout)
        return str(row[0])

    def restore(self, target: pg_restore.RecoveryTarget, name: str) -> pg_restore.PitrResult:
        return pg_restore.restore_to_datadir(
            self.repo, DB, target, self.root / name, inventory=self.inventory_path,
            start=True, owner="postgres", run_prefix=AS_POSTGRES, timeout=120,
            command=pg_restore.restore_command(DB, self.inventory_path, prefix=ENTRY),
        )  # fmt: skip

    def stop(self, data: Path) -> None:
        if (data / "postmaster.pid").exists():
            _as_postgres(self.bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop",
                         check=False)  # fmt: skip


def wait_archived(cluster: Cluster, files: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    missing = list(files)
    while missing:
        missing = [f for f in missing if not pg_wal.archived(cluster.repo, DB, f)]
        if not missing:
            return
        if time.monotonic() > deadline:
            log = (cluster.root / "server.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"not archived after {timeout}s: {missing}\n{log}")
        time.sleep(0.1)


def _write_conf(data: Path, port: int, run: Path, archive_command: str) -> None:
    settings = {
        "port": str(port),
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{run}'",
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": "'" + archive_command.replace("'", "''") + "'",
        "fsync": "off",
        "max_wal_size": "1GB",
        "log_min_messages": "warning",
    }
    with open(data / "postgresql.conf", "a") as fh:
        fh.write("".join(f"{k} = {v}\n" for k, v in settings.items()))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        _unavailable("the PITR test starts its own cluster as the postgres OS user: run as root")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        _unavailable("no postgres OS user (install postgresql)")
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="dbfleet-pitr-", dir="/tmp"))
    root.chmod(0o755)
    data, run, repo_dir = root / "data", root / "run", root / "repo"
    for d in (data, run):
        d.mkdir(mode=0o700)
        shutil.chown(d, "postgres", "postgres")
    (root / "server.log").touch()
    shutil.chown(root / "server.log", "postgres", "postgres")
    passfile = root / "passphrase"
    passfile.write_text(secrets.token_hex(16) + "\n")
    passfile.chmod(0o600)
    shutil.chown(passfile, "postgres", "postgres")
    repo = Repository.init(LocalStorage(repo_dir), passfile.read_text().strip(), PASSPHRASE_KDF)
    subprocess.run(["chown", "-R", "postgres:postgres", str(repo_dir)], check=True)
    port = pg_restore.free_port()
    inventory_path = root / "dbfleet.yaml"
    inventory_path.write_text(
        yaml.safe_dump(
            {
                "repositories": {"main": {"url": str(repo_dir), "passphrase_file": str(passfile)}},
                "databases": {
                    DB: {
                        "engine": "postgresql",
                        "url": f"postgresql://postgres@127.0.0.1:{port}/postgres",
                    }
                },
            }
        )
    )
    inventory_path.chmod(0o644)
    _as_postgres(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--locale=C.UTF-8")  # fmt: skip
    archive = f"{ENTRY} --config {inventory_path} wal-push --db {DB} %p"
    _write_conf(data, port, run, archive)
    cluster = Cluster(
        root, data, port, inventory_path, load_inventory(inventory_path), repo, bindir
    )
    try:
        _as_postgres(bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "start")
        yield cluster
    finally:
        for path in sorted(root.iterdir()):
            if path.is_dir():
                cluster.stop(path)
        shutil.rmtree(root, ignore_errors=True)


def _insert(cluster: Cluster, label: str) -> tuple[str, str]:
    """Insert rows for ``label``; the commit's time and WAL position after it."""
    with cluster.connect() as conn:
        conn.execute("INSERT INTO events (label, n) SELECT %s, g FROM generate_series(1, 100) g",
                     (label,))  # fmt: skip
        row = conn.execute("SELECT clock_timestamp()::text, pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


@pytest.fixture(scope="module")
def history(cluster: Cluster) -> Cluster:
    """A base backup, then rows at t1, t2, t3 with every segment archived."""
    with cluster.connect() as conn:
        conn.execute("CREATE TABLE events (label text, n int, at timestamptz DEFAULT now())")
    began = time.monotonic()
    cluster.base = pg_base.take_base_backup(cluster.repo, DB, cluster.inventory.databases[DB])
    print(f"\nbase backup: {cluster.base.size} bytes in {time.monotonic() - began:.2f}s")
    times, lsns = {}, {}
    for label in ("t1", "t2", "t3"):
        if label == "t3":
            time.sleep(0.3)
        times[label], lsns[label] = _insert(cluster, label)
        if label == "t2":
            with cluster.connect() as conn:  # a moment strictly between t2 and t3
                row = conn.execute("SELECT clock_timestamp()::text").fetchone()
            assert row is not None
            times["between"] = str(row[0])
            time.sleep(0.3)
        cluster.switch_and_wait()
    cluster.times, cluster.lsns = times, lsns
    return cluster


def _labels(cluster: Cluster, port: int | None) -> dict[str, int]:
    with cluster.connect(port) as conn:
        rows = conn.execute("SELECT label, count(*) FROM events GROUP BY label").fetchall()
    return {str(label): int(count) for label, count in rows}


def test_base_backup_records_its_wal_range(history: Cluster) -> None:
    base = history.base
    assert base is not None and pg_base.is_base_backup(base)
    point = base.consistency_point or {}
    assert pg_base.parse_lsn(point["start_lsn"]) <= pg_base.parse_lsn(point["stop_lsn"])
    assert int(point["system_identifier"]) > 0
    assert base.stream(pg_base.STREAM) is not None
    # the server waited for the backup's WAL to be archived before it finished
    assert pg_wal.archived(history.repo, DB, point["start_wal_file"])


def test_restore_to_a_time_between_t2_and_t3(history: Cluster) -> None:
    assert history.times is not None
    target = pg_restore.RecoveryTarget("time", history.times["between"])
    began = time.monotonic()
    result = history.restore(target, "restored-time")
    print(f"\nPITR restore to time: {time.monotonic() - began:.2f}s {result.as_dict()}")
    assert result.started and result.state == "in production"
    assert result.base_snapshot == (history.base.id if history.base else None)
    assert _labels(history, result.port) == {"t1": 100, "t2": 100}
    assert result.stop is not None and "recovery stopping before commit" in result.stop
    conf = (Path(result.datadir) / "postgresql.auto.conf").read_text()
    assert "archive_mode = 'off'" in conf and "recovery_target_time" in conf
    history.stop(Path(result.datadir))


def test_restore_to_an_lsn(history: Cluster) -> None:
    assert history.lsns is not None
    result = history.restore(pg_restore.RecoveryTarget("lsn", history.lsns["t2"]), "restored-lsn")
    assert _labels(history, result.port) == {"t1": 100, "t2": 100}
    history.stop(Path(result.datadir))


def test_wal_push_is_idempotent_and_never_overwrites(history: Cluster) -> None:
    objects = [o for o in pg_wal.list_wal(history.repo, DB) if o.position is not None]
    segment = objects[-1]
    original = pg_wal.read_object(history.repo, segment)
    scratch = history.root / "scratch" / "pg_wal"
    scratch.mkdir(parents=True)
    same = scratch / segment.file
    same.write_bytes(original)
    assert pg_wal.push(history.repo, DB, same).stored is False  # a retry: exit 0
    same.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(pg_wal.WalConflictError):
        pg_wal.push(history.repo, DB, same)
    assert [o.name for o in pg_wal.archived(history.repo, DB, segment.file)] == [segment.name]
    # two archivers racing on one new file store it once, and both succeed
    fresh = scratch / "0000000100000000000000F0"
    fresh.write_bytes(os.urandom(1 << 20))
    shutil.chown(scratch, "postgres", "postgres")
    shutil.chown(fresh, "postgres", "postgres")
    argv = [*AS_POSTGRES, *shlex.split(ENTRY), "--config", str(history.inventory_path),
            "wal-push", "--db", DB, str(fresh)]  # fmt: skip
    procs = [subprocess.Popen(argv, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        assert [p.wait() for p in procs] == [0, 0, 0], [p.stderr.read() for p in procs if p.stderr]
        assert len(pg_wal.archived(history.repo, DB, fresh.name)) == 1
    finally:  # a made-up segment far ahead is a hole to every later restore and check
        for obj in pg_wal.archived(history.repo, DB, fresh.name):
            history.repo.storage.delete(obj.name)


def test_wal_fetch_missing_is_quick_and_quiet(history: Cluster) -> None:
    out = history.root / "scratch-fetch"
    argv = [*shlex.split(ENTRY), "--config", str(history.inventory_path), "wal-fetch",
            "--db", DB, "0000000900000000000000AA", str(out)]  # fmt: skip
    began = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    took = time.monotonic() - began
    assert (proc.returncode, proc.stderr, out.exists()) == (1, "", False)
    print(f"\nwal-fetch of a missing file: {took:.2f}s")
    assert took < 10
    # damage is not "missing": exit 126 stops recovery instead of ending it early
    name = f"{pg_wal.database_prefix(DB)}0000000100000000/0000000100000000000000E0.{'ab' * 16}"
    history.repo.storage.put(name, os.urandom(4096))
    argv[-2] = "0000000100000000000000E0"
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    history.repo.storage.delete(name)
    assert proc.returncode == 126 and "authentication failed" in proc.stderr


def test_cli_basebackup_and_wal_list(history: Cluster) -> None:
    cli = [*shlex.split(ENTRY), "--config", str(history.inventory_path)]
    made = subprocess.run([*cli, "basebackup", DB, "--json"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    snapshot = json.loads(made.stdout)
    assert snapshot["kind"] == "basebackup" and snapshot["streams"] == [pg_base.STREAM]
    listed = subprocess.run([*cli, "wal-list", "--json"], capture_output=True, text=True)
    summary = json.loads(listed.stdout)
    assert snapshot["id"] in [b["snapshot"] for b in summary["base_backups"]]
    assert summary["files"] >= 5 and summary["first"] <= summary["last"]
    refused = subprocess.run([*cli, "basebackup", f"{DB}/postgres"], capture_output=True, text=True)
    assert refused.returncode == 2
    checked = subprocess.run(
        [*cli, "repo", "check", "--read-data", "--json"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (report,) = json.loads(checked.stdout)
    assert report["ok"] and report["wal_files"] == summary["files"], report


def test_archiving_throughput(history: Cluster) -> None:
    """A backlog of full segments (archiving paused) drains at this rate."""
    with history.connect() as conn:
        conn.execute("ALTER SYSTEM SET archive_command = ''")
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("CREATE TABLE filler (id int, body text)")
        conn.execute(
            "INSERT INTO filler SELECT g, md5(g::text) || repeat('x', 200) "
            "FROM generate_series(1, 600000) g"
        )
        last = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert last is not None
        status = history.data / "pg_wal" / "archive_status"
        backlog = sorted(p.name[:-6] for p in status.glob("*.ready"))
        began = time.monotonic()
        conn.execute("ALTER SYSTEM RESET archive_command")
        conn.execute("SELECT pg_reload_conf()")
    wait_archived(history, backlog, timeout=120)
    took = time.monotonic() - began
    with history.connect() as conn:
        conn.execute("DROP TABLE filler")
    print(f"\narchived a backlog of {len(backlog)} segments in {took:.2f}s: "
          f"{len(backlog) / took:.1f} segments/s")  # fmt: skip
    assert len(backlog) >= 8


def test_retention_keeps_the_chain_and_latest_restores(history: Cluster) -> None:
    second = pg_base.take_base_backup(history.repo, DB, history.inventory.databases[DB])
    _insert(history, "t4")
    history.switch_and_wait()
    doomed = pg_base.wal_retention(history.repo, DB, [second])
    start = pg_wal.segment_position(pg_base.start_wal_file(second))
    assert doomed and start is not None
    assert all(o.position is not None and o.position < start for o in doomed)
    assert pg_base.wal_retention(history.repo, DB, []) == []
    pg_base.forget_wal(history.repo, doomed)
    kept = pg_wal.list_wal(history.repo, DB)
    assert not {o.name for o in doomed} & {o.name for o in kept}
    began = time.monotonic()
    result = history.restore(pg_restore.RecoveryTarget("latest"), "restored-latest")
    print(f"\nPITR restore --latest: {time.monotonic() - began:.2f}s {result.as_dict()}")
    assert result.base_snapshot == second.id
    assert _labels(history, result.port) == {"t1": 100, "t2": 100, "t3": 100, "t4": 100}
    history.stop(Path(result.datadir))


def test_target_before_every_base_backup_is_refused(history: Cluster) -> None:
    with pytest.raises(SnapshotNotFoundError):
        pg_restore.choose_base_backup(
            pg_base.base_backups(history.repo, DB),
            pg_restore.RecoveryTarget("time", datetime(2000, 1, 1).astimezone().isoformat()),
        )


def test_recovery_window_reaches_the_newest_archived_segment(history: Cluster) -> None:
    """Newest restorable moment: the newest archived segment after the newest
    base backup, later than the base backup; a hole in the archive ends the
    run where recovery would stop. (Runs last: it deletes a segment.)"""
    from dbfleet.observe.recovery import recovery_window

    time.sleep(1.1)
    before = datetime.now(UTC)
    _insert(history, "t4")
    newest_file = history.switch_and_wait()
    after = datetime.now(UTC)
    window = recovery_window(history.inventory, DB, history.repo)
    bases = sorted(pg_base.base_backups(history.repo, DB), key=lambda s: s.finished)
    assert window.log is not None and window.log.stream == "wal"
    assert window.newest_snapshot == bases[-1].finished
    assert window.window_start == bases[0].finished
    assert window.newest_point is not None
    assert before.timestamp() - 1 <= window.newest_point.timestamp() <= after.timestamp() + 1
    assert window.newest_point > bases[-1].finished

    # a hole: the segment before the newest is gone; the run ends before it
    segments = [o for o in pg_wal.list_wal(history.repo, DB) if o.file[8:] != newest_file[8:]]
    segments = [o for o in segments if len(o.file) == 24 and o.file < newest_file]
    gone = segments[-1]
    history.repo.storage.delete(gone.name)
    kept = {o.name: o for o in history.repo.storage.list(pg_wal.database_prefix(DB))}
    start = pg_base.start_wal_file(bases[-1])
    before_hole = [
        kept[o.name].modified for o in pg_wal.list_wal(history.repo, DB)
        if o.name in kept and start <= o.file[:24] < gone.file
    ]  # fmt: skip
    cut = recovery_window(history.inventory, DB, history.repo)
    assert cut.newest_point is not None and cut.log is not None
    expected = max([bases[-1].finished.timestamp(), *(m or 0.0 for m in before_hole)])
    assert cut.newest_point.timestamp() == pytest.approx(expected)
    assert cut.newest_point < window.newest_point
