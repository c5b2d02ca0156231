"""Data shared by the engine-independent migration code and the engines."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from dbfleet.errors import OperationError

DIRECTIONS = ("up", "down")
STATUSES = ("applied", "running", "failed", "baseline")
"""History row states: ``applied`` (every statement ran), ``running`` (the
process is in it, or died in it: the next ``up`` resumes after
``statements_done``), ``failed`` (statement ``statements_done`` failed;
``error`` says why), ``baseline`` (adopted by ``migrate baseline``, never run)."""

HISTORY_TABLE = "dbfleet_migrations"
LEASE_NAME = "dbfleet_migrate"


def statement_checksum(statement: str) -> str:
    """SHA-256 of one statement as run (placeholders substituted)."""
    return hashlib.sha256(statement.strip().encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Step:
    """One migration file's ``up`` or ``down`` section, ready to run.

    ``statements`` are the section split by the engine (placeholders already
    substituted). ``start`` is the index of the first statement to run: a
    resumed migration skips the ones its history row says already ran."""

    database: str
    version: int
    name: str
    checksum: str
    direction: str
    statements: tuple[str, ...]
    applied_by: str
    start: int = 0

    @property
    def statement_checksums(self) -> list[str]:
        return [statement_checksum(s) for s in self.statements]


@dataclass
class Applied:
    """One row of a database's migration history."""

    version: int
    name: str
    checksum: str
    applied_at: str
    """ISO 8601 UTC."""
    duration_seconds: float
    applied_by: str
    statements_done: int
    status: str
    statement_checksums: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """The ``status --json`` form (the documented contract)."""
        return {
            "version": self.version,
            "name": self.name,
            "checksum": self.checksum,
            "applied_at": self.applied_at,
            "duration_seconds": self.duration_seconds,
            "applied_by": self.applied_by,
            "status": self.status,
        }


class StepFailed(OperationError):
    """A statement of a migration failed.

    ``statement`` is the 0-based index of the failing statement, ``done`` how
    many statements of the step are in effect now (0 when ``rolled_back``:
    the engine undid the whole step in its transaction)."""

    def __init__(
        self,
        message: str,
        *,
        database: str,
        version: int,
        statement: int,
        done: int,
        rolled_back: bool,
        leftovers: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.database = database
        self.version = version
        self.statement = statement
        self.done = done
        self.rolled_back = rolled_back
        self.leftovers = leftovers or []


class LeaseBusy(OperationError):
    """Another process holds a database's migration lease (exit 1)."""
