"""Test kit for the unit tests: fast key derivation and helpers to back up and
restore byte streams through the real repository code (no mocks)."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime
from pathlib import Path

from dbfleet.repo import BackupWriter, Repository, Snapshot, iter_stream
from dbfleet.storage import LocalStorage, MemoryStorage, Storage

FAST_KDF = {"n": 2**10, "r": 8, "p": 1}
PASSPHRASE = "correct horse battery staple"


class RepoKit:
    """Back up and restore raw byte streams (no engine) through BackupWriter."""

    kdf = FAST_KDF
    passphrase = PASSPHRASE

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self._count = 0

    def memory(self) -> MemoryStorage:
        self._count += 1
        return MemoryStorage(f"unit-{self.tmp_path.name}-{self._count}")

    def local(self, name: str = "repo") -> LocalStorage:
        return LocalStorage(self.tmp_path / name)

    def init(self, storage: Storage | None = None, passphrase: str = PASSPHRASE) -> Repository:
        return Repository.init(storage or self.memory(), passphrase, FAST_KDF)

    def reopen(self, repo: Repository, passphrase: str = PASSPHRASE) -> Repository:
        """A fresh Repository object over the same storage (no cached index)."""
        return Repository.open(repo.storage, passphrase)

    def backup(
        self,
        repo: Repository,
        data: bytes,
        database: str = "db",
        stream: str = "data",
    ) -> Snapshot:
        now = datetime.now(UTC)
        with BackupWriter(repo, workers=2) as writer:
            writer.write_stream(stream, io.BytesIO(data))
            return writer.commit(
                Snapshot(
                    database=database,
                    engine="raw",
                    hostname="unit-test",
                    started=now,
                    finished=datetime.now(UTC),
                )
            )

    def restore(self, repo: Repository, snapshot: Snapshot, stream: str = "data") -> bytes:
        return b"".join(iter_stream(repo, snapshot, stream, workers=2))

    @staticmethod
    def random(size: int, seed: int = 1) -> bytes:
        return random.Random(seed).randbytes(size)

    @staticmethod
    def mixed(size: int, seed: int = 1) -> bytes:
        """Half random bytes, half compressible text; deterministic."""
        rng = random.Random(seed)
        half = size // 2
        words = [b"backup", b"restore", b"chunk", b"pack", b"index", b"snapshot", b"key"]
        text = bytearray()
        while len(text) < size - half:
            text += rng.choice(words) + b" " + str(rng.randint(0, 999)).encode() + b"\n"
        return rng.randbytes(half) + bytes(text[: size - half])
