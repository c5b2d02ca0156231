"""Prune: delete data no snapshot references; repack packs that are mostly garbage.

Memory stays bounded: the set of blobs that snapshots use is kept in a
temporary on-disk SQLite table (not a Python set), and index files are read
one at a time, so memory does not grow with the repository (restic's prune
holds several copies of its index in memory).

Crash safety, by write order:

1. repack: copy the used blobs of mostly-garbage packs into new packs;
2. write new index files describing every surviving blob;
3. delete the old index files;
4. delete packs that are now unreferenced (fully unused, repacked, or
   leftovers of interrupted backups);
5. remove unfinished writes (temporary files, incomplete uploads) of killed
   processes older than :data:`dbfleet.repo.debris.DEBRIS_GRACE`.

A crash after 1 or 2 leaves duplicate but valid entries; after 3, only
unreferenced packs, which ``repo check`` reports as harmless and the next
prune removes. Every remaining snapshot restores at every point.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dbfleet.errors import IntegrityError
from dbfleet.repo.debris import remove_stale_unfinished, scan_unfinished
from dbfleet.repo.pack import TARGET_PACK_SIZE, PackBuilder, PackedBlob, pack_name
from dbfleet.repo.repository import Repository
from dbfleet.repo.snapshot import decode_tree

INDEX_PACKS_PER_FILE = 4096
DEFAULT_REPACK_THRESHOLD = 0.5


@dataclass
class PruneStats:
    snapshots: int = 0
    used_blobs: int = 0
    packs_total: int = 0
    packs_kept: int = 0
    packs_deleted: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    bytes_before: int = 0
    bytes_deleted: int = 0
    bytes_written: int = 0
    index_files_written: int = 0
    index_files_deleted: int = 0
    unindexed_packs_deleted: int = 0
    unfinished_writes_removed: int = 0
    """Dry run: how many would be removed."""
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _UsedBlobs:
    """A disk-backed set of blob ids (SQLite in a private temp dir)."""

    def __init__(self, directory: Path) -> None:
        self._db = sqlite3.connect(directory / "used.db")
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("PRAGMA cache_size = -16384")  # 16 MiB page cache at most
        self._db.execute("CREATE TABLE used (id BLOB PRIMARY KEY) WITHOUT ROWID")
        self._db.execute("CREATE TABLE found (id BLOB PRIMARY KEY) WITHOUT ROWID")

    def add_many(self, ids: list[bytes]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO used VALUES (?)", ((i,) for i in ids))

    def found_in_index(self, ids: list[bytes]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO found VALUES (?)", ((i,) for i in ids))

    def missing(self) -> int:
        """Used blobs that no index names."""
        query = "SELECT count(*) FROM used WHERE id NOT IN (SELECT id FROM found)"
        return int(self._db.execute(query).fetchone()[0])

    def __contains__(self, blob_id: bytes) -> bool:
        row = self._db.execute("SELECT 1 FROM used WHERE id = ?", (blob_id,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM used").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def _mark_used(repo: Repository, used: _UsedBlobs, stats: PruneStats) -> None:
    for name in repo.list_names("snapshots/"):
        snapshot = repo.load_snapshot(name.removeprefix("snapshots/"))
        stats.snapshots += 1
        for stream in snapshot.streams:
            trees = [bytes.fromhex(t) for t in stream.trees]
            used.add_many(trees)
            for tree_id in trees:
                used.add_many([chunk_id for chunk_id, _ in decode_tree(repo.load_blob(tree_id))])
    stats.used_blobs = len(used)


def _index_entries(repo: Repository) -> Iterator[tuple[str, str, int, list[PackedBlob]]]:
    """(index file, pack id, pack size, blobs), one index file in memory at a time."""
    for name in repo.list_names("index/"):
        for pack_id, size, blobs in repo.read_index_file(name):
            yield name, pack_id, size, blobs


def prune(
    repo: Repository,
    *,
    dry_run: bool = False,
    repack_threshold: float = DEFAULT_REPACK_THRESHOLD,
    on_progress: Callable[[str], None] | None = None,
) -> PruneStats:
    """Remove unreferenced data. The caller holds the exclusive lock."""
    say = on_progress or (lambda _m: None)
    if not dry_run:
        repo.require_admin("prune")
    stats = PruneStats(dry_run=dry_run)
    stored = {o.name.rsplit("/", 1)[-1]: o.size for o in repo.storage.list("data/")}
    stats.packs_total = len(stored)
    stats.bytes_before = sum(stored.values())
    with tempfile.TemporaryDirectory(prefix="dbfleet-prune-") as tmp:
        used = _UsedBlobs(Path(tmp))
        with closing(used):
            say("finding the blobs that snapshots use")
            _mark_used(repo, used, stats)
            say("classifying packs")
            plan = _classify(repo, used, stored, stats, repack_threshold)
            if dry_run:
                stats.unfinished_writes_removed = len(scan_unfinished(repo.storage).stale)
                return stats
            _execute(repo, used, plan, stored, stats, say)
    say("removing unfinished writes of killed processes")
    debris = remove_stale_unfinished(repo.storage)
    stats.unfinished_writes_removed = len(debris.removed)
    if debris.removed:
        stats.notes.append(f"removed {len(debris.removed)} unfinished writes of killed processes")
    stats.notes.extend(debris.failures)  # never fails the prune: the data part is done
    return stats


@dataclass
class _Plan:
    keep: set[str] = field(default_factory=set)
    repack: set[str] = field(default_factory=set)
    delete: set[str] = field(default_factory=set)
    seen_index: set[str] = field(default_factory=set)


def _classify(
    repo: Repository,
    used: _UsedBlobs,
    stored: dict[str, int],
    stats: PruneStats,
    threshold: float,
) -> _Plan:
    plan = _Plan()
    for _name, pack_id, size, blobs in _index_entries(repo):
        if pack_id in plan.seen_index or pack_id not in stored:
            continue
        plan.seen_index.add(pack_id)
        in_use = [b for b in blobs if b.id in used]
        used.found_in_index([b.id for b in in_use])
        used_bytes = sum(b.length for b in in_use)
        if used_bytes == 0:
            plan.delete.add(pack_id)
        elif used_bytes < size * (1 - threshold):
            plan.repack.add(pack_id)
        else:
            plan.keep.add(pack_id)
    unindexed = set(stored) - plan.seen_index
    plan.delete |= unindexed
    stats.unindexed_packs_deleted = len(unindexed)
    stats.packs_kept = len(plan.keep)
    stats.packs_repacked = len(plan.repack)
    stats.packs_deleted = len(plan.delete)
    stats.bytes_deleted = sum(stored[p] for p in plan.delete | plan.repack)
    missing = used.missing()
    if missing:
        # A snapshot needs a blob that no index (or no existing pack) has:
        # the repository is damaged, and deleting anything could make it worse.
        raise IntegrityError(
            f"{missing} blobs that snapshots use are not in any index; not pruning",
            hint="run 'dbfleet repo check' first",
        )
    return plan


def _execute(
    repo: Repository,
    used: _UsedBlobs,
    plan: _Plan,
    stored: dict[str, int],
    stats: PruneStats,
    say: Callable[[str], None],
) -> None:
    new_packs: list[tuple[str, int, list[PackedBlob]]] = []
    if plan.repack:
        say(f"repacking {len(plan.repack)} packs")
        new_packs = _repack(repo, used, plan)
        stats.packs_written = len(new_packs)
        stats.bytes_written = sum(size for _, size, _ in new_packs)

    say("writing the new index")
    old_index_files = repo.list_names("index/")
    batch: list[tuple[str, int, list[PackedBlob]]] = list(new_packs)
    written: set[str] = {p for p, _, _ in new_packs}
    for _name, pack_id, size, blobs in _index_entries(repo):
        if pack_id in plan.keep and pack_id not in written:
            written.add(pack_id)
            batch.append((pack_id, size, blobs))
            if len(batch) >= INDEX_PACKS_PER_FILE:
                repo.write_index_file(batch)
                stats.index_files_written += 1
                batch = []
    if batch:
        repo.write_index_file(batch)
        stats.index_files_written += 1

    say("deleting the old index and unused packs")
    for name in old_index_files:
        repo.storage.delete(name)
    stats.index_files_deleted = len(old_index_files)
    for pack_id in sorted(plan.delete | plan.repack):
        repo.storage.delete(pack_name(pack_id))
    repo._index = None  # noqa: SLF001 - reload on next use


def _repack(
    repo: Repository, used: _UsedBlobs, plan: _Plan
) -> list[tuple[str, int, list[PackedBlob]]]:
    """Copy the used blobs of ``plan.repack`` packs into new packs (stored
    bytes are copied as they are: no re-encryption needed)."""
    written: list[tuple[str, int, list[PackedBlob]]] = []
    builder = PackBuilder()
    copied: set[bytes] = set()

    def flush() -> None:
        nonlocal builder
        if len(builder):
            pack_id, content = builder.finish(repo.key)
            repo.storage.put(pack_name(pack_id), content)
            written.append((pack_id, len(content), builder.blobs))
            builder = PackBuilder()

    done: set[str] = set()
    for _name, pack_id, _size, blobs in _index_entries(repo):
        if pack_id not in plan.repack or pack_id in done:
            continue
        done.add(pack_id)
        content = repo.storage.get(pack_name(pack_id))
        for blob in blobs:
            # A blob also present in a kept pack is copied anyway: a harmless
            # duplicate, cheaper than holding the whole index to find out.
            if blob.id not in used or blob.id in copied:
                continue
            stored_blob = content[blob.offset : blob.offset + blob.length]
            repo.open_blob(blob.id, stored_blob, blob.raw_length)  # verify before copying
            builder.add(blob.type, blob.id, stored_blob, blob.raw_length)
            copied.add(blob.id)
            if builder.size >= TARGET_PACK_SIZE:
                flush()
    flush()
    return written
