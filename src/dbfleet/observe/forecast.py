"""Size forecasts from the health history: when a database reaches its
``capacity_bytes``, and when its drill RTO would exceed ``rto``.

Growth is the least-squares line through ``(time, size)`` samples (bytes
per day). The RTO model assumes restore time proportional to size: a drill
that took ``R`` seconds at ``S`` bytes takes ``R * size / S`` later, so it
reaches the target ``T`` at size ``S * T / R``. Both are extrapolations
from a straight line: the database page shows them as such.

Every function returns ``None`` when the history cannot support an answer:
fewer than :data:`MIN_POINTS` samples, spanning less than :data:`MIN_SPAN`,
or a size that does not grow (a forecast of "never" is not shown as a date).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbfleet.catalog import Catalog

MIN_POINTS = 3
MIN_SPAN = timedelta(days=1)
HISTORY = timedelta(days=90)
"""How far back :func:`forecast_database` fits (recent growth matters most)."""
DAY = 86400.0


@dataclass(frozen=True)
class Growth:
    """The fitted line: ``size(t) = size_at_end + bytes_per_day * days after end``."""

    bytes_per_day: float
    size_at_end: float
    """The line's value at ``end`` (not the last raw sample: less noisy)."""
    start: datetime
    end: datetime
    points: int

    def size_at(self, when: datetime) -> float:
        return self.size_at_end + self.bytes_per_day * (when - self.end).total_seconds() / DAY

    def reaches(self, size: float) -> datetime | None:
        """When the line reaches ``size`` (``end`` if it already has);
        ``None`` when it does not grow."""
        if self.size_at_end >= size:
            return self.end
        if self.bytes_per_day <= 0:
            return None
        days = (size - self.size_at_end) / self.bytes_per_day
        if days > 365 * 100:
            return None  # beyond any planning horizon, and beyond datetime soon
        return self.end + timedelta(days=days)


def size_growth(points: Iterable[tuple[datetime, float]]) -> Growth | None:
    """Least-squares growth of ``(taken_at, size_bytes)`` points."""
    series: Sequence[tuple[datetime, float]] = sorted(points)
    if len(series) < MIN_POINTS:
        return None
    start, end = series[0][0], series[-1][0]
    if end - start < MIN_SPAN:
        return None
    xs = [(t - start).total_seconds() / DAY for t, _ in series]
    ys = [float(size) for _, size in series]
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx  # sxx > 0: the span is at least a day
    at_end = mean_y + slope * (xs[-1] - mean_x)
    return Growth(slope, at_end, start, end, n)


@dataclass(frozen=True)
class Forecast:
    growth: Growth
    capacity_bytes: float | None = None
    capacity_reached_at: datetime | None = None
    rto_seconds: float | None = None
    rto_exceeded_at: datetime | None = None
    """When the drill RTO, grown with the size, would exceed ``rto``."""

    def as_dict(self) -> dict[str, Any]:
        def text(when: datetime | None) -> str | None:
            return when.isoformat() if when else None

        return {
            "bytes_per_day": self.growth.bytes_per_day,
            "size_bytes": self.growth.size_at_end,
            "points": self.growth.points,
            "since": text(self.growth.start),
            "until": text(self.growth.end),
            "capacity_bytes": self.capacity_bytes,
            "capacity_reached_at": text(self.capacity_reached_at),
            "rto_seconds": self.rto_seconds,
            "rto_exceeded_at": text(self.rto_exceeded_at),
        }


def rto_exceeded_at(
    growth: Growth, drill_rto_seconds: float, drill_size_bytes: float, rto_seconds: float
) -> datetime | None:
    """When a restore of the growing database would take longer than
    ``rto_seconds``, given a drill of ``drill_size_bytes`` that took
    ``drill_rto_seconds`` (``growth.end`` when it already would)."""
    if drill_rto_seconds <= 0 or drill_size_bytes <= 0:
        return None
    return growth.reaches(drill_size_bytes * rto_seconds / drill_rto_seconds)


def forecast(
    points: Iterable[tuple[datetime, float]],
    *,
    capacity_bytes: float | None = None,
    rto_seconds: float | None = None,
    drill_rto_seconds: float | None = None,
    drill_size_bytes: float | None = None,
) -> Forecast | None:
    """Growth, and the dates each given target is reached; ``None``
    without enough history."""
    growth = size_growth(points)
    if growth is None:
        return None
    reached = growth.reaches(capacity_bytes) if capacity_bytes else None
    exceeded = None
    if rto_seconds and drill_rto_seconds and drill_size_bytes:
        exceeded = rto_exceeded_at(growth, drill_rto_seconds, drill_size_bytes, rto_seconds)
    return Forecast(growth, capacity_bytes, reached, rto_seconds, exceeded)


def forecast_database(
    catalog: Catalog,
    database: str,
    now: datetime,
    *,
    capacity_bytes: float | None = None,
    rto_seconds: float | None = None,
    drill_rto_seconds: float | None = None,
    drill_size_bytes: float | None = None,
) -> Forecast | None:
    """:func:`forecast` of ``database``'s size history of the last
    :data:`HISTORY` (the database page's forecast)."""
    return forecast(
        catalog.size_history(database, now - HISTORY),
        capacity_bytes=capacity_bytes,
        rto_seconds=rto_seconds,
        drill_rto_seconds=drill_rto_seconds,
        drill_size_bytes=drill_size_bytes,
    )
