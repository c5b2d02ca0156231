"""What the HTTP app knows about the process it runs in: :class:`WebState`.

``dbfleet serve --http`` passes its inventory, its catalog path, a
``submit`` that hands on-demand jobs to its loop and a probe of that loop;
``dbfleet web`` passes ``submit=None`` and ``scheduler=None`` (it runs no
jobs: POST routes answer 503 there). Engineer B's health monitor, when it
runs, is ``health`` (anything with ``latest() -> {name: HealthSample}``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dbfleet.catalog import Catalog
from dbfleet.freshness import Freshness, SnapshotIndex, check_freshness
from dbfleet.observe.estate import Estate
from dbfleet.operations.common import Repositories
from dbfleet.web.config import HttpConfig
from dbfleet.web.snapshots import SnapshotCache
from dbfleet.web.tokens import TokenStore

if TYPE_CHECKING:
    from dbfleet.config import Inventory
    from dbfleet.engines.base import HealthSample
    from dbfleet.observe.checks import Check
    from dbfleet.schedule.config import Scheduling

Submit = Callable[[str, str, str], int]
"""``submit(kind, database, actor) -> run id``: queue an on-demand job
(``kind`` is ``backup`` or ``drill``; ``actor`` is ``api:<token name>``)
and return its catalog run id once the run is recorded. Raises
:class:`dbfleet.errors.DbfleetError` when the job cannot be queued."""


class HealthSource(Protocol):
    """The health monitor (:class:`dbfleet.observe.health.HealthMonitor`)."""

    def latest(self) -> dict[str, HealthSample]: ...

    def checks(self, name: str) -> list[Check]: ...


class SchedulerProbe(Protocol):
    """The serve loop, as /readyz sees it."""

    tick: float
    """Seconds between passes when idle."""
    stopping: bool

    def seconds_since_pass(self) -> float | None:
        """Seconds since the loop last finished a pass (``None``: not yet)."""
        ...


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class WebState:
    inventory: Inventory
    scheduling: Scheduling
    catalog_path: Path
    tokens: TokenStore
    http: HttpConfig
    health: HealthSource | None = None
    submit: Submit | None = None
    scheduler: SchedulerProbe | None = None
    clock: Callable[[], datetime] = system_clock
    snapshots: SnapshotCache = field(init=False)

    def __post_init__(self) -> None:
        self.snapshots = SnapshotCache(self.inventory)
        self._freshness_lock = threading.Lock()
        self._freshness_index = SnapshotIndex()
        self._freshness_repos = Repositories(self.inventory)

    def freshness(self, name: str) -> Freshness:
        """``dbfleet freshness`` of one inventory database now (its
        repository and copies). One at a time: the snapshot index it keeps
        between calls is not thread-safe."""
        with self._freshness_lock:
            return check_freshness(
                self.inventory,
                self.scheduling,
                self._freshness_repos,
                now=self.clock(),
                databases=[name],
                index=self._freshness_index,
            )[0]

    @cached_property
    def estate(self) -> Estate:
        """The estate read model (compliance, database detail, drill
        evidence) shared by the API and the pages: one per process, so its
        snapshot caches serve every request."""
        health = self.health
        return Estate(
            self.inventory,
            self.scheduling,
            self.catalog_path,
            Repositories(self.inventory),
            clock=self.clock,
            health=health.latest if health is not None else None,
        )

    @contextmanager
    def catalog(self) -> Iterator[Catalog]:
        """A catalog connection of the calling thread, for one request.
        :class:`Catalog` objects are never shared between threads; SQLite's WAL
        mode lets these readers run next to serve's writer."""
        with Catalog(self.catalog_path, create=False) as catalog:
            yield catalog
