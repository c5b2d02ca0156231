"""An S3 server that dies in the middle of a backup: a throw-away MinIO of the
test's own (the shared test server is never stopped), killed with SIGKILL
while a pack uploads in parts.

What the user must see is the upload's failure, not the failure to remove the
backup's lock afterwards (that is a warning). The parts already uploaded stay
as an incomplete multipart upload, since the abort cannot reach a dead server;
once the server is back, ``repo check`` reports it and ``repo unlock`` (or
prune) aborts it when it is older than the grace period.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from dbfleet.config import parse_inventory
from dbfleet.operations import repository as repo_ops
from dbfleet.operations.backup import backup_many
from dbfleet.operations.common import Repositories
from dbfleet.repo import Repository
from dbfleet.repo.check import check_repository
from dbfleet.repo.lock import list_locks
from dbfleet.storage.retry import RetryingStorage
from dbfleet.storage.s3 import S3Storage, resolve_credentials
from tests.integration.conftest import _unavailable

FAST_KDF = {"n": 2**10, "r": 8, "p": 1}
PASSPHRASE = "s3-failures-Passphrase-0e77"
ACCESS_ENV, SECRET_ENV = "DBFLEET_TEST_THROWAWAY_ACCESS", "DBFLEET_TEST_THROWAWAY_SECRET"
MiB = 1024 * 1024


def _minio_binary() -> Path:
    cache = os.environ.get("DBFLEET_TEST_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dbfleet-test-servers"
    )
    found = sorted(Path(cache).glob("minio-*/minio"))
    if not found:
        _unavailable(f"no MinIO binary under {cache}", "run scripts/test-servers.sh start minio")
    return found[-1]


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayMinio:
    """A MinIO server on its own port and data directory, for killing."""

    def __init__(self, binary: Path, root: Path) -> None:
        self.binary = binary
        self.data = root / "data"
        self.log = root / "minio.log"
        self.port, self.console_port = _free_port(), _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "MINIO_ROOT_USER": os.environ[ACCESS_ENV],
            "MINIO_ROOT_PASSWORD": os.environ[SECRET_ENV],
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        }
        argv = [str(self.binary), "server", str(self.data), "--quiet"]
        argv += ["--address", f"127.0.0.1:{self.port}"]
        argv += ["--console-address", f"127.0.0.1:{self.console_port}"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/minio/health/live", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log_tail = self.log.read_text()[-2000:]
                    raise AssertionError(f"MinIO did not start: {log_tail}") from None
                time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def minio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThrowawayMinio]:
    monkeypatch.setenv(ACCESS_ENV, "throwaway-minio")
    monkeypatch.setenv(SECRET_ENV, "throwaway-secret-" + os.urandom(6).hex())
    server = ThrowawayMinio(_minio_binary(), tmp_path)
    server.start()
    yield server
    server.kill()


def _database(path: Path, size: int) -> None:
    """Incompressible rows: a backup of several packs above the part size."""
    rng = random.Random(11)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB)")
        conn.executemany(
            "INSERT INTO blobs (body) VALUES (?)",
            [(rng.randbytes(64 * 1024),) for _ in range(size // (64 * 1024))],
        )


def _fast_failing(minio: ThrowawayMinio, prefix: str, journal: Path) -> RetryingStorage:
    """The repository's storage with short timeouts and few retries (the
    defaults ride out a dead server for minutes before giving up)."""
    from dbfleet.config import S3Options

    options = S3Options(access_key_env=ACCESS_ENV, secret_key_env=SECRET_ENV)
    inner = S3Storage(
        "backups", prefix, resolve_credentials(options), endpoint=minio.endpoint,
        max_attempts=1, connect_timeout=2, read_timeout=10, abort_journal=journal,
    )  # fmt: skip
    return RetryingStorage(inner, attempts=2, base_delay=0.01)


def test_minio_killed_mid_backup(
    minio: ThrowawayMinio,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = tmp_path / "big.db"
    _database(database, 40 * MiB)
    monkeypatch.setenv("DBFLEET_TEST_THROWAWAY_PW", PASSPHRASE)
    s3 = {"endpoint": minio.endpoint, "access_key_env": ACCESS_ENV, "secret_key_env": SECRET_ENV}
    document = {
        "repositories": {
            "cloud": {
                "url": "s3://backups/fleet",
                "passphrase_env": "DBFLEET_TEST_THROWAWAY_PW",
                "s3": s3,
            }
        },
        "databases": {"big": {"engine": "sqlite", "path": str(database)}},
    }
    inventory = parse_inventory(document)
    repo_ops.init_repository(inventory, "cloud", kdf=FAST_KDF)  # creates the bucket

    storage = _fast_failing(minio, "fleet", tmp_path / "journal")
    assert isinstance(storage.inner, S3Storage)
    killed: list[str] = []

    def kill_on_second_part(request: Any, **_: Any) -> None:
        if "partNumber=2" in request.url and not killed:
            killed.append(request.url)
            minio.kill()  # the part goes out to a dead server

    storage.inner.client.meta.events.register("before-send.s3.UploadPart", kill_on_second_part)
    repos = Repositories(inventory, {"cloud": Repository.open(storage, PASSPHRASE)})
    with caplog.at_level(logging.WARNING, logger="dbfleet"):
        (result,) = backup_many(repos, ["big"])
    assert killed, "the backup never uploaded a pack in parts"

    # the cause is the upload; the lock that could not be removed is a warning
    assert not result.ok and result.error_type == "StorageError"
    assert "put 'data/" in str(result.error) and "locks/" not in str(result.error), result.error
    assert "could not remove the lock locks/" in caplog.text

    minio.start()  # same data directory: what the dead server had is back
    storage.inner.client.meta.events.unregister("before-send.s3.UploadPart", kill_on_second_part)
    (lock,) = list_locks(storage)
    assert lock.pid == os.getpid() and not lock.is_stale()  # ours, and we still run
    storage.delete(lock.name)

    # the parts uploaded before the kill stay; the writer remembered them
    left = storage.unfinished_writes()
    assert left and all(w.name.startswith("data/") and w.abandoned for w in left), left
    assert all(_upload_exists(storage.inner, w) for w in left)
    fresh = Repository.open(storage, PASSPHRASE)
    report = check_repository(fresh)
    assert report.ok, report.errors
    assert any(f"{len(left)} unfinished writes left by" in w for w in report.warnings)

    unlocked = repo_ops.unlock(repos, "cloud")
    assert len(unlocked.unfinished.removed) == len(left) and unlocked.unfinished.failures == []
    assert not any(_upload_exists(storage.inner, w) for w in left)
    assert storage.unfinished_writes() == []
    assert check_repository(fresh).warnings == []


def _upload_exists(storage: S3Storage, write: Any) -> bool:
    """By exact key: MinIO lists an upload from before its restart only so."""
    answer = storage.client.list_multipart_uploads(Bucket="backups", Prefix="fleet/" + write.name)
    return any(u["UploadId"] == write.token for u in answer.get("Uploads", []))
