"""Retention policies: which snapshots to keep, and why (restic's semantics).

Snapshots are grouped per database; within a group they are ordered newest
first and each rule keeps some of them:

- ``keep_last N``: the N newest;
- ``keep_hourly/daily/weekly/monthly/yearly N``: the newest snapshot of each
  of the N newest hours/days/ISO weeks/months/years that have snapshots;
- ``keep_within D``: every snapshot taken within D (e.g. ``2d``, ``36h``,
  ``1y2m``) of the group's newest snapshot;
- pinned snapshots are always kept.

A snapshot is kept if any rule keeps it; the reasons are reported. An empty
policy keeps everything: forgetting needs at least one rule.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from dbfleet.config import RetentionPolicy, parse_duration
from dbfleet.repo.snapshot import Snapshot

__all__ = ["Decision", "RetentionPolicy", "apply_policy", "parse_duration"]


@dataclass
class Decision:
    snapshot: Snapshot
    keep: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {**self.snapshot.summary(), "keep": self.keep, "reasons": self.reasons}


_BUCKETS: list[tuple[str, str, Callable[[datetime], object]]] = [
    ("keep_hourly", "hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("keep_daily", "daily", lambda t: (t.year, t.month, t.day)),
    ("keep_weekly", "weekly", lambda t: t.isocalendar()[:2]),
    ("keep_monthly", "monthly", lambda t: (t.year, t.month)),
    ("keep_yearly", "yearly", lambda t: t.year),
]


def apply_policy(
    snapshots: Iterable[Snapshot], policy: RetentionPolicy, pinned: Collection[str] = ()
) -> list[Decision]:
    """Decisions for one group of snapshots (one database), newest first."""
    ordered = sorted(snapshots, key=lambda s: s.finished, reverse=True)
    decisions = [Decision(s, False) for s in ordered]
    if policy.empty:
        for d in decisions:
            d.keep, d.reasons = True, ["no retention policy"]
        return decisions
    for d in decisions:
        if d.snapshot.id in pinned:
            d.keep = True
            d.reasons.append("pinned")
    for i, d in enumerate(decisions[: policy.keep_last]):
        d.keep = True
        d.reasons.append(f"last {i + 1}/{policy.keep_last}")
    for attr, label, bucket_of in _BUCKETS:
        wanted = int(getattr(policy, attr))
        seen: list[object] = []
        for d in decisions:
            if len(seen) >= wanted:
                break
            bucket = bucket_of(d.snapshot.finished)
            if bucket in seen:
                continue
            seen.append(bucket)
            d.keep = True
            d.reasons.append(f"{label} {len(seen)}/{wanted}")
    if policy.keep_within and decisions:
        newest = decisions[0].snapshot.finished
        horizon = newest - parse_duration(policy.keep_within)
        for d in decisions:
            if d.snapshot.finished >= horizon:
                d.keep = True
                d.reasons.append(f"within {policy.keep_within}")
    return decisions
