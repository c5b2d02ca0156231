"""Cron expressions in a time zone, on top of cronsim.

Five fields (minute hour day-of-month month day-of-week) with the usual
syntax (``*/15``, ``1-5``, ``MON-FRI``, ``L``, ``6#1``), or one of the
aliases ``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly``,
``@yearly``/``@annually``. Expressions are evaluated in the schedule's time
zone (UTC unless ``timezone:`` says otherwise); daylight-saving gaps and
overlaps follow cronsim (a time that does not exist runs at the first instant
after the gap; an ambiguous time runs once). Fire times are returned in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MICROSECOND = timedelta(microseconds=1)


def normalize(expression: str) -> str:
    """Aliases expanded, whitespace collapsed; ``ValueError`` when invalid."""
    text = " ".join(expression.split())
    text = ALIASES.get(text.lower(), text)
    if len(text.split()) != 5:
        raise ValueError(
            f"invalid cron expression {expression!r}: use five fields "
            "(minute hour day-of-month month day-of-week) or @hourly/@daily/@weekly/@monthly"
        )
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None
    return text


def zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like Europe/Berlin)"
        ) from None


class Cron:
    """One expression in one time zone."""

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        self.expression = normalize(expression)
        self.timezone = timezone
        self._tz = zone(timezone)

    def __repr__(self) -> str:
        return f"Cron({self.expression!r}, {self.timezone!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cron) and (self.expression, self.timezone) == (
            other.expression,
            other.timezone,
        )

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone))

    def _local(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            raise ValueError("cron times must be timezone-aware")
        return when.astimezone(self._tz)

    def next_after(self, when: datetime) -> datetime:
        """The first fire time strictly after ``when`` (UTC)."""
        return next(CronSim(self.expression, self._local(when))).astimezone(UTC)

    def latest_at_or_before(self, when: datetime) -> datetime:
        """The last fire time at or before ``when`` (UTC)."""
        start = self._local(when + _MICROSECOND)
        return next(CronSim(self.expression, start, reverse=True)).astimezone(UTC)

    def upcoming(self, when: datetime) -> Iterator[datetime]:
        """Fire times strictly after ``when``, in order (UTC)."""
        for fire in CronSim(self.expression, self._local(when)):
            yield fire.astimezone(UTC)

    def fires_between(self, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
        """Fire times in ``(start, end]``, oldest first, at most the newest ``limit``."""
        fires: list[datetime] = []
        if end <= start:
            return fires
        for fire in CronSim(self.expression, self._local(end + _MICROSECOND), reverse=True):
            utc = fire.astimezone(UTC)
            if utc <= start or len(fires) >= limit:
                break
            fires.append(utc)
        return fires[::-1]

    def explain(self) -> str:
        try:
            text: str = CronSim(self.expression, datetime.now(UTC)).explain()
        except Exception:  # noqa: BLE001 - explain is best effort, never fatal
            return self.expression
        return text if self.timezone.upper() == "UTC" else f"{text} ({self.timezone})"
