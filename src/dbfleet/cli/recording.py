"""Record the operations a person runs (``dbfleet backup``, ``restore``,
``verify``, ``copy``, ``forget``, ``prune``) in the job catalog, as serve
records its own, so that ``dbfleet jobs``, the metrics and the pages see
every run whoever started it.

A run is recorded with trigger ``manual`` and actor ``cli:<os user>`` in the
catalog :func:`dbfleet.cli.context.resolve_catalog` names (``serve.catalog``,
else ``<inventory>.catalog.db``). A failed operation is recorded as
``failed`` with its one-line error (passwords masked by
:func:`dbfleet.errors.redact`).

Recording never changes the outcome: when the catalog cannot be written
(read-only directory, newer schema, disk full), the command prints one
``dbfleet: warning: ... not recorded ...`` line on stderr and exits as the
operation itself decided.
"""

from __future__ import annotations

import getpass
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbfleet import output
from dbfleet.catalog import Catalog
from dbfleet.cli.context import State, resolve_catalog
from dbfleet.errors import DbfleetError, one_line, redact


def cli_actor() -> str:
    """``cli:<os user>`` (the uid when the user has no name)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"


def error_line(exc: BaseException | str) -> str:
    """The one-line, password-masked error text a catalog row keeps."""
    return one_line(redact(str(exc))) or type(exc).__name__


@dataclass
class Outcome:
    """What one recorded run reports; the command fills it in."""

    target: str
    database: str | None
    ok: bool = True
    bytes: int | None = None
    snapshot: str | None = None
    error: str | None = None
    details: dict[str, Any] | None = None


@dataclass
class Recorder:
    """Records the runs of one command invocation (see the module docstring)."""

    st: State
    kind: str
    catalog_path: Path | None = None
    actor: str = field(default_factory=cli_actor)

    def _path(self) -> Path:
        if self.catalog_path is None:
            inventory = self.st.inventory()
            source = inventory.source
            if source is None:
                raise OSError("the inventory was not read from a file")
            scheduling = inventory.scheduling()
            self.catalog_path = resolve_catalog(None, Path(source).resolve(), scheduling)
        return self.catalog_path

    def write(self, outcome: Outcome, started_at: datetime, duration_seconds: float) -> int | None:
        """Record one finished run; a warning (and ``None``) when the catalog
        cannot be written."""
        try:
            path = self._path()
            with Catalog(path) as catalog:
                return catalog.record_run(
                    job=f"{self.kind}:{outcome.target}",
                    kind=self.kind,
                    target=outcome.target,
                    database=outcome.database,
                    trigger="manual",
                    scheduled_at=None,
                    started_at=started_at,
                    status="ok" if outcome.ok else "failed",
                    duration_seconds=max(duration_seconds, 0.0),
                    bytes=outcome.bytes,
                    snapshot=outcome.snapshot,
                    error=error_line(outcome.error) if outcome.error else None,
                    details=outcome.details,
                    actor=self.actor,
                )
        except (DbfleetError, sqlite3.Error, OSError) as exc:
            where = f" {self.catalog_path}" if self.catalog_path else ""
            output.say(
                f"dbfleet: warning: this {self.kind} of {outcome.target} was not recorded in "
                f"the job catalog{where}: {error_line(exc)}"
            )
            return None

    @contextmanager
    def run(self, target: str, database: str | None = None) -> Iterator[Outcome]:
        """Time the block and record it: as the block left the
        :class:`Outcome`, or ``failed`` with the error when it raises a
        :class:`DbfleetError` (which then propagates unchanged)."""
        outcome = Outcome(target, database)
        started = datetime.now(UTC)
        began = time.monotonic()
        try:
            yield outcome
        except DbfleetError as exc:
            outcome.ok = False
            outcome.error = str(exc)
            self.write(outcome, started, time.monotonic() - began)
            raise
        self.write(outcome, started, time.monotonic() - began)


def fill_backup(run: Outcome, results: list[Any]) -> None:
    """A backup run's outcome from its :class:`BackupResult` objects (one,
    or one per member of a server entry), in the shape serve's worker
    records: ``details.results`` holds each member's ``size``,
    ``stored_size``, ``added_bytes`` and ``duration_seconds`` (the metrics
    read them), ``bytes`` the bytes added in all."""
    failed = [r for r in results if not r.ok]
    several = len(results) > 1
    run.ok = bool(results) and not failed
    run.bytes = sum(r.added_bytes for r in results)
    run.snapshot = results[0].snapshot if len(results) == 1 else None
    run.error = (
        "; ".join(f"{r.database}: {r.error}" if several else str(r.error) for r in failed) or None
    )
    run.details = {"results": [r.as_dict() for r in results]}
