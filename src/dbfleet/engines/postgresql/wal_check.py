"""``repo check`` for the PostgreSQL WAL archive (objects under ``wal/``,
outside the packs that :mod:`dbfleet.repo.check` proves).

Always: every object's name parses; no WAL file is archived twice with
different content; each timeline's segments have no holes between the first
and the last archived one. A hole after the start of a kept base backup is
an *error*: recovery replays up to the hole and then ends, so a restore to
``--latest`` or to a time past it would silently stop short. A hole only
before every base backup's start is a *warning* (no restore needs it).

With ``read_data``: every object is fetched, decrypted, authenticated and
checked against its content id, as ``wal-fetch`` would at restore time.

The segment size is not recorded in object names, so a hole at the very end
of a log (``XXXXXXXX000000FF`` with 16 MiB segments) followed by the next
log's first segment is not seen; every other hole is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from urllib.parse import unquote

from dbfleet.engines.base import ArchiveCopy
from dbfleet.engines.postgresql.basebackup import (
    KIND,
    forget_wal,
    is_base_backup,
    start_wal_file,
    wal_retention,
)
from dbfleet.engines.postgresql.wal import (
    WAL_PREFIX,
    WalObject,
    archived_databases,
    copy_archive,
    list_wal,
    parse_object_name,
    read_object,
    segment_position,
)
from dbfleet.errors import DbfleetError
from dbfleet.repo import Repository, Snapshot
from dbfleet.repo.check import CheckReport


def check_wal_archive(repo: Repository, report: CheckReport, *, read_data: bool = False) -> None:
    """Add the WAL archive's findings to ``report`` (see the module docstring)."""
    databases: set[str] = set()
    for stored in repo.storage.list(WAL_PREFIX):
        rest = stored.name.removeprefix(WAL_PREFIX)
        database, slash, _ = rest.partition("/")
        if not slash or parse_object_name(stored.name, stored.size) is None:
            report.warnings.append(f"{stored.name}: not a WAL archive object (ignored by restore)")
            continue
        databases.add(unquote(database))
    if not databases:
        return
    starts: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for snapshot in repo.list_snapshots():
        if is_base_backup(snapshot):
            position = segment_position(start_wal_file(snapshot))
            if position is not None:
                starts[snapshot.database].append(position)
    for database in sorted(databases):
        objects = list_wal(repo, database)
        report.wal_files += len(objects)
        _check_duplicates(database, objects, report)
        oldest = min(starts[database], default=None)
        for before, after in wal_holes(o.file for o in objects):
            what = f"WAL of {database}: segments between {before} and {after} are missing"
            if oldest is not None and (segment_position(after) or (0, 0)) > oldest:
                report.errors.append(
                    f"{what}; point-in-time recovery of a kept base backup stops before it"
                )
            else:
                report.warnings.append(f"{what} (before every base backup: no restore needs it)")
        if read_data:
            for obj in objects:
                try:
                    report.bytes_read += obj.size
                    read_object(repo, obj)
                except DbfleetError as exc:
                    report.errors.append(f"WAL of {database}: {exc}")


def holes_after(repo: Repository, database: str, start_file: str) -> list[tuple[str, str]]:
    """Holes in ``database``'s archive that recovery from a base backup whose
    first WAL file is ``start_file`` would run into (timelines from the base
    backup's own onward)."""
    start = segment_position(start_file) or (0, 0)
    return [
        (before, after)
        for before, after in wal_holes(o.file for o in list_wal(repo, database))
        if after[:8] >= start_file[:8] and (segment_position(after) or (0, 0)) > start
    ]


def _check_duplicates(database: str, objects: list[WalObject], report: CheckReport) -> None:
    by_file: dict[str, int] = defaultdict(int)
    for obj in objects:
        by_file[obj.file] += 1
    for file, count in sorted(by_file.items()):
        if count > 1:
            report.errors.append(
                f"WAL of {database}: {file} is archived {count} times with different content "
                "(two clusters archive under one name; restore refuses to choose)"
            )


def wal_holes(files: Iterable[str]) -> list[tuple[str, str]]:
    """``(last archived before, first archived after)`` for every hole between
    consecutive archived segments of a timeline (see the module docstring for
    the one kind of hole this cannot see)."""
    by_timeline: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for file in files:
        if len(file) == 24:  # whole segments only: .partial/.backup/.history aside
            position = segment_position(file)
            if position is not None:
                by_timeline[file[:8]].add(position)
    holes: list[tuple[str, str]] = []
    for timeline, positions in sorted(by_timeline.items()):
        ordered = sorted(positions)
        for before, after in zip(ordered, ordered[1:], strict=False):
            (log, seg), (next_log, next_seg) = before, after
            if next_log == log and next_seg == seg + 1:
                continue
            if next_log == log + 1 and next_seg == 0:
                continue  # the previous log may have ended at ``seg``
            holes.append((_name(timeline, before), _name(timeline, after)))
    return holes


def _name(timeline: str, position: tuple[int, int]) -> str:
    return f"{timeline}{position[0]:08X}{position[1]:08X}"


class WalArchive:
    """The PostgreSQL WAL archive as a :class:`~dbfleet.engines.base.ChangeArchive`."""

    snapshot_kind = KIND

    def check(self, repo: Repository, report: CheckReport, *, read_data: bool) -> None:
        check_wal_archive(repo, report, read_data=read_data)

    def databases(self, repo: Repository) -> list[str]:
        return archived_databases(repo)

    def copy(
        self, source: Repository, destination: Repository, database: str, destination_name: str
    ) -> ArchiveCopy:
        return copy_archive(source, destination, database, destination_name)

    def forget(
        self, repo: Repository, database: str, kept: list[Snapshot], *, dry_run: bool
    ) -> list[str]:
        doomed = wal_retention(repo, database, kept)
        if not dry_run:
            forget_wal(repo, doomed)
        return [o.file for o in doomed]


WAL_ARCHIVE = WalArchive()
