"""``forget`` (apply retention policies) and ``prune`` (free unreferenced data)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbfleet.config import Inventory, RetentionPolicy
from dbfleet.engines.base import ChainedSnapshots
from dbfleet.engines.registry import chained_snapshot_kinds, change_archives
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
    kind: str = "dump"
    """Snapshots of one database are grouped by ``options.kind``: a policy
    keeps N dumps *and* N base backups, never one kind in place of the other."""
    wal_removed: list[str] = field(default_factory=list)
    """PostgreSQL base backups: archived WAL files older than the oldest kept one."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "database": self.database,
            "kind": self.kind,
            "policy": self.policy,
            "keep": [d.as_dict() for d in self.decisions if d.keep],
            "remove": [d.as_dict() for d in self.decisions if not d.keep],
            "wal_removed": self.wal_removed,
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
    by_database: dict[tuple[str, str], list[Snapshot]] = defaultdict(list)
    for snapshot in repo.list_snapshots():
        if databases and not matches_database(snapshot.database, databases):
            continue
        kind = str(snapshot.options.get("kind", "dump"))
        by_database[(snapshot.database, kind)].append(snapshot)
    pinned = repo.pinned()
    groups = []
    removed: set[str] = set()
    chained = chained_snapshot_kinds()
    archives = {archive.snapshot_kind: archive for archive in change_archives()}
    # Chained kinds (binlog captures) last: which of them a kept dump still
    # needs depends on which dumps the other groups keep.
    for (database, kind), snapshots in sorted(
        by_database.items(), key=lambda item: (item[0][1] in chained, item[0])
    ):
        if kind in chained:
            group = _chain_group(
                repo, repo_name, database, snapshots, removed, pinned, chained[kind]
            )
            if not dry_run:
                for decision in group.decisions:
                    if not decision.keep:
                        repo.delete_snapshot(decision.snapshot.id)
            groups.append(group)
            continue
        policy = policy_for(inventory, repo_name, database, override)
        group = ForgetGroup(
            repo_name, database, policy.describe(), apply_policy(snapshots, policy, pinned), kind
        )
        if kind in archives:  # the archived log that the kept base backups need stays
            kept = [d.snapshot for d in group.decisions if d.keep]
            group.wal_removed = archives[kind].forget(repo, database, kept, dry_run=dry_run)
        removed.update(d.snapshot.id for d in group.decisions if not d.keep)
        if not dry_run:
            for decision in group.decisions:
                if not decision.keep:
                    repo.delete_snapshot(decision.snapshot.id)
        groups.append(group)
    return groups


def _chain_group(
    repo: Repository,
    repo_name: str,
    database: str,
    binlogs: list[Snapshot],
    removed: set[str],
    pinned: set[str],
    chain: ChainedSnapshots,
) -> ForgetGroup:
    """Binlogs are kept by the recovery chain, not by count: a capture goes
    when no remaining dump of the database needs it for point-in-time replay."""
    remaining = [s for s in repo.list_snapshots() if s.id not in removed]
    obsolete = {s.id for s in chain.obsolete(remaining, database)}
    decisions = []
    for snap in sorted(binlogs, key=lambda s: s.finished, reverse=True):
        if snap.id in pinned:
            decisions.append(Decision(snap, True, ["pinned"]))
        elif snap.id in obsolete:
            decisions.append(Decision(snap, False, ["no remaining dump needs it"]))
        else:
            decisions.append(Decision(snap, True, ["point-in-time chain of a kept dump"]))
    return ForgetGroup(repo_name, database, "binlog chain", decisions, chain.kind)


def prune_repository(
    repos: Repositories,
    name: str,
    *,
    dry_run: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> PruneStats:
    repo = repos.get(name)
    with repository_lock(repo.storage, exclusive=True, operation="prune"):
        return prune(repo, dry_run=dry_run, on_progress=on_progress)
