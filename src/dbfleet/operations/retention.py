"""``forget`` (apply retention policies) and ``prune`` (free unreferenced data)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbfleet.config import Inventory, RetentionPolicy
from dbfleet.operations.common import Repositories, matches_database
from dbfleet.repo import Repository, Snapshot
from dbfleet.repo.lock import repository_lock
from dbfleet.repo.prune import PruneStats, prune
from dbfleet.retention import Decision, apply_policy


@dataclass
class ForgetGroup:
    repository: str
    database: str
    policy: str
    decisions: list[Decision] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "database": self.database,
            "policy": self.policy,
            "keep": [d.as_dict() for d in self.decisions if d.keep],
            "remove": [d.as_dict() for d in self.decisions if not d.keep],
        }


def policy_for(
    inventory: Inventory, repository: str, database: str, override: RetentionPolicy | None
) -> RetentionPolicy:
    if override is not None and not override.empty:
        return override
    entry = inventory.split_member(database)[0]
    db = inventory.databases.get(entry)
    if db is not None and db.retention is not None:
        return db.retention
    return inventory.repository(repository).retention


def forget(
    repos: Repositories,
    *,
    repositories: list[str],
    databases: list[str] | None = None,
    override: RetentionPolicy | None = None,
    dry_run: bool = False,
) -> list[ForgetGroup]:
    """Apply each database's policy; remove the snapshots no rule keeps."""
    groups: list[ForgetGroup] = []
    for repo_name in repositories:
        repo = repos.get(repo_name)
        with repository_lock(repo.storage, exclusive=not dry_run, operation="forget"):
            groups.extend(
                _forget_in(repos.inventory, repo_name, repo, databases, override, dry_run)
            )
    return groups


def _forget_in(
    inventory: Inventory,
    repo_name: str,
    repo: Repository,
    databases: list[str] | None,
    override: RetentionPolicy | None,
    dry_run: bool,
) -> list[ForgetGroup]:
    by_database: dict[str, list[Snapshot]] = defaultdict(list)
    for snapshot in repo.list_snapshots():
        if databases and not matches_database(snapshot.database, databases):
            continue
        by_database[snapshot.database].append(snapshot)
    pinned = repo.pinned()
    groups = []
    for database, snapshots in sorted(by_database.items()):
        policy = policy_for(inventory, repo_name, database, override)
        group = ForgetGroup(
            repo_name, database, policy.describe(), apply_policy(snapshots, policy, pinned)
        )
        if not dry_run:
            for decision in group.decisions:
                if not decision.keep:
                    repo.delete_snapshot(decision.snapshot.id)
        groups.append(group)
    return groups


def prune_repository(
    repos: Repositories,
    name: str,
    *,
    dry_run: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> PruneStats:
    repo = repos.get(name)
    with repository_lock(repo.storage, exclusive=True, operation="prune"):
        stats = prune(repo, dry_run=dry_run, on_progress=on_progress)
        if not dry_run:
            _abort_stale_uploads(repo, stats)
        return stats


def _abort_stale_uploads(repo: Repository, stats: PruneStats) -> None:
    """S3: parts of uploads that a killed process left behind are invisible
    but billed; abort those older than a day (younger ones may be live)."""
    from dbfleet.storage.s3 import S3Storage

    inner = getattr(repo.storage, "inner", repo.storage)
    if isinstance(inner, S3Storage):
        aborted = inner.abort_incomplete_uploads()
        if aborted:
            stats.notes.append(f"aborted {aborted} incomplete multipart uploads")
