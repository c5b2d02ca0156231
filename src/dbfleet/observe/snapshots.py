"""What the estate pages read besides the job catalog: every snapshot's
time, size and duration per repository (cached), and the newest stored
health sample of each database.

:class:`SnapshotTimes` loads each manifest once per process (a manifest
never changes; one that disappears -- forgotten, pruned -- is dropped on the
next read), so a page view after the first costs one listing per repository.
It is safe to share between threads (the web server's worker threads).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dbfleet.engines.base import HealthSample

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from dbfleet.repo import Repository, Snapshot


class RepositorySource(Protocol):
    """``dbfleet.operations.common.Repositories`` or anything with ``get``."""

    def get(self, name: str) -> Repository: ...


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot as the pages show it. ``kind`` is the snapshot's
    ``options.kind`` (``binlog`` captures do not count as recovery points)."""

    id: str
    database: str
    time: datetime
    started: datetime
    size: int
    stored_size: int
    added_bytes: int
    kind: str | None

    @property
    def duration_seconds(self) -> float:
        return round((self.time - self.started).total_seconds(), 3)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "database": self.database,
            "time": self.time.isoformat(),
            "started": self.started.isoformat(),
            "duration_seconds": self.duration_seconds,
            "size": self.size,
            "stored_size": self.stored_size,
            "added_bytes": self.added_bytes,
            "kind": self.kind,
        }


def belongs(snapshot_database: str, name: str) -> bool:
    """A snapshot of ``name`` itself, or of a member of server entry ``name``."""
    return snapshot_database == name or snapshot_database.startswith(f"{name}/")


Entry = tuple[SnapshotInfo, "Snapshot"]


class SnapshotTimes:
    """``{snapshot id: (SnapshotInfo, manifest)}`` per repository name, read
    once. The manifests are kept without their fingerprints (the largest
    part, and nothing the pages or the recovery window need).

    A repository is listed at most once per *pass* (:meth:`new_pass`, called
    at the start of each page or API request): every database of the estate
    then reuses that listing, already sorted and grouped by inventory entry.
    """

    def __init__(self) -> None:
        self._known: dict[str, dict[str, Entry]] = {}
        self._pass: dict[str, dict[str, list[Entry]]] = {}
        self._lock = threading.Lock()

    def new_pass(self) -> None:
        """Forget this pass's listings: the next read lists the repository again."""
        with self._lock:
            self._pass = {}

    def snapshots(
        self, name: str, repo: Repository, entry: str | None = None
    ) -> list[SnapshotInfo]:
        """Every snapshot in repository ``name`` (of inventory entry ``entry``
        and its members when given), oldest first. Raises the repository's
        :class:`~dbfleet.errors.DbfleetError` when it cannot be read."""
        return [info for info, _manifest in self._read(name, repo, entry)]

    def manifests(self, name: str, repo: Repository, entry: str | None = None) -> list[Snapshot]:
        """The same snapshots' manifests (fingerprint removed), oldest first."""
        return [manifest for _info, manifest in self._read(name, repo, entry)]

    def _read(self, name: str, repo: Repository, entry: str | None) -> list[Entry]:
        with self._lock:
            grouped = self._pass.get(name)
        if grouped is None:
            grouped = self._list(name, repo)
            with self._lock:
                self._pass[name] = grouped
        return grouped.get("" if entry is None else entry, [])

    def _list(self, name: str, repo: Repository) -> dict[str, list[Entry]]:
        """``{"": all, entry: that entry's}``, each oldest first."""
        ids = {n.removeprefix("snapshots/") for n in repo.list_names("snapshots/")}
        with self._lock:
            known = dict(self._known.get(name, {}))
        for gone in set(known) - ids:
            del known[gone]
        for snapshot_id in sorted(ids - set(known)):
            s = repo.load_snapshot(snapshot_id)
            kind = s.options.get("kind")
            info = SnapshotInfo(
                id=snapshot_id,
                database=s.database,
                time=s.finished,
                started=s.started,
                size=s.size,
                stored_size=s.stored_size,
                added_bytes=s.added_bytes,
                kind=str(kind) if kind is not None else None,
            )
            known[snapshot_id] = (info, s.model_copy(update={"fingerprint": None}))
        with self._lock:
            self._known[name] = known
        everything = sorted(known.values(), key=lambda pair: (pair[0].time, pair[0].id))
        grouped: dict[str, list[Entry]] = {"": everything}
        for pair in everything:
            grouped.setdefault(pair[0].database.split("/", 1)[0], []).append(pair)
        return grouped


def sample_from_json(text: str) -> HealthSample:
    """A stored :class:`HealthSample` (its fields as JSON); unknown keys are
    ignored, so a newer writer does not break an older reader."""
    raw = json.loads(text)
    names = {f.name for f in dataclasses.fields(HealthSample)}
    values = {k: v for k, v in raw.items() if k in names}
    values["taken_at"] = datetime.fromisoformat(str(values["taken_at"]))
    return HealthSample(**values)


def latest_samples(catalog_path: Path) -> dict[str, HealthSample]:
    """The newest sample per database from the catalog's ``health_samples``
    (read-only; ``{}`` when there is no catalog yet). A row that does not
    parse is skipped with a warning in the log: one bad row must not hide
    the page."""
    if not catalog_path.exists():
        return {}
    uri = f"file:{catalog_path}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
        try:
            rows = db.execute(
                "SELECT database, sample FROM health_samples WHERE id IN "
                "(SELECT max(id) FROM health_samples GROUP BY database)"
            ).fetchall()
        except sqlite3.OperationalError:  # schema 1: no samples table yet
            return {}
    out: dict[str, HealthSample] = {}
    for database, text in rows:
        try:
            out[str(database)] = sample_from_json(str(text))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("skipping unreadable health sample of %s: %s", database, exc)
    return out


def first_runs(catalog_path: Path) -> dict[str, datetime]:
    """The start of the oldest backup run per target (``{}`` without a
    catalog): since when dbfleet has been backing up each database, even if
    every attempt failed. One query for the whole estate."""
    if not catalog_path.exists():
        return {}
    uri = f"file:{catalog_path}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
        rows = db.execute(
            "SELECT target, min(coalesce(started_at, scheduled_at)) FROM runs "
            "WHERE kind = 'backup' GROUP BY target"
        ).fetchall()
    return {str(t): datetime.fromisoformat(str(when)) for t, when in rows if when}
