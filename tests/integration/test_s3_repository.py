"""A whole dbfleet repository on S3 (the MinIO test server): backup, restore,
check, dedup, interrupted backups and uploads, and the CLI with an s3:// inventory.

MinIO comes from ``scripts/test-servers.sh start minio``; the fixtures are in
``tests/integration/fixtures_s3.py``.
"""

from __future__ import annotations

import io
import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import EndpointConnectionError

from dbfleet.errors import StorageError
from dbfleet.operations.demo import create_sample_database
from dbfleet.repo import BackupWriter, Repository, Snapshot, iter_stream
from dbfleet.repo.check import check_repository
from dbfleet.storage.retry import RetryingStorage
from dbfleet.storage.s3 import S3Storage
from tests.integration.fixtures_s3 import ACCESS_KEY_ENV, SECRET_KEY_ENV, S3Server, new_prefix

MiB = 1024 * 1024
FAST_KDF = {"n": 2**10, "r": 8, "p": 1}
PASSPHRASE = "s3-integration-Passphrase-4b1d"

S3Factory = Callable[..., S3Storage]


def mixed(size: int, seed: int) -> bytes:
    """Half random (incompressible) bytes, half compressible text."""
    rng = random.Random(seed)
    half = size // 2
    words = [b"backup", b"restore", b"chunk", b"pack", b"index", b"snapshot", b"bucket"]
    text = bytearray()
    while len(text) < size - half:
        text += rng.choice(words) + b" " + str(rng.randint(0, 99999)).encode() + b"\n"
    return rng.randbytes(half) + bytes(text[: size - half])


def backup(repo: Repository, source: Any, database: str = "s3db") -> Snapshot:
    started = datetime.now(UTC)
    with BackupWriter(repo, workers=2) as writer:
        writer.write_stream("data", source)
        return writer.commit(
            Snapshot(
                database=database,
                engine="raw",
                hostname="s3-integration",
                started=started,
                finished=datetime.now(UTC),
            )
        )


def restore(repo: Repository, snapshot: Snapshot) -> bytes:
    return b"".join(iter_stream(repo, snapshot, "data", workers=2))


def count_requests(storage: S3Storage, operation: str) -> list[str]:
    sent: list[str] = []
    storage.client.meta.events.register(
        f"before-send.s3.{operation}", lambda request, **_: sent.append(request.url)
    )
    return sent


class FailingSource(io.RawIOBase):
    """A dump that dies after ``fail_after`` bytes, like a dump tool crashing."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        self._data = io.BytesIO(data)
        self._left = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            raise OSError("the dump tool died")
        chunk = self._data.read(min(len(buffer), self._left))
        self._left -= len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.fixture(scope="module")
def data() -> bytes:
    return mixed(40 * MiB, seed=7)


@pytest.fixture
def s3_repo(s3_storage: S3Factory) -> Repository:
    return Repository.init(s3_storage("repo"), PASSPHRASE, FAST_KDF)


def test_backup_restore_check_dedup(s3_repo: Repository, data: bytes) -> None:
    storage = s3_repo.storage
    assert isinstance(storage, S3Storage)
    parts = count_requests(storage, "UploadPart")

    first = backup(s3_repo, io.BytesIO(data))
    packs = {o.name: o.size for o in storage.list("data/")}
    assert len(packs) >= 2, "40 MiB of half-random data fills more than one 16 MiB pack"
    assert any(size > 8 * MiB for size in packs.values())
    assert len(parts) >= 2, "packs above 8 MiB upload in parts"
    assert storage.incomplete_uploads() == []

    reopened = Repository.open(storage, PASSPHRASE)
    assert restore(reopened, reopened.find_snapshot(first.id)) == data
    report = check_repository(reopened, read_data=True)
    assert report.ok, report.errors
    assert report.warnings == []
    assert report.bytes_read == sum(packs.values())

    second = backup(reopened, io.BytesIO(data))
    assert second.added_bytes < 64 * 1024, "the same data again stores only a tree blob"
    assert set(o.name for o in storage.list("data/")) >= set(packs)
    assert restore(reopened, second) == data
    assert [s.id for s in reopened.list_snapshots("s3db")] == [first.id, second.id]
    assert check_repository(Repository.open(storage, PASSPHRASE), read_data=True).ok


def test_interrupted_backup_leaves_a_repository_that_checks(
    s3_repo: Repository, data: bytes
) -> None:
    storage = s3_repo.storage
    assert isinstance(storage, S3Storage)
    small = mixed(MiB, seed=8)
    kept = backup(s3_repo, io.BytesIO(small))
    parts = count_requests(storage, "UploadPart")
    with pytest.raises(OSError, match="dump tool died"):
        backup(s3_repo, FailingSource(data, fail_after=38 * MiB))
    assert parts, "the failed backup had uploaded a pack (in parts) before the dump died"
    reopened = Repository.open(storage, PASSPHRASE)
    assert [s.id for s in reopened.list_snapshots()] == [kept.id]
    report = check_repository(reopened, read_data=True)
    assert report.ok, report.errors
    # packs uploaded before the failure are unreferenced: harmless, prune removes them
    assert report.warnings and all("not in any index" in w for w in report.warnings)
    assert storage.incomplete_uploads() == []
    assert restore(reopened, reopened.find_snapshot(kept.id)) == small


def test_failed_pack_upload_leaves_nothing_check_trips_over(
    s3_storage: S3Factory, data: bytes
) -> None:
    storage = s3_storage("failing", max_attempts=1)
    repo = Repository.init(storage, PASSPHRASE, FAST_KDF)
    kept = backup(repo, io.BytesIO(data[: 2 * MiB]))

    def network_gone(request: Any, **_: Any) -> None:
        if "partNumber=2" in request.url:
            raise EndpointConnectionError(endpoint_url=request.url)

    storage.client.meta.events.register("before-send.s3.UploadPart", network_gone)
    with pytest.raises(StorageError, match="Could not connect"):
        backup(repo, io.BytesIO(data))
    storage.client.meta.events.unregister("before-send.s3.UploadPart", network_gone)

    assert storage.incomplete_uploads() == []
    reopened = Repository.open(storage, PASSPHRASE)
    assert [s.id for s in reopened.list_snapshots()] == [kept.id]
    report = check_repository(reopened, read_data=True)
    assert report.ok, report.errors
    assert all("not in any index" in w for w in report.warnings)


def test_retrying_storage_rides_out_a_failed_part(s3_storage: S3Factory, data: bytes) -> None:
    storage = s3_storage("retrying", max_attempts=1)
    failures = 0

    def one_drop(request: Any, **_: Any) -> None:
        nonlocal failures
        if "partNumber=2" in request.url and failures == 0:
            failures += 1
            raise EndpointConnectionError(endpoint_url=request.url)

    storage.client.meta.events.register("before-send.s3.UploadPart", one_drop)
    retrying = RetryingStorage(storage, base_delay=0.01)
    repo = Repository.init(retrying, PASSPHRASE, FAST_KDF)
    snapshot = backup(repo, io.BytesIO(data[: 20 * MiB]))
    assert failures == 1 and retrying.retries == 1
    assert restore(Repository.open(retrying, PASSPHRASE), snapshot) == data[: 20 * MiB]
    assert storage.incomplete_uploads() == []


# -- the command line ---------------------------------------------------------


def run_dbfleet(
    *args: str | Path, config: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dbfleet", "--config", str(config), *map(str, args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    for stream in (proc.stdout, proc.stderr):
        assert PASSPHRASE not in stream, f"passphrase leaked by {args}"
        assert os.environ[SECRET_KEY_ENV] not in stream, f"S3 secret leaked by {args}"
        assert "Traceback" not in stream, proc.stderr
    return proc


@pytest.fixture
def s3_inventory(s3_server: S3Server, tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    prefix = new_prefix("cli")
    database = tmp_path / "notes.db"
    create_sample_database(database, notes=3000)
    config = tmp_path / "dbfleet.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "repositories": {
                    "cloud": {
                        "url": s3_server.url(prefix),
                        "passphrase_env": "DBFLEET_PASSPHRASE",
                        "s3": {
                            "endpoint": s3_server.endpoint,
                            "region": "us-east-1",
                            "access_key_env": ACCESS_KEY_ENV,
                            "secret_key_env": SECRET_KEY_ENV,
                        },
                    }
                },
                "databases": {"notes": {"engine": "sqlite", "path": str(database)}},
            },
            sort_keys=False,
        )
    )
    yield config, database, prefix
    s3_server.purge(prefix)


def test_cli_on_s3(s3_inventory: tuple[Path, Path, str], s3_server: S3Server) -> None:
    config, database, prefix = s3_inventory
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBFLEET_", "AWS_"))}
    env.update(
        {
            "DBFLEET_PASSPHRASE": PASSPHRASE,
            ACCESS_KEY_ENV: os.environ[ACCESS_KEY_ENV],
            SECRET_KEY_ENV: os.environ[SECRET_KEY_ENV],
            "AWS_SHARED_CREDENTIALS_FILE": str(config.parent / "no-credentials-file"),
            "COLUMNS": "200",
            "DBFLEET_CACHE_DIR": str(config.parent / "cache"),
        }
    )

    init = run_dbfleet("repo", "init", config=config, env=env)
    assert init.returncode == 0, init.stderr
    assert s3_server.url(prefix) in init.stdout

    backup_run = run_dbfleet("backup", "notes", "--json", config=config, env=env)
    assert backup_run.returncode == 0, backup_run.stderr
    (result,) = json.loads(backup_run.stdout)
    assert result["ok"] is True and result["database"] == "notes"

    listed = run_dbfleet("snapshots", "--json", config=config, env=env)
    assert listed.returncode == 0, listed.stderr
    (snapshot,) = json.loads(listed.stdout)
    assert snapshot["id"] == result["snapshot"]
    assert snapshot["size"] == database.stat().st_size
    # the remote repository's manifest is now cached (sealed) for the next command
    cached = [p.name for p in (config.parent / "cache").rglob("*") if p.is_file()]
    assert result["snapshot"] in cached

    verify = run_dbfleet("verify", "notes:latest", "--json", config=config, env=env)
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["ok"] is True

    check = run_dbfleet("repo", "check", "--read-data", "--json", config=config, env=env)
    assert check.returncode == 0, check.stderr
    (report,) = json.loads(check.stdout)
    assert report["ok"] is True and report["snapshots"] == 1

    restored = config.parent / "restored.db"
    restore_run = run_dbfleet("restore", "notes:latest", "--to", restored, config=config, env=env)
    assert restore_run.returncode == 0, restore_run.stderr
    with closing(sqlite3.connect(restored)) as a, closing(sqlite3.connect(database)) as b:
        query = "SELECT * FROM notes ORDER BY rowid"
        assert a.execute(query).fetchall() == b.execute(query).fetchall()

    # without credentials: one line that says where dbfleet looked, exit 2
    no_creds = {k: v for k, v in env.items() if k not in (ACCESS_KEY_ENV, SECRET_KEY_ENV)}
    denied = run_dbfleet("snapshots", config=config, env=no_creds)
    assert denied.returncode == 2
    lines = denied.stderr.strip().splitlines()
    assert len(lines) == 1 and "no S3 credentials" in lines[0], denied.stderr
    assert ACCESS_KEY_ENV in lines[0] and "no-credentials-file" in lines[0]
