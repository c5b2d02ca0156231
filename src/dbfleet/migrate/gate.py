"""Backup first: the gate before a database is changed, the pre-migration
snapshot, and the job-catalog record of every migrate run.

``check_gate`` refuses a database whose latest snapshot is older than its
``rpo`` (or that has none while an ``rpo`` is set), or whose newest drill in
the job catalog failed; ``--force`` turns each refusal into a note that the
run records. ``snapshot_before`` then backs the database up through the
ordinary backup operation, tagged ``migrate-plan:<plan id>``, so that a
restore of that snapshot is the way back.
"""

from __future__ import annotations

import getpass
from datetime import datetime
from pathlib import Path
from typing import Any

from dbfleet.catalog import Catalog, record_manual_run
from dbfleet.errors import DbfleetError, OperationError
from dbfleet.freshness import check_freshness
from dbfleet.operations.backup import backup_database
from dbfleet.operations.common import Repositories

KIND = "migrate"


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def check_gate(repos: Repositories, catalog: Path | None, name: str) -> list[str]:
    """Why ``name`` must not be migrated now (empty: it may)."""
    problems = []
    inventory = repos.inventory
    freshness = check_freshness(inventory, inventory.scheduling(), repos, databases=[name])[0]
    if freshness.state == "stale":
        age = (
            f"{freshness.age_seconds / 3600:.1f}h old" if freshness.age_seconds is not None
            else "no snapshot"
        )  # fmt: skip
        problems.append(
            f"{name}: latest snapshot is older than its rpo ({age}, rpo "
            f"{(freshness.rpo_seconds or 0) / 3600:.1f}h)"
        )
    elif freshness.state == "error":
        problems.append(f"{name}: cannot tell the latest snapshot's age: {freshness.error}")
    if catalog is not None and catalog.exists():
        with Catalog(catalog, create=False) as opened:
            drills = opened.runs(database=name, kind="drill", limit=1)
        if drills and drills[0].status != "ok":
            problems.append(
                f"{name}: its last drill (run {drills[0].id}, {drills[0].started_at}) "
                f"{drills[0].status}: {drills[0].error or 'no details'}"
            )
    return problems


def snapshot_before(repos: Repositories, name: str, plan_id: str) -> str:
    """Back ``name`` up now; the snapshot id (``OperationError`` on failure:
    the database is then not migrated)."""
    try:
        result = backup_database(repos, name, tags=[f"migrate-plan:{plan_id}"])
    except DbfleetError as exc:
        raise OperationError(f"{name}: the pre-migration backup failed: {exc}") from None
    if not result.ok or result.snapshot is None:
        raise OperationError(f"{name}: the pre-migration backup failed: {result.error}")
    return result.snapshot


def record(
    catalog: Path | None,
    *,
    command: str,
    databases: list[str],
    ok: bool,
    started_at: datetime,
    duration_seconds: float,
    error: str | None,
    details: dict[str, Any],
) -> int | None:
    """One ``migrate`` run in the job catalog (``None`` without a catalog path)."""
    if catalog is None:
        return None
    target = ",".join(databases) or "-"
    return record_manual_run(
        catalog, kind=KIND, target=f"{command}:{target}",
        database=databases[0] if len(databases) == 1 else None, started_at=started_at,
        duration_seconds=duration_seconds, ok=ok, error=error, details=details, actor=actor(),
    )  # fmt: skip
