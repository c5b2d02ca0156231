"""Where a database's recovery point stands: :func:`recovery_into` fills a
compliance row's recovery fields from the repository (the newest restorable
moment by :func:`dbfleet.observe.recovery.recovery_window`, its age against
the RPO, copies, and the 30-day within-RPO share)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dbfleet.config import Inventory
from dbfleet.engines.registry import chained_snapshot_kinds
from dbfleet.errors import DbfleetError
from dbfleet.freshness import Freshness
from dbfleet.observe.recovery import recovery_window
from dbfleet.observe.rpo import WINDOW, within_rpo
from dbfleet.observe.snapshots import RepositorySource, SnapshotInfo, SnapshotTimes, belongs

if TYPE_CHECKING:
    from dbfleet.observe.estate import ComplianceRow


def snapshots_of(
    inventory: Inventory, repositories: RepositorySource, times: SnapshotTimes, name: str
) -> list[SnapshotInfo]:
    """``name``'s snapshots (a server entry's: its members'), oldest first.
    Raises :class:`DbfleetError` when its repository cannot be read."""
    repo_name = inventory.database(name).repository
    if repo_name is None:
        return []
    entry = inventory.split_member(name)[0]
    found = times.snapshots(repo_name, repositories.get(repo_name), entry)
    return found if entry == name else [s for s in found if belongs(s.database, name)]


def recovery_into(
    row: ComplianceRow,
    inventory: Inventory,
    repositories: RepositorySource,
    times: SnapshotTimes,
    item: Freshness,
    rpo: timedelta | None,
    now: datetime,
    first_seen: datetime | None = None,
) -> None:
    """The recovery point (:func:`dbfleet.observe.recovery.recovery_window`:
    the newest snapshot, carried further by a WAL/binlog archive without a
    hole), its age against the RPO, copies (``item``: the freshness check of
    the repository and its ``copy_to``), and the 30-day share."""
    row.stale_copies = list(item.stale_copies)
    if item.state == "error" or row.repository is None:
        row.rpo_state = "error"
        row.repository_error = item.error
        return
    try:
        repo = repositories.get(row.repository)
        # the entry's own snapshots (its members', its WAL/binlog pieces):
        # what recovery_window filters the listing down to anyway
        entry = inventory.split_member(row.database)[0]
        manifests = times.manifests(row.repository, repo, entry)
        window = recovery_window(inventory, row.database, repo, manifests)
        chained = set(chained_snapshot_kinds())
        series = [s.time for s in snapshots_of(inventory, repositories, times, row.database)
                  if s.kind not in chained]  # fmt: skip
    except DbfleetError as exc:
        row.rpo_state, row.repository_error = "error", str(exc)
        return
    if window.newest_point is not None:
        row.recovery_point = window.newest_point.isoformat()
        row.recovery_point_age_seconds = round((now - window.newest_point).total_seconds(), 3)
    if window.window_start is not None:
        row.recovery_window_start = window.window_start.isoformat()
    row.recovery_log = window.log.stream if window.log is not None else None
    if rpo is None:
        row.rpo_state = "no-rpo"
    elif window.newest_point is None or now - window.newest_point > rpo or row.stale_copies:
        row.rpo_state = "stale"
    else:
        row.rpo_state = "fresh"
    row.snapshots_30d = sum(1 for t in series if now - WINDOW <= t <= now)
    if rpo is None:
        return
    # The window starts when dbfleet began looking after the database (its
    # first snapshot or first recorded backup run, whichever is older), so a database
    # added yesterday is not charged 29 days it was not in the inventory.
    known = [t for t in (series[0] if series else None, first_seen) if t is not None]
    span = min(WINDOW, now - min(known)) if known else WINDOW
    if span <= timedelta(0):
        return
    share = within_rpo(series, rpo, now, span)
    row.within_rpo_since = (now - span).isoformat()
    row.within_rpo_30d = round(share.ratio, 6)
    row.breach_seconds_30d = round(share.breach_seconds, 3)
