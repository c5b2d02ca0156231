"""``/api/v1``: databases, snapshots, jobs, drills (viewer), and on-demand
backups and drills (operator).

``POST /api/v1/databases/{name}/backup`` (or ``/drill``) answers 202 with the
catalog run id as soon as serve's loop has queued the run; the job runs in a
worker process like a scheduled one (:mod:`dbfleet.schedule.ondemand`), with
trigger ``api`` and actor ``api:<token name>``. 409 when the same job is
already running or queued, 503 when this process runs no scheduler
(``dbfleet web``) or serve is shutting down.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from dbfleet.catalog import Run
from dbfleet.errors import DbfleetError, UsageError
from dbfleet.schedule.config import DATABASE_JOB_KINDS, JOB_KINDS
from dbfleet.schedule.ondemand import JobBusy
from dbfleet.web.auth import require, web_state
from dbfleet.web.models import (
    ComplianceRow,
    DatabaseDetail,
    DatabaseSummary,
    DrillEvidence,
    Job,
    JobAccepted,
    Problem,
    Snapshot,
)
from dbfleet.web.state import WebState
from dbfleet.web.tokens import Token

router = APIRouter(prefix="/api/v1", tags=["api"])
State = Annotated[WebState, Depends(web_state)]
Viewer = Annotated[Token, Depends(require("viewer"))]
Operator = Annotated[Token, Depends(require("operator"))]
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many, newest first")]
DatabaseName = Annotated[str, Path(description="an inventory database name")]
RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a catalog run id")]
JobKind = Literal["backup", "verify", "drill", "forget", "copy", "prune"]
JobStatus = Literal["queued", "running", "ok", "failed", "timeout", "aborted", "skipped"]
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no token, or an unknown one"},
    403: {"model": Problem, "description": "the token's role is too low"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "no such"}}
assert set(JobKind.__args__) == set(JOB_KINDS)  # type: ignore[attr-defined]


def summary(state: WebState, name: str) -> DatabaseSummary:
    db = state.inventory.databases[name]
    own = state.scheduling.database(name)
    return DatabaseSummary(
        name=name,
        engine=db.engine,
        repository=db.repository,
        copy_to=list(db.copy_to),
        tags=list(db.tags),
        all_databases=db.all_databases,
        rpo_seconds=own.rpo.total_seconds() if own.rpo else None,
        rto_seconds=own.rto.total_seconds() if own.rto else None,
        schedule={k: state.scheduling.effective_cron(name, k)[0] for k in DATABASE_JOB_KINDS},
    )


def known(state: WebState, name: str) -> str:
    if name not in state.inventory.databases:
        raise HTTPException(status_code=404, detail=f"no database {name!r} in the inventory")
    return name


def job_model(run: Run) -> Job:
    return Job.model_validate(run.as_dict())


def snapshot_model(repository: str, snap: Any) -> Snapshot:
    return Snapshot(
        id=snap.id,
        repository=repository,
        database=snap.database,
        engine=snap.engine,
        kind=snap.options.get("kind"),
        started=snap.started.isoformat(),
        finished=snap.finished.isoformat(),
        size_bytes=snap.size,
        added_bytes=snap.added_bytes,
        tags=list(snap.tags),
    )


@router.get("/databases", response_model=list[DatabaseSummary], responses=AUTH_RESPONSES)
def databases(state: State, _token: Viewer) -> list[DatabaseSummary]:
    """Every inventory database: engine, repositories, RPO/RTO, schedules
    (never a URL or a password source)."""
    return [summary(state, name) for name in state.inventory.databases]


@router.get("/snapshots", response_model=list[Snapshot], responses=AUTH_RESPONSES | NOT_FOUND)
def snapshots(
    state: State,
    _token: Viewer,
    database: Annotated[str | None, Query(description="only this inventory database")] = None,
    limit: Limit = 100,
) -> list[Snapshot]:
    """Snapshots in the repositories, newest first: every database's, or one's
    (in its repository and its copy_to repositories)."""
    names = [known(state, database)] if database else list(state.inventory.databases)
    found = []
    for name in names:
        found += [snapshot_model(r, s) for r, s in state.snapshots.of_database(name)]
    found.sort(key=lambda s: s.finished, reverse=True)
    return found[:limit]


@router.get("/jobs", response_model=list[Job], responses=AUTH_RESPONSES)
def jobs(
    state: State,
    _token: Viewer,
    database: Annotated[str | None, Query(description="only this database's runs")] = None,
    kind: Annotated[JobKind | None, Query(description="only this kind")] = None,
    status: Annotated[JobStatus | None, Query(description="only this status")] = None,
    limit: Limit = 50,
) -> list[Job]:
    """The job catalog, newest first (`dbfleet jobs --json` has the same objects)."""
    with state.catalog() as catalog:
        runs = catalog.runs(database=database, kind=kind, status=status, limit=limit)
    return [job_model(r) for r in runs]


@router.get("/jobs/{run_id}", response_model=Job, responses=AUTH_RESPONSES | NOT_FOUND)
def job(state: State, _token: Viewer, run_id: RunId) -> Job:
    """One run, with its live ``progress`` while it runs."""
    with state.catalog() as catalog:
        try:
            run = catalog.get(run_id)
        except UsageError:
            raise HTTPException(status_code=404, detail=f"no run {run_id}") from None
    return job_model(run)


@router.get("/drills", response_model=list[DrillEvidence], responses=AUTH_RESPONSES)
def drills(
    state: State,
    _token: Viewer,
    database: Annotated[str | None, Query(description="only this database's drills")] = None,
    limit: Limit = 50,
) -> list[DrillEvidence]:
    """Drills with their evidence (what was restored where, fingerprint
    result, restore time against the RTO), newest first."""
    return state.estate.drills(database)[:limit]


@router.get("/compliance", response_model=list[ComplianceRow], responses=AUTH_RESPONSES)
def compliance(state: State, _token: Viewer) -> list[ComplianceRow]:
    """Every database's RPO/RTO compliance, worst first: the newest recovery
    point's age against the RPO, the last drill's measured RTO against the
    RTO, drill age, archiving lag, health, the share of the last 30 days
    within the RPO."""
    return state.estate.compliance()


@router.get(
    "/databases/{name}", response_model=DatabaseDetail, responses=AUTH_RESPONSES | NOT_FOUND
)
def database(state: State, _token: Viewer, name: DatabaseName) -> DatabaseDetail:
    """One database: settings (no secrets), compliance, newest snapshots,
    drills, last jobs, health sample."""
    known(state, name)
    detail = state.estate.database(name)
    return DatabaseDetail(
        database=summary(state, name),
        compliance=detail.row,
        snapshots=detail.snapshots,
        snapshots_error=detail.snapshots_error,
        drills=detail.drills,
        jobs=[job_model(r) for r in detail.jobs],
        health=detail.health,
        forecast=detail.forecast,
    )


def _start(state: WebState, kind: str, name: str, token: Token) -> JSONResponse:
    known(state, name)
    if state.submit is None:
        raise HTTPException(
            status_code=503,
            detail="this process runs no jobs (dbfleet web): start them through "
            "'dbfleet serve --http'",
        )
    actor = f"api:{token.name}"
    try:
        run_id = state.submit(kind, name, actor)
    except JobBusy as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except UsageError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    except DbfleetError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    body = JobAccepted(run_id=run_id, job=f"{kind}:{name}", actor=actor)
    return JSONResponse(
        body.model_dump(), status_code=202, headers={"Location": f"/api/v1/jobs/{run_id}"}
    )


START_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    **NOT_FOUND,
    409: {"model": Problem, "description": "the same job is running or queued"},
    503: {"model": Problem, "description": "no scheduler in this process, or shutting down"},
}


@router.post(
    "/databases/{name}/backup",
    status_code=202,
    response_model=JobAccepted,
    responses=START_RESPONSES,
)
def start_backup(state: State, token: Operator, name: DatabaseName) -> JSONResponse:
    """Back this database up now, through serve's worker processes."""
    return _start(state, "backup", name, token)


@router.post(
    "/databases/{name}/drill",
    status_code=202,
    response_model=JobAccepted,
    responses=START_RESPONSES,
)
def start_drill(state: State, token: Operator, name: DatabaseName) -> JSONResponse:
    """Run a restore drill of this database now (docs/drills.md)."""
    return _start(state, "drill", name, token)
