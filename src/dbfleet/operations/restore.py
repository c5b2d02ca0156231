"""``restore`` and ``verify``: bring a snapshot back, and prove it.

Restore never writes over the source by accident: it needs ``--target``
(an inventory database, or a new name next to the source) or ``--to`` (a
connection URL or, for SQLite, a path). ``verify`` restores into a scratch
location, compares the restored data's fingerprint with the one recorded at
backup time, and drops the scratch location again.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dbfleet.config import DatabaseConfig
from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints, incomparable
from dbfleet.engines.names import FILE_ENGINES
from dbfleet.engines.registry import engine_for
from dbfleet.errors import UsageError, redact
from dbfleet.operations.common import (
    Repositories,
    SnapshotSource,
    no_fingerprint_reason,
    resolve_database,
    snapshot_caveats,
)
from dbfleet.repo import Snapshot
from dbfleet.repo.lock import reading_lock
from dbfleet.validation import has_url_password, target_name_problem


@dataclass
class RestoreResult:
    snapshot: str
    database: str
    engine: str
    target: str
    tables: list[str]
    duration_seconds: float
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyResult:
    snapshot: str
    database: str
    engine: str
    ok: bool
    scratch: str
    restore_seconds: float
    tables_compared: int
    differences: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    """What the comparison cannot prove (:func:`snapshot_caveats`)."""
    incomparable: str = ""
    """Non-empty when the differences prove nothing: the snapshot's
    fingerprint has an older format (see :func:`engines.base.incomparable`)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(config: DatabaseConfig) -> str:
    """Where a config points, without credentials."""
    if config.path is not None:
        return str(config.path)
    return str(config.url)


def source_config(repos: Repositories, snapshot: Snapshot) -> DatabaseConfig:
    entry = repos.inventory.split_member(snapshot.database)[0]
    if entry in repos.inventory.databases:
        return resolve_database(repos.inventory, snapshot.database)
    raise UsageError(
        f"snapshot {snapshot.short_id} is of {snapshot.database!r}, which the inventory "
        "no longer names",
        hint="restore with --to URL (and --password-env)",
    )


def check_destination(engine: str, to: str) -> str:
    """``--to`` as the engine takes it: a path for file engines (``sqlite://``
    and ``file://`` prefixes allowed), a URL for server engines; never with a
    password in it (the message masks it)."""
    if not to.strip():
        raise UsageError("--to must not be empty", hint="a connection URL, or a path for SQLite")
    if any(ord(c) < 32 for c in to):
        raise UsageError("--to must not contain control characters (newline, tab, NUL, ...)")
    if has_url_password(to):
        raise UsageError(
            f"--to {redact(to)}: refusing a password in a URL (it shows in process lists, "
            "shell history and logs)",
            hint="put it in an environment variable and pass --password-env VAR",
        )
    if engine in FILE_ENGINES:
        path = to.removeprefix("sqlite://").removeprefix("file://")
        if "://" in path:
            raise UsageError(
                f"--to {to!r} is a URL, but {engine} restores to a file",
                hint="give the path of the database file to write",
            )
        return path
    if "://" not in to:
        raise UsageError(
            f"--to {to!r} is not a URL, but {engine} restores to a server",
            hint=f"e.g. --to {engine}://user@host/database (and --password-env VAR)",
        )
    return to


def resolve_target(
    repos: Repositories,
    snapshot: Snapshot,
    *,
    target: str | None,
    to: str | None,
    password_env: str | None = None,
) -> DatabaseConfig:
    if target is not None and to is not None:
        raise UsageError("give --target or --to, not both")
    if password_env is not None and to is None:
        raise UsageError("--password-env goes with --to URL (an inventory target has its own)")
    if to is not None:
        destination = check_destination(snapshot.engine, to)
        if snapshot.engine in FILE_ENGINES:
            if password_env is not None:
                raise UsageError(f"--password-env: {snapshot.engine} has no password")
            return DatabaseConfig(engine=snapshot.engine, path=Path(destination))
        if password_env is not None and not os.environ.get(password_env):
            raise UsageError(f"--password-env {password_env}: that environment variable is empty")
        base = repos.inventory.databases.get(repos.inventory.split_member(snapshot.database)[0])
        try:
            return DatabaseConfig(
                engine=snapshot.engine,
                url=destination,
                password_env=password_env or (base.password_env if base else None),
                password_file=None if password_env else (base.password_file if base else None),
            )
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise UsageError(f"--to: {reason}") from None
    if not target:
        raise UsageError(
            "restore needs a destination",
            hint="--target NAME (inventory database or a new name next to the source) or --to URL",
        )
    problem = target_name_problem(target)
    if problem:
        raise UsageError(f"--target: {problem}")
    if target in repos.inventory.databases:
        config = repos.inventory.databases[target]
        if config.engine != snapshot.engine:
            raise UsageError(
                f"target {target!r} is a {config.engine} database; "
                f"the snapshot is {snapshot.engine}"
            )
        return config
    return engine_for(source_config(repos, snapshot)).target(target)


def restore_snapshot(
    repos: Repositories,
    selector: str,
    *,
    target: str | None = None,
    to: str | None = None,
    password_env: str | None = None,
    tables: tuple[str, ...] = (),
    clean: bool = False,
    include_globals: bool = False,
    on_bytes: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> RestoreResult:
    """Restore a snapshot. ``on_total`` learns the bytes a whole restore reads
    (not called for a subset, which may skip streams)."""
    repo, snapshot = repos.locate(selector)
    if snapshot.options.get("kind") == "basebackup":
        raise UsageError(
            f"snapshot {snapshot.short_id} is a PostgreSQL base backup",
            hint=f"restore the cluster with 'dbfleet restore {snapshot.database} --to-datadir DIR "
            "--time T|--lsn L|--latest'",
        )
    config = resolve_target(repos, snapshot, target=target, to=to, password_env=password_env)
    engine = engine_for(config)
    if tables and not engine.capabilities.subset_restore:
        raise UsageError(f"{engine.name} does not support restoring single tables")
    if any(not t.strip() for t in tables):
        raise UsageError("--table must not be empty")
    tables = tuple(dict.fromkeys(tables))  # `--table a --table a` restores a once
    if include_globals and not engine.capabilities.globals:
        raise UsageError(f"--globals: {engine.name} has no server-wide objects (roles) to restore")
    counted = [0]
    if on_total and not tables:
        on_total(snapshot.size)

    def count(n: int) -> None:
        counted[0] += n
        if on_bytes:
            on_bytes(n)

    began = time.monotonic()
    with reading_lock(repo.storage, f"restore {snapshot.database}"):
        engine.restore(
            SnapshotSource(repo, snapshot, count),
            RestoreOptions(tables=tables, clean=clean, include_globals=include_globals),
        )
    return RestoreResult(
        snapshot=snapshot.id,
        database=snapshot.database,
        engine=snapshot.engine,
        target=describe(config),
        tables=list(tables),
        duration_seconds=round(time.monotonic() - began, 3),
        bytes=counted[0],
    )


def verify_snapshot(
    repos: Repositories,
    selector: str,
    *,
    keep: bool = False,
    on_bytes: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Restore into scratch, compare fingerprints, clean up. A mismatch is
    ``ok=False`` with the differences (the CLI exits 3); differences against
    an older fingerprint format are ``ok=False`` with ``incomparable`` set
    (exit 1: nothing proved, nothing disproved)."""
    repo, snapshot = repos.locate(selector)
    if on_total:
        on_total(snapshot.size)
    if not snapshot.fingerprint:
        raise UsageError(
            f"snapshot {snapshot.short_id} has no fingerprint to verify against"
            + no_fingerprint_reason(snapshot)
        )
    source = source_config(repos, snapshot)
    scratch = _scratch_config(repos, source)
    engine = engine_for(scratch)
    if describe(scratch) == describe(source):
        raise UsageError("the scratch target is the source database; refusing to overwrite it")
    engine.drop()
    began = time.monotonic()
    try:
        with reading_lock(repo.storage, f"verify {snapshot.database}"):
            engine.restore(SnapshotSource(repo, snapshot, on_bytes), RestoreOptions(clean=True))
        restore_seconds = time.monotonic() - began
        actual = engine.fingerprint()
    finally:
        if not keep:
            engine.drop()
    differences = compare_fingerprints(snapshot.fingerprint, actual)
    result = VerifyResult(
        caveats=snapshot_caveats(snapshot),
        incomparable=incomparable(snapshot.fingerprint, actual, differences),
        snapshot=snapshot.id,
        database=snapshot.database,
        engine=snapshot.engine,
        ok=not differences,
        scratch=describe(scratch),
        restore_seconds=round(restore_seconds, 3),
        tables_compared=len(snapshot.fingerprint.get("tables", {})),
        differences=differences,
    )
    return result


def _scratch_config(repos: Repositories, source: DatabaseConfig) -> DatabaseConfig:
    label = f"verify_{secrets.token_hex(3)}"
    if source.scratch:
        if source.scratch in repos.inventory.databases:
            return repos.inventory.databases[source.scratch]
        return engine_for(source).target(source.scratch)
    return engine_for(source).scratch(label)
