"""How far the WAL archive carries a PostgreSQL cluster past its newest base
backup (:class:`~dbfleet.engines.base.RecoveryLog`), for the recovery point
metrics.

The newest restorable moment is when the newest archived segment of the
unbroken run after the newest base backup's first segment reached the
repository (the object's write time from the listing: no object is read).
A segment holds WAL written before it was archived, so that moment is at
most the push latency late; everything committed up to the segment switch
is in it. A hole in the run ends it where recovery would stop.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dbfleet.engines.base import LogCoverage
from dbfleet.engines.postgresql.basebackup import is_base_backup, start_wal_file
from dbfleet.engines.postgresql.wal import database_prefix, parse_object_name, segment_position
from dbfleet.engines.postgresql.wal_check import wal_holes
from dbfleet.repo import Repository, Snapshot

STREAM = "wal"


class WalCoverage:
    stream = STREAM

    def coverage(
        self, repo: Repository, database: str, snapshots: list[Snapshot]
    ) -> LogCoverage | None:
        bases = [s for s in snapshots if s.database == database and is_base_backup(s)]
        if not bases:
            return None
        newest = max(bases, key=lambda s: s.finished)
        start_file = start_wal_file(newest)
        start = segment_position(start_file) or (0, 0)
        found: list[tuple[str, tuple[int, int], float | None]] = []
        for info in repo.storage.list(database_prefix(database)):
            obj = parse_object_name(info.name, info.size)
            position = obj.position if obj is not None else None
            if obj is not None and position is not None:
                found.append((obj.file, position, info.modified))
        if not found:
            return None
        last_any = max((m for _, _, m in found if m is not None), default=None)
        run = [f for f in found if f[0][:8] >= start_file[:8] and f[1] >= start]
        holes = [
            (before, after)
            for before, after in wal_holes(f[0] for f in found)
            if after[:8] >= start_file[:8] and (segment_position(after) or (0, 0)) > start
        ]
        if holes:
            stop = segment_position(holes[0][0]) or start
            run = [f for f in run if f[1] <= stop]
        times = [m for _, _, m in run if m is not None]
        if not times:
            return None
        reached = datetime.fromtimestamp(max(times), UTC)
        return LogCoverage(
            stream=STREAM,
            newest_point=max(reached, newest.finished),
            last_archived=datetime.fromtimestamp(last_any, UTC) if last_any else None,
            pieces=len(run),
        )


WAL_COVERAGE = WalCoverage()
