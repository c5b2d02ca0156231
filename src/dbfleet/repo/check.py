"""``repo check``: prove the repository's structure, and optionally its data.

Without ``read_data``: every index file decrypts; every pack an index names
exists with the recorded size and a header that agrees with the index; every
snapshot decrypts, matches its id, and references only indexed blobs (tree
blobs are read, data chunks are looked up). With ``read_data``: every pack is
read whole, its content hash checked against its name, and every blob
decrypted, decompressed and checked against its id.

Findings are *errors* (data a snapshot needs is missing or damaged: exit 3)
or *warnings* (unreferenced packs left by an interrupted backup, stale locks,
unfinished writes of killed processes: harmless, removed by prune / ``repo
unlock``). *Notes* say what the check left out and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import blake3

from dbfleet.errors import DbfleetError, IntegrityError, NotFoundError
from dbfleet.repo import debris
from dbfleet.repo.index import BlobLocation, Index
from dbfleet.repo.lock import list_locks
from dbfleet.repo.pack import PackedBlob, pack_name, parse_header, read_header
from dbfleet.repo.repository import Repository
from dbfleet.repo.snapshot import decode_tree


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    packs: int = 0
    blobs: int = 0
    snapshots: int = 0
    wal_files: int = 0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "notes": self.notes,
            "packs": self.packs,
            "blobs": self.blobs,
            "snapshots": self.snapshots,
            "wal_files": self.wal_files,
            "bytes_read": self.bytes_read,
        }


def check_repository(
    repo: Repository,
    *,
    read_data: bool = False,
    on_pack: Callable[[int, int], None] | None = None,
) -> CheckReport:
    report = CheckReport()
    started = time.time()
    indexed: dict[str, tuple[int, list[PackedBlob]]] = {}
    for name in repo.list_names("index/"):
        try:
            for pack_id, size, blobs in repo.read_index_file(name):
                indexed[pack_id] = (size, blobs)
        except (DbfleetError, ValueError, KeyError) as exc:
            report.errors.append(f"{name}: cannot be read: {exc}")

    stored = {o.name.rsplit("/", 1)[-1]: o.size for o in repo.storage.list("data/")}
    index = Index()
    for pack_id, (size, blobs) in indexed.items():
        index.add_pack(pack_id, size, blobs)
    repo._index = index  # what is readable on storage now
    report.packs = len(stored)
    report.blobs = len(index)

    for pack_id in sorted(set(stored) - set(indexed)):
        report.warnings.append(
            f"pack {pack_id[:16]} is not in any index (left by an interrupted backup; "
            "prune removes it)"
        )
    done = 0
    for pack_id, (size, blobs) in sorted(indexed.items()):
        done += 1
        if on_pack:
            on_pack(done, len(indexed))
        if pack_id not in stored:
            report.errors.append(f"pack {pack_id[:16]} is in the index but missing from storage")
            continue
        if stored[pack_id] != size:
            report.errors.append(
                f"pack {pack_id[:16]} has {stored[pack_id]} bytes, the index says {size}"
            )
            continue
        try:
            if read_data:
                _read_pack(repo, pack_id, size, blobs, report)
            else:
                header = read_header(repo.storage, repo.key, pack_id, size)
                if header != blobs:
                    report.errors.append(f"pack {pack_id[:16]}: header disagrees with the index")
        except (IntegrityError, NotFoundError) as exc:
            report.errors.append(str(exc))

    for name in repo.list_names("snapshots/"):
        report.snapshots += 1
        snapshot_id = name.removeprefix("snapshots/")
        try:
            snapshot = repo.load_snapshot(snapshot_id)
        except (DbfleetError, ValueError) as exc:
            report.errors.append(f"snapshot {snapshot_id[:8]}: {exc}")
            continue
        for stream in snapshot.streams:
            missing = 0
            try:
                for tree_id in stream.trees:
                    for chunk_id, _length in decode_tree(repo.load_blob(bytes.fromhex(tree_id))):
                        if _location(index.get(chunk_id), stored) is None:
                            missing += 1
            except (DbfleetError, ValueError) as exc:
                report.errors.append(f"snapshot {snapshot_id[:8]} stream {stream.name}: {exc}")
                continue
            if missing:
                report.errors.append(
                    f"snapshot {snapshot_id[:8]} ({snapshot.database}) stream {stream.name}: "
                    f"{missing} chunks are missing"
                )

    for lock in list_locks(repo.storage):
        if lock.is_stale():
            report.warnings.append(f"stale {lock.describe()} (remove with 'dbfleet repo unlock')")
    _report_unfinished(repo, report, started)
    return report


def _location(loc: BlobLocation | None, stored: dict[str, int]) -> BlobLocation | None:
    if loc is None or loc.pack_id not in stored:
        return None
    return loc


def _report_unfinished(repo: Repository, report: CheckReport, now: float) -> None:
    scan = debris.scan_unfinished(repo.storage, now=now)
    hours = debris.DEBRIS_GRACE / 3600
    if scan.error:
        report.notes.append(f"unfinished writes were not looked for: {scan.error}")
    if scan.stale:
        report.warnings.append(
            f"{len(scan.stale)} unfinished writes left by killed or failed writers (temporary "
            f"files or incomplete uploads, older than {hours:g} h or given up; 'dbfleet repo "
            f"unlock' or prune removes them): {debris.describe_unfinished(scan.stale, now)}"
        )
    if scan.recent:
        report.notes.append(
            f"{len(scan.recent)} unfinished writes younger than {hours:g} h left alone (writes "
            "in progress, or of processes killed recently): "
            + debris.describe_unfinished(scan.recent, now)
        )


def _read_pack(
    repo: Repository, pack_id: str, size: int, blobs: list[PackedBlob], report: CheckReport
) -> None:
    what = f"pack {pack_id[:16]}"
    content = repo.storage.get(pack_name(pack_id))
    report.bytes_read += len(content)
    if blake3.blake3(content).hexdigest() != pack_id:
        report.errors.append(f"{what}: content does not match its name (damaged)")
    header = parse_header(repo.key, content, size, what)
    if header != blobs:
        report.errors.append(f"{what}: header disagrees with the index")
    for blob in header:
        try:
            repo.open_blob(
                blob.id, content[blob.offset : blob.offset + blob.length], blob.raw_length
            )
        except IntegrityError as exc:
            report.errors.append(f"{what}: {exc}")
