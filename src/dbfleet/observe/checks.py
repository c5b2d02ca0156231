"""Health checks: the body of ``/health/database/{name}`` and friends.

A check is one named verdict with what was observed and the threshold it
was held against, so that a reader (or a load balancer's log) sees why a
database is not healthy, not only that it is not. The HTTP layer answers
200 unless a check failed (503); ``strict`` treats warnings as failures for
callers that want to be told early.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail")


@dataclass(frozen=True)
class Check:
    """One verdict. ``observed`` and ``threshold`` are plain JSON values
    (numbers in base units, seconds and bytes, or short text); ``None``
    when there is nothing to show (e.g. the reading is not available)."""

    name: str
    status: Status
    observed: Any = None
    threshold: Any = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status must be one of {', '.join(STATUSES)}: {self.status!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(checks: Iterable[Check]) -> Status:
    """The worst status among ``checks`` (``pass`` for none)."""
    rank = {status: i for i, status in enumerate(STATUSES)}
    result: Status = "pass"
    for check in checks:
        if rank[check.status] > rank[result]:
            result = check.status
    return result


def http_status(checks: Iterable[Check], *, strict: bool = False) -> int:
    """200 unless a check failed (503); with ``strict`` a warning fails too."""
    status = worst(checks)
    if status == "fail" or (strict and status == "warn"):
        return 503
    return 200
