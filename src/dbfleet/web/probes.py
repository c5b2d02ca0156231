"""Liveness and readiness: ``/healthz`` and ``/readyz`` (no token needed:
they reveal nothing but whether the process works).

``/readyz`` checks:

- ``catalog_writable``: a write transaction on the job catalog can begin
  (``BEGIN IMMEDIATE``, rolled back at once) within 2 s;
- ``scheduler`` (only when a scheduler runs in this process, i.e. ``dbfleet
  serve``): its loop finished a pass within the last ``max(5 ticks, 5 s)``
  (an idle loop passes every tick; a stuck one stops passing) and it is not
  shutting down.

200 when every check passes, else 503 naming the failing ones.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from dbfleet import __version__
from dbfleet.web.auth import web_state
from dbfleet.web.models import CheckModel, Liveness, Readiness
from dbfleet.web.state import WebState

router = APIRouter(tags=["probes"])
State = Annotated[WebState, Depends(web_state)]
CATALOG_TIMEOUT = 2.0


def catalog_check(state: WebState) -> CheckModel:
    path = state.catalog_path
    if not path.exists():
        return CheckModel(name="catalog_writable", status="fail", observed=f"no catalog at {path}")
    try:
        db = sqlite3.connect(path, timeout=CATALOG_TIMEOUT, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        finally:
            db.close()
    except sqlite3.Error as exc:
        return CheckModel(name="catalog_writable", status="fail", observed=str(exc))
    return CheckModel(name="catalog_writable", status="pass", observed=str(path))


def scheduler_check(state: WebState) -> CheckModel | None:
    probe = state.scheduler
    if probe is None:
        return None
    limit = max(5 * probe.tick, 5.0)
    since = probe.seconds_since_pass()
    if probe.stopping:
        return CheckModel(name="scheduler", status="fail", observed="shutting down")
    if since is None or since > limit:
        observed = "no pass yet" if since is None else round(since, 3)
        return CheckModel(name="scheduler", status="fail", observed=observed, threshold=limit)
    return CheckModel(name="scheduler", status="pass", observed=round(since, 3), threshold=limit)


@router.get("/healthz", response_model=Liveness, summary="Liveness: the process answers")
def healthz() -> Liveness:
    return Liveness(version=__version__)


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: catalog writable, scheduler passing",
    responses={503: {"model": Readiness, "description": "a check failed"}},
)
def readyz(state: State) -> JSONResponse:
    checks = [catalog_check(state)]
    scheduler = scheduler_check(state)
    if scheduler is not None:
        checks.append(scheduler)
    ready = all(c.status == "pass" for c in checks)
    body = Readiness(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
