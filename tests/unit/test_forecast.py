"""Forecasts from known size series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbfleet.catalog import Catalog
from dbfleet.engines.base import HealthSample
from dbfleet.observe.forecast import forecast, forecast_database, rto_exceeded_at, size_growth

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GIB = 1024**3


def linear(
    days: int, start: float, per_day: float, every: timedelta = timedelta(days=1)
) -> list[tuple[datetime, float]]:
    steps = int(timedelta(days=days) / every)
    return [(T0 + i * every, start + per_day * (i * every / timedelta(days=1)))
            for i in range(steps + 1)]  # fmt: skip


def test_exact_line_gives_its_slope_and_the_capacity_date() -> None:
    points = linear(10, 10 * GIB, 1 * GIB)  # 10 GiB growing 1 GiB/day: 20 GiB at day 10
    result = forecast(points, capacity_bytes=50 * GIB)
    assert result is not None
    assert result.growth.bytes_per_day == pytest.approx(GIB)
    assert result.growth.size_at_end == pytest.approx(20 * GIB)
    assert result.capacity_reached_at == T0 + timedelta(days=40)


def test_noise_around_a_line_is_averaged_out() -> None:
    points = [(t, s + (GIB / 10 if i % 2 else -GIB / 10))
              for i, (t, s) in enumerate(linear(20, 0, GIB, timedelta(hours=6)))]  # fmt: skip
    growth = size_growth(points)
    assert growth is not None and growth.bytes_per_day == pytest.approx(GIB, rel=0.01)


def test_not_enough_history_is_none() -> None:
    assert forecast([]) is None
    assert forecast(linear(10, 0, GIB)[:2]) is None  # two points
    assert forecast(linear(1, 0, GIB, timedelta(hours=1))[:20]) is None  # 19 hours


def test_shrinking_or_flat_never_reaches_capacity() -> None:
    flat = forecast(linear(10, 5 * GIB, 0), capacity_bytes=10 * GIB)
    assert flat is not None and flat.capacity_reached_at is None
    shrinking = forecast(linear(10, 9 * GIB, -0.1 * GIB), capacity_bytes=10 * GIB)
    assert shrinking is not None and shrinking.capacity_reached_at is None
    assert shrinking.growth.bytes_per_day < 0


def test_already_full_is_the_last_sample() -> None:
    full = forecast(linear(10, 11 * GIB, GIB), capacity_bytes=10 * GIB)
    assert full is not None and full.capacity_reached_at == T0 + timedelta(days=10)


def test_rto_grows_with_size() -> None:
    growth = size_growth(linear(10, 10 * GIB, GIB))  # 20 GiB at day 10
    assert growth is not None
    # a drill restored 10 GiB in 600 s; the target is 30 min: 30 GiB at 1 GiB/day
    assert rto_exceeded_at(growth, 600, 10 * GIB, 1800) == T0 + timedelta(days=20)
    # already slower than the target at today's size
    assert rto_exceeded_at(growth, 3600, 10 * GIB, 1800) == growth.end
    assert rto_exceeded_at(growth, 0, 10 * GIB, 1800) is None
    result = forecast(linear(10, 10 * GIB, GIB), rto_seconds=1800, drill_rto_seconds=600,
                      drill_size_bytes=10 * GIB)  # fmt: skip
    assert result is not None and result.rto_exceeded_at == T0 + timedelta(days=20)
    assert result.as_dict()["rto_exceeded_at"] == (T0 + timedelta(days=20)).isoformat()


def test_from_the_catalog_history(tmp_path: Path) -> None:
    now = T0 + timedelta(days=10)
    with Catalog(tmp_path / "c.db") as catalog:
        for when, size in linear(10, GIB, GIB):
            catalog.add_health_sample(HealthSample("db", "postgresql", when, True, 0.1,
                                                   size_bytes=size))  # fmt: skip
        # a down sample has no size and does not count
        catalog.add_health_sample(HealthSample("db", "postgresql", now, False, 0.1))
        result = forecast_database(catalog, "db", now, capacity_bytes=21 * GIB)
        assert result is not None and result.growth.points == 11
        assert result.capacity_reached_at == T0 + timedelta(days=20)
        assert forecast_database(catalog, "other", now) is None
