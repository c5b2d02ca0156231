"""Backup freshness against each database's RPO.

The age of a database's latest snapshot in its repository (snapshots are
published only when complete, so the latest is the latest good one) is
compared with its ``rpo``. States:

- ``fresh``: age <= rpo;
- ``stale``: age > rpo, or no snapshot at all;
- ``no-rpo``: no ``rpo`` set; the age is reported, nothing is alerted;
- ``error``: the repository could not be read; nothing is concluded (the
  last known state stands, and the log says why).

For a server entry (``all_databases``) the age is that of its newest member
snapshot; each member's latest snapshot is listed under ``members``.

Each ``copy_to`` repository is judged the same way under ``copies`` (the
copy keeps the snapshot's own time, so its age is the age of the data it
holds). A copy older than the RPO makes the database ``stale`` too, with
``stale_copies`` naming it: a second site that stopped receiving copies is
what a 3-2-1 setup exists to catch.

The source is the repository, not the job catalog, so manual backups count
and a catalog that says "ok" cannot hide a snapshot that is gone.
:class:`SnapshotIndex` keeps what it has read, so a check every minute loads
only manifests it has not seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from dbfleet.errors import DbfleetError
from dbfleet.schedule.config import Scheduling, format_span

if TYPE_CHECKING:
    from dbfleet.config import Inventory
    from dbfleet.repo import Repository


class RepositorySource(Protocol):
    def get(self, name: str) -> Repository: ...


@dataclass
class Freshness:
    database: str
    repository: str | None
    state: str
    rpo_seconds: float | None = None
    latest_snapshot: str | None = None
    latest_time: datetime | None = None
    age_seconds: float | None = None
    error: str | None = None
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    copies: dict[str, dict[str, Any]] = field(default_factory=dict)
    stale_copies: list[str] = field(default_factory=list)

    @property
    def age(self) -> str:
        if self.age_seconds is None:
            return "never"
        return format_span(timedelta(seconds=int(self.age_seconds)))

    @property
    def rpo(self) -> str:
        return "-" if self.rpo_seconds is None else format_span(timedelta(seconds=self.rpo_seconds))

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["latest_time"] = self.latest_time.isoformat() if self.latest_time else None
        out["age"] = self.age
        out["rpo"] = self.rpo
        return out


class SnapshotIndex:
    """``(database, finished)`` of every snapshot seen, per repository."""

    def __init__(self) -> None:
        self._known: dict[str, dict[str, tuple[str, datetime]]] = {}

    def latest(self, name: str, repo: Repository) -> dict[str, tuple[str, datetime]]:
        """``{database: (snapshot id, finished)}`` for the newest snapshot of each."""
        ids = {n.removeprefix("snapshots/") for n in repo.list_names("snapshots/")}
        known = self._known.setdefault(name, {})
        for gone in set(known) - ids:
            del known[gone]
        for snapshot_id in sorted(ids - set(known)):
            snapshot = repo.load_snapshot(snapshot_id)
            # A binlog capture alone restores nothing: freshness counts dumps
            # and base backups (binlogs only extend a dump's reach).
            database = "" if snapshot.options.get("kind") == "binlog" else snapshot.database
            known[snapshot_id] = (database, snapshot.finished)
        newest: dict[str, tuple[str, datetime]] = {}
        for snapshot_id, (database, finished) in known.items():
            if not database:
                continue
            if database not in newest or finished > newest[database][1]:
                newest[database] = (snapshot_id, finished)
        return newest


def _judge(item: Freshness, rpo: timedelta | None, now: datetime) -> Freshness:
    item.rpo_seconds = rpo.total_seconds() if rpo is not None else None
    if item.latest_time is not None:
        item.age_seconds = round((now - item.latest_time).total_seconds(), 3)
    if rpo is None:
        item.state = "no-rpo"
    elif item.latest_time is None or now - item.latest_time > rpo:
        item.state = "stale"
    else:
        item.state = "fresh"
    return item


def check_freshness(
    inventory: Inventory,
    scheduling: Scheduling,
    repos: RepositorySource,
    *,
    now: datetime | None = None,
    databases: Iterable[str] | None = None,
    index: SnapshotIndex | None = None,
) -> list[Freshness]:
    """One :class:`Freshness` per inventory database (or per ``databases``)."""
    now = now or datetime.now(UTC)
    index = index or SnapshotIndex()
    names = list(databases) if databases is not None else list(inventory.databases)
    latest_by_repo: dict[str, dict[str, tuple[str, datetime]] | str] = {}

    def newest(repo_name: str, name: str, members: dict[str, dict[str, Any]] | None) -> Any:
        """``(finished, snapshot id)`` of ``name``'s newest snapshot in
        ``repo_name``, ``None`` if it has none, or the error text."""
        if repo_name not in latest_by_repo:
            try:
                latest_by_repo[repo_name] = index.latest(repo_name, repos.get(repo_name))
            except DbfleetError as exc:
                latest_by_repo[repo_name] = f"cannot read repository {repo_name}: {exc}"
        latest = latest_by_repo[repo_name]
        if isinstance(latest, str):
            return latest
        if members is None:
            return (latest[name][1], latest[name][0]) if name in latest else None
        candidates = []
        for member, (snapshot_id, finished) in sorted(latest.items()):
            if member.startswith(f"{name}/"):
                members[member] = {
                    "latest_snapshot": snapshot_id,
                    "latest_time": finished.isoformat(),
                    "age_seconds": round((now - finished).total_seconds(), 3),
                }
                candidates.append((finished, snapshot_id))
        return max(candidates) if candidates else None

    results = []
    for name in names:
        db = inventory.database(name)
        repo_name = db.repository
        rpo = scheduling.database(name).rpo
        item = Freshness(
            database=name,
            repository=repo_name,
            state="error",
            rpo_seconds=rpo.total_seconds() if rpo is not None else None,
        )
        if repo_name is None:
            item.error = "no repository"
            results.append(item)
            continue
        found = newest(repo_name, name, item.members if db.all_databases else None)
        if isinstance(found, str):
            item.error = found
            results.append(item)
            continue
        if found is not None:
            item.latest_time, item.latest_snapshot = found
        _judge(item, rpo, now)
        for copy_repo in db.copy_to:
            copy = Freshness(database=name, repository=copy_repo, state="error")
            copied = newest(copy_repo, name, {} if db.all_databases else None)
            if isinstance(copied, str):
                copy.error = copied
            else:
                if copied is not None:
                    copy.latest_time, copy.latest_snapshot = copied
                _judge(copy, rpo, now)
            item.copies[copy_repo] = {
                k: v for k, v in copy.as_dict().items()
                if k in ("state", "latest_snapshot", "latest_time", "age_seconds", "age", "error")
            }  # fmt: skip
            if copy.state in ("stale", "error"):
                item.stale_copies.append(copy_repo)
        if item.stale_copies and item.state == "fresh":
            item.state = "stale"
        results.append(item)
    return results
