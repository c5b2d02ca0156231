"""Per database: the newest restorable moment and the start of the recovery
window, as the metrics (``dbfleet_recovery_point_timestamp_seconds``,
``dbfleet_recovery_window_start_timestamp_seconds``) and the pages show them.

- Restorable snapshots are the database's snapshots in its own repository
  (a server entry: its members'), except kinds that only extend another
  snapshot (MySQL binlog captures, :func:`registry.chained_snapshot_kinds`).
  A snapshot is in the repository only once its backup committed, so every
  one listed is good.
- The newest restorable moment is the newest snapshot's end, or later when
  the engine's change log (PostgreSQL WAL, MySQL binlogs; reached through
  :func:`registry.recovery_log`) carries it further without a hole.
- The window starts at the oldest restorable snapshot's end: no restore can
  reach a moment before it.

A server entry's newest moment is its newest member snapshot's (a failing
member shows in the backup failure metrics rather than here). Engines are
reached only through the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dbfleet.config import Inventory
from dbfleet.engines.base import LogCoverage
from dbfleet.engines.registry import chained_snapshot_kinds, recovery_log
from dbfleet.repo import Repository, Snapshot


@dataclass(frozen=True)
class RecoveryWindow:
    database: str
    newest_point: datetime | None
    """The newest restorable moment (``None``: nothing restorable yet)."""
    window_start: datetime | None
    """The oldest restorable moment."""
    newest_snapshot: datetime | None
    """The newest restorable snapshot's end (without the change log)."""
    snapshots: int
    log: LogCoverage | None
    """The change log's reach, where the engine has one and it is in use."""

    def as_dict(self) -> dict[str, Any]:
        def t(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        log = self.log
        return {
            "database": self.database,
            "newest_point": t(self.newest_point),
            "window_start": t(self.window_start),
            "newest_snapshot": t(self.newest_snapshot),
            "snapshots": self.snapshots,
            "stream": log.stream if log else None,
            "log_reaches": t(log.newest_point) if log else None,
            "log_last_archived": t(log.last_archived) if log else None,
            "log_pieces": log.pieces if log else None,
        }


def restorable(snapshots: list[Snapshot], name: str) -> list[Snapshot]:
    """``name``'s snapshots (its members' for a server entry) that restore on
    their own, oldest first."""
    chained = set(chained_snapshot_kinds())
    return sorted(
        (
            s
            for s in snapshots
            if (s.database == name or s.database.startswith(f"{name}/"))
            and s.options.get("kind") not in chained
        ),
        key=lambda s: s.finished,
    )


def recovery_window(
    inventory: Inventory,
    name: str,
    repo: Repository,
    snapshots: list[Snapshot] | None = None,
) -> RecoveryWindow:
    """``name``'s recovery window in ``repo`` (its own repository). Pass
    ``snapshots`` (``repo.list_snapshots()``) to reuse one listing for many
    databases; the engine's change log is listed (names and times only)."""
    engine = inventory.database(name).engine
    listed = repo.list_snapshots() if snapshots is None else snapshots
    mine = restorable(listed, name)
    log_reach = recovery_log(engine)
    coverage = log_reach.coverage(repo, name, listed) if log_reach is not None and mine else None
    newest_snapshot = mine[-1].finished if mine else None
    newest = newest_snapshot
    if coverage is not None and (newest is None or coverage.newest_point > newest):
        newest = coverage.newest_point
    return RecoveryWindow(
        database=name,
        newest_point=newest,
        window_start=mine[0].finished if mine else None,
        newest_snapshot=newest_snapshot,
        snapshots=len(mine),
        log=coverage,
    )
