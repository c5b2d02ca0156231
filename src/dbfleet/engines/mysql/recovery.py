"""How far captured binlogs carry a MySQL/MariaDB entry past its newest
dump (:class:`~dbfleet.engines.base.RecoveryLog`), for the recovery point
metrics: the latest event time in the unbroken run of captured files that
follows the newest dump with a binlog position (the run
:func:`dbfleet.engines.mysql.pitr.binlog_run` replays). Reads manifests only.
"""

from __future__ import annotations

from datetime import datetime

from dbfleet.engines.base import LogCoverage
from dbfleet.engines.mysql.binlog import dumps_of, is_binlog
from dbfleet.engines.mysql.pitr import binlog_run
from dbfleet.errors import SnapshotNotFoundError
from dbfleet.repo import Repository, Snapshot

STREAM = "binlog"


def _event_time(snapshot: Snapshot) -> datetime:
    return datetime.fromisoformat(str(snapshot.options["max_event_time"]))


class BinlogCoverage:
    stream = STREAM

    def coverage(
        self, repo: Repository, database: str, snapshots: list[Snapshot]
    ) -> LogCoverage | None:
        captured = [s for s in snapshots if s.database == database and is_binlog(s)]
        if not captured:
            return None
        last_archived = max(s.finished for s in captured)
        for dump in sorted(dumps_of(snapshots, database), key=lambda s: s.finished, reverse=True):
            try:
                run = binlog_run(snapshots, database, dump)
            except SnapshotNotFoundError:
                continue  # this dump's file was never captured: an older dump may have a run
            reached = max(_event_time(s) for s in run)
            return LogCoverage(STREAM, max(reached, dump.finished), last_archived, len(run))
        return None


BINLOG_COVERAGE = BinlogCoverage()
