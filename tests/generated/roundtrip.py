"""The round trip every generated-data and sample test makes: back an engine
up into a fresh in-memory repository (one per Hypothesis case, so cases do
not share state), then restore the snapshot wherever the test says."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from dbfleet.engines.base import Engine
from dbfleet.repo import BackupWriter, Repository, Snapshot
from dbfleet.storage import MemoryStorage
from tests.integration.conftest import FAST_KDF, restore_as

__all__ = ["backed_up", "restore_as"]


def backed_up(engine: Engine) -> tuple[Repository, Snapshot]:
    """A new repository holding one snapshot of ``engine``."""
    repo = Repository.init(MemoryStorage(), "generated", FAST_KDF)
    started = datetime.now(UTC)
    with BackupWriter(repo) as writer:
        meta = engine.backup(writer)
        snapshot = writer.commit(
            Snapshot(
                database="generated", engine=engine.name, hostname=socket.gethostname(),
                started=started, finished=datetime.now(UTC), server_version=meta.server_version,
                tool=meta.tool, tool_version=meta.tool_version, fingerprint=meta.fingerprint,
                consistency_point=meta.consistency_point, options=meta.options,
            )
        )  # fmt: skip
    return repo, snapshot
