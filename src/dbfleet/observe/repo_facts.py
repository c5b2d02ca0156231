"""Repository facts for the metrics, cached: the repository's size and each
database's recovery window (:mod:`dbfleet.observe.recovery`).

Reading them means listing the repository (and the WAL archive), which on
S3 takes a while for a large repository, so a scrape reuses what is at most
``ttl`` seconds old (default 300; the metrics' HELP says so) and refreshes
the rest. Snapshot manifests are loaded once each, like
:class:`dbfleet.freshness.SnapshotIndex`: a refresh lists the names and
loads only the new ones. A refresh that fails keeps the previous facts and
reports the failure (``dbfleet_repository_up 0``), so a flaky listing never
makes a database look unprotected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from dbfleet.config import Inventory
from dbfleet.errors import DbfleetError, one_line
from dbfleet.observe.recovery import RecoveryWindow, recovery_window
from dbfleet.repo import Repository, Snapshot

log = logging.getLogger("dbfleet.metrics")

DEFAULT_TTL = 300.0


class RepositorySource(Protocol):
    """Opens inventory repositories (:class:`dbfleet.operations.common.Repositories`)."""

    def get(self, name: str) -> Repository: ...


@dataclass
class RepoState:
    refreshed_at: float | None = None
    """Unix time of the last successful refresh."""
    refreshed_mono: float | None = None
    ok: bool = False
    error: str | None = None
    size_bytes: int | None = None
    objects: int | None = None
    windows: dict[str, RecoveryWindow] = field(default_factory=dict)
    manifests: dict[str, Snapshot] = field(default_factory=dict)


class RepositoryFacts:
    """Per-repository facts with a time-to-live; thread-safe (scrapes may
    overlap; one refresh per repository at a time)."""

    def __init__(
        self,
        inventory: Inventory,
        repositories: RepositorySource,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inventory = inventory
        self.repositories = repositories
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, RepoState] = {}

    def state(self, name: str) -> RepoState:
        """``name``'s facts, refreshed first when older than the TTL."""
        with self._lock:
            current = self._states.setdefault(name, RepoState())
            now = self.clock()
            fresh = current.refreshed_mono is not None and now - current.refreshed_mono < self.ttl
            if not fresh:
                self._refresh(name, current)
                current.refreshed_mono = now  # a failure is retried after the TTL too
            return current

    def all(self) -> dict[str, RepoState]:
        return {name: self.state(name) for name in self.inventory.repositories}

    def _refresh(self, name: str, state: RepoState) -> None:
        try:
            repo = self.repositories.get(name)
            size = objects = 0
            for info in repo.storage.list(""):
                size += info.size
                objects += 1
            snapshots = self._snapshots(repo, state)
            windows = {
                db_name: recovery_window(self.inventory, db_name, repo, snapshots)
                for db_name, db in self.inventory.databases.items()
                if db.repository == name
            }
        except (DbfleetError, OSError) as exc:
            state.ok, state.error = False, one_line(str(exc))
            log.warning("metrics: repository %s not read: %s", name, state.error)
            return
        state.ok, state.error = True, None
        state.size_bytes, state.objects, state.windows = size, objects, windows
        state.refreshed_at = time.time()

    @staticmethod
    def _snapshots(repo: Repository, state: RepoState) -> list[Snapshot]:
        ids = {n.removeprefix("snapshots/") for n in repo.list_names("snapshots/")}
        for gone in set(state.manifests) - ids:
            del state.manifests[gone]
        for snapshot_id in sorted(ids - set(state.manifests)):
            state.manifests[snapshot_id] = repo.load_snapshot(snapshot_id)
        return sorted(state.manifests.values(), key=lambda s: s.finished)
