"""The snapshots of the inventory's repositories, for the API.

A snapshot never changes once written, so each is decrypted once and kept;
each call lists the repository's ``snapshots/`` names again (new snapshots
appear, forgotten ones disappear). The repositories are opened once (the key
derivation is deliberately slow) and used under one lock: a
:class:`~dbfleet.repo.Repository` is not meant for several threads.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING

from dbfleet.operations.common import Repositories

if TYPE_CHECKING:
    from dbfleet.config import Inventory
    from dbfleet.repo.snapshot import Snapshot


class SnapshotCache:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._repos = Repositories(inventory)
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], Snapshot] = {}

    def of_repository(self, repository: str) -> list[Snapshot]:
        """Every snapshot of ``repository``, oldest first. Raises the
        repository's :class:`~dbfleet.errors.DbfleetError` when it cannot be read."""
        with self._lock:
            repo = self._repos.get(repository)
            ids = [n.removeprefix("snapshots/") for n in repo.list_names("snapshots/")]
            for gone in [k for k in self._known if k[0] == repository and k[1] not in ids]:
                del self._known[gone]
            found = []
            for snapshot_id in ids:
                key = (repository, snapshot_id)
                if key not in self._known:
                    self._known[key] = repo.load_snapshot(snapshot_id)
                found.append(self._known[key])
        return sorted(found, key=lambda s: s.finished)

    def of_database(self, name: str) -> list[tuple[str, Snapshot]]:
        """``(repository, snapshot)`` of one inventory database (its members'
        too, for a server entry) in its repository and copies, newest first."""
        db = self.inventory.database(name)
        found: list[tuple[str, Snapshot]] = []
        for repository in [db.repository, *db.copy_to]:
            if repository is None:
                continue
            for snap in self.of_repository(repository):
                if snap.database == name or snap.database.startswith(f"{name}/"):
                    found.append((repository, snap))
        return sorted(found, key=lambda pair: pair[1].finished, reverse=True)

    def newest(self, name: str) -> datetime | None:
        """When the newest snapshot of ``name`` in its own repository finished."""
        db = self.inventory.database(name)
        pairs = [p for p in self.of_database(name) if p[0] == db.repository]
        return pairs[0][1].finished if pairs else None
