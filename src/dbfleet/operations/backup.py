"""``backup``: stream a database through its engine into its repository."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from dbfleet.engines.registry import engine_for
from dbfleet.errors import EXIT_FAILED, DbfleetError
from dbfleet.operations.common import Repositories, expand_databases, resolve_database
from dbfleet.operations.copy import copy_snapshot
from dbfleet.repo import BackupWriter, Progress, Repository, Snapshot
from dbfleet.repo.lock import repository_lock


@dataclass
class BackupResult:
    database: str
    engine: str
    ok: bool
    snapshot: str | None = None
    size: int = 0
    added_bytes: int = 0
    stored_size: int = 0
    duration_seconds: float = 0.0
    error: str | None = None
    error_type: str | None = None
    exit_code: int = 0
    """The exit code this failure stands for (:mod:`dbfleet.errors`): 3 for
    a wrong passphrase or corrupt repository, 2 for bad usage, else 1."""
    copies: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def backup_database(
    repos: Repositories,
    name: str,
    *,
    tags: list[str] | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> BackupResult:
    """Back up one inventory database. Raises on failure; nothing is recorded
    in the repository unless the engine finished cleanly."""
    db = resolve_database(repos.inventory, name)
    engine = engine_for(db)
    repo = repos.for_database(name)
    began = time.monotonic()
    started = datetime.now(UTC)
    with (
        repository_lock(repo.storage, exclusive=False, operation=f"backup {name}"),
        BackupWriter(repo, progress=progress) as writer,
    ):
        meta = engine.backup(writer)
        snapshot = writer.commit(
            Snapshot(
                database=name,
                engine=db.engine,
                hostname=socket.gethostname(),
                started=started,
                finished=datetime.now(UTC),
                server_version=meta.server_version,
                tool=meta.tool,
                tool_version=meta.tool_version,
                fingerprint=meta.fingerprint,
                consistency_point=meta.consistency_point,
                options=meta.options,
                tags=list(tags or []) + list(db.tags),
            )
        )
    result = BackupResult(
        database=name,
        engine=db.engine,
        ok=True,
        snapshot=snapshot.id,
        size=snapshot.size,
        added_bytes=snapshot.added_bytes,
        stored_size=snapshot.stored_size,
    )
    _fan_out(repos, repo, snapshot, db.copy_to, result)
    result.duration_seconds = round(time.monotonic() - began, 3)
    return result


def _fan_out(
    repos: Repositories,
    repo: Repository,
    snapshot: Snapshot,
    destinations: list[str],
    result: BackupResult,
) -> None:
    """Copy a new snapshot to each ``copy_to`` repository. A failed copy fails
    the result (the snapshot itself stays: it is complete and valid)."""
    for destination in destinations:
        try:
            copied = copy_snapshot(repo, repos.get(destination), snapshot, destination)
            result.copies.append({"ok": True, **copied.as_dict()})
        except DbfleetError as exc:
            result.copies.append({"ok": False, "destination": destination, "error": str(exc)})
            result.ok = False
            result.error = f"copy to {destination} failed: {exc}"
            result.error_type = type(exc).__name__
            result.exit_code = exc.exit_code


def backup_many(
    repos: Repositories,
    names: list[str],
    *,
    tags: list[str] | None = None,
    progress_for: Callable[[str], Callable[[Progress], None] | None] | None = None,
) -> list[BackupResult]:
    """Back up each database in turn, continuing past failures; every
    database gets a result saying what happened."""
    results = []
    expanded: list[str] = []
    for name in names:
        began = time.monotonic()
        try:
            expanded.extend(expand_databases(repos.inventory, [name]))
        except DbfleetError as exc:
            results.append(_failed(repos, name, exc, began))
    for name in expanded:
        began = time.monotonic()
        try:
            progress = progress_for(name) if progress_for else None
            results.append(backup_database(repos, name, tags=tags, progress=progress))
        except Exception as exc:  # noqa: BLE001 - one broken engine must not stop the others
            results.append(_failed(repos, name, exc, began))
    return results


def exit_code(results: list[BackupResult]) -> int:
    """0 when every backup succeeded; else the failures' common exit code (a
    wrong passphrase for every database is 3, like any other command), or 1
    when they differ."""
    codes = {r.exit_code for r in results if not r.ok}
    if not codes:
        return 0
    return codes.pop() if len(codes) == 1 else EXIT_FAILED


def _failed(repos: Repositories, name: str, exc: Exception, began: float) -> BackupResult:
    if isinstance(exc, DbfleetError):
        error, code = str(exc), exc.exit_code
    else:
        error, code = f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED
    entry = repos.inventory.split_member(name)[0]
    engine = repos.inventory.databases[entry].engine if entry in repos.inventory.databases else "?"
    return BackupResult(
        database=name,
        engine=engine,
        ok=False,
        error=error,
        error_type=type(exc).__name__,
        exit_code=code,
        duration_seconds=round(time.monotonic() - began, 3),
    )
