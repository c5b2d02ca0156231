"""The within-RPO share: exact interval arithmetic on known series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dbfleet.observe.rpo import covered_intervals, within_rpo

END = datetime(2026, 6, 30, tzinfo=UTC)
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
WINDOW = 30 * DAY


def test_no_snapshots_is_never_within() -> None:
    share = within_rpo([], DAY, END)
    assert share.ratio == 0.0 and share.covered_seconds == 0.0
    assert share.breach_seconds == share.longest_breach_seconds == WINDOW.total_seconds()


def test_one_snapshot_covers_exactly_rpo() -> None:
    share = within_rpo([END - 10 * DAY], DAY, END)
    assert share.covered_seconds == DAY.total_seconds()
    assert share.ratio == pytest.approx(1 / 30)
    assert share.longest_breach_seconds == (20 * DAY).total_seconds()


def test_one_snapshot_before_the_window_covers_its_first_part() -> None:
    share = within_rpo([END - WINDOW - 6 * HOUR], DAY, END)
    assert share.covered_seconds == (18 * HOUR).total_seconds()


def test_one_snapshot_at_the_very_end_covers_nothing_yet() -> None:
    assert within_rpo([END], DAY, END).covered_seconds == 0.0


def test_snapshots_after_the_end_are_ignored() -> None:
    assert within_rpo([END + HOUR], DAY, END).ratio == 0.0


def test_daily_snapshots_with_a_gap() -> None:
    """Daily at 00:00 for 30 days with rpo 26h, except day 10 and 11 missed:
    the snapshot of day 9 covers 26h, then 46h uncovered until day 12."""
    start = END - WINDOW
    times = [start + i * DAY for i in range(30) if i not in (10, 11)]
    share = within_rpo(times, 26 * HOUR, END)
    assert share.breach_seconds == (46 * HOUR).total_seconds()
    assert share.longest_breach_seconds == (46 * HOUR).total_seconds()
    assert share.ratio == pytest.approx(1 - 46 / 720)
    merged = covered_intervals(times, 26 * HOUR, start, END)
    assert merged == [(start, start + 9 * DAY + 26 * HOUR), (start + 12 * DAY, END)]


def test_overlapping_and_unsorted_snapshots_count_once() -> None:
    t = END - 5 * DAY
    share = within_rpo([t + HOUR, t, t + 2 * HOUR, t], DAY, END)
    assert share.covered_seconds == (DAY + 2 * HOUR).total_seconds()


def test_fully_covered_window() -> None:
    start = END - WINDOW
    times = [start - HOUR + i * HOUR for i in range(0, 30 * 24 + 1)]
    share = within_rpo(times, 2 * HOUR, END)
    assert share.ratio == 1.0 and share.breach_seconds == 0.0
    assert share.longest_breach_seconds == 0.0


def test_rpo_must_be_positive() -> None:
    with pytest.raises(ValueError):
        within_rpo([END], timedelta(0), END)
