"""Retention rules (restic's semantics) on synthetic snapshot histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dbfleet.config import RetentionPolicy, parse_duration
from dbfleet.repo import Snapshot
from dbfleet.retention import apply_policy


def _snap(i: int, when: datetime) -> Snapshot:
    snap = Snapshot(database="db", engine="raw", hostname="h", started=when, finished=when)
    snap.id = f"{i:064x}"
    return snap


def _daily_history(days: int) -> list[Snapshot]:
    """Two snapshots a day (02:00 and 14:00) for ``days`` days up to 2026-11-25."""
    end = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    snaps = []
    for d in range(days):
        for hour_offset in (0, 12):
            snaps.append(_snap(len(snaps), end - timedelta(days=d, hours=hour_offset)))
    return snaps


def _kept(decisions: list) -> list[datetime]:  # type: ignore[type-arg]
    return [d.snapshot.finished for d in decisions if d.keep]


def test_empty_policy_keeps_everything() -> None:
    decisions = apply_policy(_daily_history(3), RetentionPolicy())
    assert all(d.keep for d in decisions)


def test_keep_last() -> None:
    decisions = apply_policy(_daily_history(5), RetentionPolicy(keep_last=3))
    assert len(_kept(decisions)) == 3
    assert decisions[0].reasons == ["last 1/3"]


def test_gfs_daily_weekly_monthly_yearly() -> None:
    history = _daily_history(800)  # more than two years
    policy = RetentionPolicy(keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=7)
    decisions = apply_policy(history, policy)
    kept = _kept(decisions)
    # daily: the newest snapshot of each of the 7 newest days (the 14:00 one)
    daily = [d for d in decisions if any(r.startswith("daily") for r in d.reasons)]
    assert len(daily) == 7 and all(d.snapshot.finished.hour == 14 for d in daily)
    assert len({d.snapshot.finished.date() for d in daily}) == 7
    weekly = [d for d in decisions if any(r.startswith("weekly") for r in d.reasons)]
    assert len({d.snapshot.finished.isocalendar()[:2] for d in weekly}) == 4
    monthly = [d for d in decisions if any(r.startswith("monthly") for r in d.reasons)]
    assert len(monthly) == 12
    yearly = [d for d in decisions if any(r.startswith("yearly") for r in d.reasons)]
    assert {d.snapshot.finished.year for d in yearly} == {2026, 2025, 2024}
    # overlaps (the newest snapshot is daily, weekly, monthly and yearly at once)
    assert len(kept) < 7 + 4 + 12 + 3
    assert "daily 1/7" in decisions[0].reasons and "yearly 1/7" in decisions[0].reasons


def test_keep_within_is_relative_to_the_newest_snapshot() -> None:
    decisions = apply_policy(_daily_history(10), RetentionPolicy(keep_within="2d"))
    newest = decisions[0].snapshot.finished
    assert all(newest - t <= timedelta(days=2) for t in _kept(decisions))
    assert len(_kept(decisions)) == 5


def test_pinned_snapshots_are_always_kept() -> None:
    history = _daily_history(5)
    oldest = min(history, key=lambda s: s.finished)
    decisions = apply_policy(history, RetentionPolicy(keep_last=1), pinned={oldest.id})
    kept = {d.snapshot.id for d in decisions if d.keep}
    assert oldest.id in kept and len(kept) == 2
    assert next(d for d in decisions if d.snapshot.id == oldest.id).reasons == ["pinned"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7d", timedelta(days=7)), ("36h", timedelta(hours=36)), ("1y2m", timedelta(days=425))],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "3x", "d7"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
