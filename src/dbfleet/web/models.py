"""Pydantic response models of the HTTP API: the OpenAPI schema is built
from these, so each field says what it holds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from dbfleet.engines.base import HealthSample
from dbfleet.observe.estate import ComplianceRow
from dbfleet.observe.evidence import DrillEvidence
from dbfleet.observe.snapshots import SnapshotInfo

__all__ = ["ComplianceRow", "DrillEvidence"]

CheckStatus = Literal["pass", "warn", "fail"]


class CheckModel(BaseModel):
    """One check, in the style of ``barman check``."""

    name: str
    status: CheckStatus
    observed: Any = Field(default=None, description="what was measured (a number, text or null)")
    threshold: Any = Field(default=None, description="the limit it was compared with, if any")


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: list[CheckModel]


class HealthReport(BaseModel):
    """``/health/*``: 200 when no check fails (with ``?strict=1``: none warns
    either), else 503."""

    name: str
    status: CheckStatus = Field(description="the worst status among the checks")
    checks: list[CheckModel]


class JobAccepted(BaseModel):
    run_id: int = Field(description="the catalog run id: GET /api/v1/jobs/{run_id}")
    job: str = Field(description="kind:database")
    status: Literal["queued"] = "queued"
    actor: str


class Job(BaseModel):
    """One run in the job catalog (``dbfleet jobs --json`` has the same fields)."""

    id: int
    job: str
    kind: str
    target: str
    database: str | None
    trigger: str = Field(description="schedule, catch-up, retry, manual or api")
    actor: str | None = Field(description="schedule, cli:<user> or api:<token name>")
    scheduled_at: str | None
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    status: str = Field(description="queued, running, ok, failed, timeout, aborted or skipped")
    attempt: int
    will_retry: bool
    bytes: int | None
    snapshot: str | None
    error: str | None
    details: dict[str, Any] | None
    progress: dict[str, Any] | None = Field(
        description="a running job's stage and bytes so far (stage, bytes, updated_at)"
    )


class Snapshot(BaseModel):
    id: str
    repository: str
    database: str
    engine: str
    kind: str | None = Field(description="the snapshot's kind (dump, base, binlog, ...)")
    started: str
    finished: str
    size_bytes: int | None = Field(description="bytes of the database's streams")
    added_bytes: int | None = Field(description="new bytes this snapshot added to the repository")
    tags: list[str]


class DatabaseSummary(BaseModel):
    """An inventory entry without its secrets (no URL, no password source)."""

    name: str
    engine: str
    repository: str | None
    copy_to: list[str]
    tags: list[str]
    all_databases: bool
    rpo_seconds: float | None
    rto_seconds: float | None
    schedule: dict[str, str | None] = Field(
        description="the effective cron expression of each job kind (null: off)"
    )


class DatabaseDetail(BaseModel):
    """One database: its settings (no secrets), compliance row, newest
    snapshots, drills with their evidence, last jobs, health sample."""

    database: DatabaseSummary
    compliance: ComplianceRow
    snapshots: list[SnapshotInfo] = Field(description="the newest snapshots, newest first")
    snapshots_error: str | None = Field(description="why the snapshots could not be read")
    drills: list[DrillEvidence] = Field(description="the last drills, newest first")
    jobs: list[Job] = Field(description="the last jobs of any kind, newest first")
    health: HealthSample | None = Field(
        description="the newest health sample (null: none taken yet)"
    )
    forecast: dict[str, Any] | None = Field(
        default=None, description="size and RTO forecast, when there is enough history"
    )


class Problem(BaseModel):
    detail: str
