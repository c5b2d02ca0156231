"""``copy``: snapshots from one repository to another (3-2-1), without
touching the database again and without uploading chunks the destination
already has.

Repositories have their own keys, so chunk ids differ between them: each
chunk is read and verified from the source, named with the destination's
key, and stored only if the destination lacks it. Chunk boundaries are kept
from the source, so copies of related snapshots deduplicate against each
other. A copied snapshot records its origin; copying it again is a no-op.

The PostgreSQL WAL archive of a database whose snapshots are copied goes
along (files the destination lacks), so the second site can do
point-in-time recovery too. ``wal-push`` itself writes only to the
database's own repository (archiving latency matters); a ``copy`` run or a
scheduled ``copy`` job carries the WAL over.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from dbfleet.engines.base import ArchiveCopy
from dbfleet.engines.registry import change_archives
from dbfleet.errors import UsageError
from dbfleet.operations.common import Repositories, matches_database
from dbfleet.repo import BackupWriter, Repository, Snapshot
from dbfleet.repo.lock import repository_lock


@dataclass
class CopyResult:
    source_snapshot: str
    database: str
    destination: str
    snapshot: str | None
    copied: bool
    """False when the destination already had this snapshot."""
    added_bytes: int = 0
    size: int = 0
    duration_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _chunks(source: Repository, snapshot: Snapshot, stream: str) -> Iterator[bytes]:
    for blob_id, _length in source.stream_chunks(snapshot, stream):
        yield source.load_blob(blob_id)


def already_copied(destination: Repository) -> set[tuple[str, str]]:
    return {
        (s.origin["repository"], s.origin["snapshot"])
        for s in destination.list_snapshots()
        if s.origin
    }


def copy_snapshot(
    source: Repository,
    destination: Repository,
    snapshot: Snapshot,
    destination_name: str,
    copied_before: set[tuple[str, str]] | None = None,
) -> CopyResult:
    """Copy one snapshot. ``copied_before`` (from :func:`already_copied`) saves
    re-reading every destination manifest when copying many snapshots."""
    began = time.monotonic()
    origin = {"repository": str(source.config["id"]), "snapshot": snapshot.id}
    if copied_before is None:
        copied_before = already_copied(destination)
    if (origin["repository"], origin["snapshot"]) in copied_before:
        return CopyResult(snapshot.id, snapshot.database, destination_name, None, False)
    with (
        repository_lock(destination.storage, exclusive=False, operation="copy"),
        BackupWriter(destination) as writer,
    ):
        for stream in snapshot.streams:
            writer.write_chunks(
                stream.name, _chunks(source, snapshot, stream.name), stream.media_type
            )
        copy = snapshot.model_copy(update={"streams": [], "origin": origin, "id": ""})
        copy = writer.commit(copy)
    return CopyResult(
        snapshot.id,
        snapshot.database,
        destination_name,
        copy.id,
        True,
        added_bytes=copy.added_bytes,
        size=copy.size,
        duration_seconds=round(time.monotonic() - began, 3),
    )


def copy_snapshots(
    repos: Repositories,
    *,
    source: str,
    destination: str,
    selectors: list[str] | None = None,
    databases: list[str] | None = None,
) -> list[CopyResult]:
    """Copy the named snapshots (or every snapshot of ``databases``, or all)."""
    src = repos.get(source)
    dst = repos.get(destination)
    if src.config["id"] == dst.config["id"]:
        raise UsageError("source and destination are the same repository")
    if selectors:
        chosen = [repos.locate(s, repository=source)[1] for s in selectors]
    else:
        chosen = [
            s
            for s in src.list_snapshots()
            if not databases or matches_database(s.database, databases)
        ]
    with repository_lock(src.storage, exclusive=False, operation="copy"):
        copied_before = already_copied(dst)  # read the destination's manifests once
        return [copy_snapshot(src, dst, snap, destination, copied_before) for snap in chosen]


def copy_wal_archives(
    repos: Repositories,
    *,
    source: str,
    destination: str,
    databases: list[str] | None = None,
) -> list[ArchiveCopy]:
    """Copy the WAL archives of ``databases`` (default: every archive in the
    source) that the destination lacks; see the module docstring."""
    src = repos.get(source)
    dst = repos.get(destination)
    with (
        repository_lock(src.storage, exclusive=False, operation="copy"),
        repository_lock(dst.storage, exclusive=False, operation="copy"),
    ):
        return [
            archive.copy(src, dst, name, destination)
            for archive in change_archives()
            for name in archive.databases(src)
            if not databases or matches_database(name, databases)
        ]
