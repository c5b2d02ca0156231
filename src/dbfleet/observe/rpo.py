"""The share of a time window a database spent within its RPO.

At an instant ``x`` a database is *within RPO* when its newest snapshot
finished at or before ``x`` is at most ``rpo`` old. Each snapshot at ``t``
therefore covers ``[t, t + rpo]``; the covered time is the length of the
union of those intervals clipped to the window, and the share is that over
the window's length. Exact interval arithmetic (no sampling), so a gap of
one minute over the RPO costs exactly one minute.

Snapshots before the window still count: one taken an hour before the window
starts covers its first ``rpo - 1h``. Snapshots after ``end`` are ignored
(they cannot make the past compliant).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class WithinRpo:
    """``ratio`` (0..1) of ``window_seconds`` covered, and the uncovered
    ``breach_seconds``; ``longest_breach_seconds`` is the longest uncovered
    stretch."""

    ratio: float
    window_seconds: float
    covered_seconds: float
    breach_seconds: float
    longest_breach_seconds: float


def covered_intervals(
    times: Iterable[datetime], rpo: timedelta, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The merged ``[t, t + rpo]`` intervals clipped to ``[start, end]``, in order."""
    merged: list[tuple[datetime, datetime]] = []
    for t in sorted(t for t in times if t <= end):
        lo, hi = max(t, start), min(t + rpo, end)
        if hi <= lo:
            continue
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def within_rpo(
    times: Iterable[datetime],
    rpo: timedelta,
    end: datetime,
    window: timedelta = WINDOW,
) -> WithinRpo:
    """How much of ``[end - window, end]`` had a snapshot at most ``rpo`` old."""
    if rpo <= timedelta(0) or window <= timedelta(0):
        raise ValueError("rpo and window must be positive")
    start = end - window
    intervals = covered_intervals(times, rpo, start, end)
    covered = sum((hi - lo).total_seconds() for lo, hi in intervals)
    gaps, cursor = [], start
    for lo, hi in intervals:
        gaps.append((lo - cursor).total_seconds())
        cursor = hi
    gaps.append((end - cursor).total_seconds())
    total = window.total_seconds()
    return WithinRpo(
        ratio=covered / total,
        window_seconds=total,
        covered_seconds=covered,
        breach_seconds=total - covered,
        longest_breach_seconds=max(gaps),
    )
