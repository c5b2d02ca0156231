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

A consistent view while backups commit next to it: a check takes a shared
lock, so backups (shared too) run at the same time, and each of them writes
its packs, then its index file, then its snapshot. So the check lists the
snapshots *first*: every index file and pack that those snapshots need is
then in the listings that follow. Snapshots committed after that first
listing are not judged (a note names them; the next check does), and packs
that a backup indexed while the check ran are not reported as unindexed.
Should a snapshot still seem to miss a blob (storage whose listings lag
behind its writes), the check reads the index files that appeared since and
lists the packs again before it reports anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import blake3

from dbfleet.errors import DbfleetError, IntegrityError, NotFoundError
from dbfleet.repo import debris
from dbfleet.repo.index import Index
from dbfleet.repo.lock import list_locks
from dbfleet.repo.pack import PackedBlob, pack_name, parse_header, read_header
from dbfleet.repo.repository import Repository
from dbfleet.repo.snapshot import Snapshot, decode_tree


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


class _View:
    """The index files and packs the check judges snapshots against."""

    def __init__(self, repo: Repository, report: CheckReport) -> None:
        self.repo = repo
        self.report = report
        self.index = Index()
        self.index_files: set[str] = set()
        self.indexed: dict[str, tuple[int, list[PackedBlob]]] = {}
        """Packs named by the index files of the first listing."""
        self.late_packs: set[str] = set()
        """Packs named only by index files that appeared later."""
        self.stored: dict[str, int] = {}
        self.refreshed = False

    def load(self) -> None:
        for name in self.repo.list_names("index/"):
            self.index_files.add(name)
            for pack_id, size, blobs in self._read(name):
                self.indexed[pack_id] = (size, blobs)
        for pack_id, (size, blobs) in self.indexed.items():
            self.index.add_pack(pack_id, size, blobs)
        self.stored = self._list_packs()

    def refresh(self, *, packs: bool = True) -> None:
        """Add the index files written since :meth:`load` (by backups that
        committed meanwhile); with ``packs``, list the packs again."""
        for name in self.repo.list_names("index/"):
            if name in self.index_files:
                continue
            self.index_files.add(name)
            for pack_id, size, blobs in self._read(name):
                if pack_id not in self.indexed:
                    self.late_packs.add(pack_id)
                    self.index.add_pack(pack_id, size, blobs)
        if packs:
            self.stored = self._list_packs()
            self.refreshed = True

    def _read(self, name: str) -> list[tuple[str, int, list[PackedBlob]]]:
        try:
            return self.repo.read_index_file(name)
        except (DbfleetError, ValueError, KeyError) as exc:
            self.report.errors.append(f"{name}: cannot be read: {exc}")
            return []

    def _list_packs(self) -> dict[str, int]:
        return {o.name.rsplit("/", 1)[-1]: o.size for o in self.repo.storage.list("data/")}

    def has(self, chunk_id: bytes) -> bool:
        loc = self.index.get(chunk_id)
        return loc is not None and loc.pack_id in self.stored


def check_repository(
    repo: Repository,
    *,
    read_data: bool = False,
    on_pack: Callable[[int, int], None] | None = None,
) -> CheckReport:
    report = CheckReport()
    started = time.time()
    snapshot_names = repo.list_names("snapshots/")  # first: see the module docstring
    view = _View(repo, report)
    view.load()
    repo.adopt_index(view.index, view.index_files)  # what is readable on storage now
    report.packs = len(view.stored)
    report.blobs = len(view.index)

    for done, (pack_id, (size, blobs)) in enumerate(sorted(view.indexed.items()), start=1):
        if on_pack:
            on_pack(done, len(view.indexed))
        _check_pack(repo, pack_id, size, blobs, view.stored, report, read_data)

    for name in snapshot_names:
        report.snapshots += 1
        _check_snapshot(repo, name.removeprefix("snapshots/"), view, report)

    view.refresh(packs=False)  # packs that backups indexed meanwhile are not leftovers
    for pack_id in sorted(set(view.stored) - set(view.indexed) - view.late_packs):
        report.warnings.append(
            f"pack {pack_id[:16]} is not in any index (left by an interrupted backup, "
            "or written by one still running; prune removes leftovers)"
        )
    for lock in list_locks(repo.storage):
        if lock.is_stale():
            report.warnings.append(f"stale {lock.describe()} (remove with 'dbfleet repo unlock')")
    _report_unfinished(repo, report, started)

    late = sorted(set(repo.list_names("snapshots/")) - set(snapshot_names))
    if late:
        ids = ", ".join(n.removeprefix("snapshots/")[:8] for n in late[:10])
        report.notes.append(
            f"{len(late)} snapshots committed while the check ran were not checked "
            f"({ids}{', ...' if len(late) > 10 else ''}); the next check includes them"
        )
    return report


def _check_pack(
    repo: Repository,
    pack_id: str,
    size: int,
    blobs: list[PackedBlob],
    stored: dict[str, int],
    report: CheckReport,
    read_data: bool,
) -> None:
    if pack_id not in stored:
        report.errors.append(f"pack {pack_id[:16]} is in the index but missing from storage")
        return
    if stored[pack_id] != size:
        report.errors.append(
            f"pack {pack_id[:16]} has {stored[pack_id]} bytes, the index says {size}"
        )
        return
    try:
        if read_data:
            _read_pack(repo, pack_id, size, blobs, report)
        else:
            header = read_header(repo.storage, repo.key, pack_id, size)
            if header != blobs:
                report.errors.append(f"pack {pack_id[:16]}: header disagrees with the index")
    except (IntegrityError, NotFoundError) as exc:
        report.errors.append(str(exc))


def _check_snapshot(repo: Repository, snapshot_id: str, view: _View, report: CheckReport) -> None:
    try:
        snapshot = repo.load_snapshot(snapshot_id)
    except (DbfleetError, ValueError) as exc:
        report.errors.append(f"snapshot {snapshot_id[:8]}: {exc}")
        return
    problems = _snapshot_problems(repo, snapshot, view)
    if problems and not view.refreshed:
        view.refresh()  # listings that lag behind writes: look once more
        problems = _snapshot_problems(repo, snapshot, view)
    report.errors.extend(problems)


def _snapshot_problems(repo: Repository, snapshot: Snapshot, view: _View) -> list[str]:
    snapshot_id, database = snapshot.id, snapshot.database
    problems = []
    for stream in snapshot.streams:
        missing = 0
        try:
            for tree_id in stream.trees:
                for chunk_id, _length in decode_tree(repo.load_blob(bytes.fromhex(tree_id))):
                    if not view.has(chunk_id):
                        missing += 1
        except (DbfleetError, ValueError) as exc:
            problems.append(f"snapshot {snapshot_id[:8]} stream {stream.name}: {exc}")
            continue
        if missing:
            problems.append(
                f"snapshot {snapshot_id[:8]} ({database}) stream {stream.name}: "
                f"{missing} chunks are missing"
            )
    return problems


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
