"""The dashboard: server-rendered pages and exports (docs/dashboard.md).

Routes (all outside the OpenAPI schema, which documents the JSON API):

- ``GET /`` compliance, every database worst first;
- ``GET /databases/{name}`` snapshots, drills with evidence, jobs, health,
  forecast, and for operators the "Back up now" / "Drill now" forms
  (``POST /databases/{name}/backup|drill``, which queue the job through the
  same ``submit`` as ``POST /api/v1/databases/{name}/backup|drill`` and
  redirect to the job's page: a plain form cannot show the API's 202 JSON);
- ``GET /jobs`` running and recent jobs, ``GET /jobs/{id}`` one job; their
  ``/fragment`` is what htmx polls every 2 s;
- ``GET /export/compliance.csv|json`` and ``/export/drills.csv|json``;
- ``GET|POST /login``, ``POST /logout``; ``GET /static/{file}``.

Every page needs a viewer token (the log-in cookie or a bearer header); a
browser without one is sent to ``/login``. Forms are POSTs checked for
same origin (:mod:`dbfleet.web.session`).
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dbfleet.engines.base import HealthSample
from dbfleet.errors import DbfleetError, UsageError
from dbfleet.observe.estate import COMPLIANCE_COLUMNS, Estate
from dbfleet.observe.evidence import DRILL_COLUMNS, to_csv, to_json
from dbfleet.web.auth import web_state
from dbfleet.web.render import render
from dbfleet.web.session import COOKIE, check_same_origin
from dbfleet.web.state import WebState
from dbfleet.web.tokens import Token, role_rank

router = APIRouter(include_in_schema=False)
STATIC = {
    "htmx.min.js": "text/javascript",
    "dashboard.css": "text/css",
    "htmx.LICENSE": "text/plain",
}
HEALTH_FIELDS = [
    f.name for f in dataclasses.fields(HealthSample)
    if f.name not in ("database", "engine", "taken_at", "up", "error", "archive", "pool", "extra")
]  # fmt: skip


def estate_of(state: WebState, request: Request) -> Estate:
    """The process's one :class:`Estate` (``WebState.estate``, shared with the API)."""
    return state.estate


def viewer(request: Request) -> Token:
    """The token of this request (cookie or bearer). Without a valid one the
    browser is sent to ``/login`` (303; ``next`` brings it back here)."""
    state = web_state(request)
    header = request.headers.get("authorization", "")
    presented = header[7:].strip() if header.lower().startswith("bearer ") else None
    presented = presented or request.cookies.get(COOKIE)
    try:
        token = state.tokens.verify(presented) if presented else None
    except DbfleetError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    if token is None:
        back = quote(request.url.path, safe="/")
        raise HTTPException(
            status_code=303, detail="log in first", headers={"Location": f"/login?next={back}"}
        )
    return token


User = Annotated[Token, Depends(viewer)]
State = Annotated[WebState, Depends(web_state)]


def page(name: str, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("user", None)
    body = render(name, request=request, **context)
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _local(target: str | None) -> str:
    """A redirect target on this server only (never ``//evil`` or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the only kind our forms send)."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


# -- log-in ------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return page("login.html", request, title="Log in", next=_local(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    check_same_origin(request)
    form = await _form(request)
    state, target = web_state(request), _local(form.get("next"))
    token = state.tokens.verify(form["token"].strip()) if form.get("token") else None
    if token is None:
        return page("login.html", request, 401, title="Log in", next=target,
                    error="Unknown or revoked token.")  # fmt: skip
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE, form["token"].strip(), httponly=True, samesite="strict", path="/",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    check_same_origin(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC:
        raise HTTPException(status_code=404, detail="no such file")
    data = resources.files("dbfleet.web").joinpath("static", name).read_bytes()
    return Response(data, media_type=STATIC[name], headers={"Cache-Control": "max-age=3600"})


# -- pages -------------------------------------------------------------------


@router.get("/")
def compliance(request: Request, user: User, state: State) -> HTMLResponse:
    rows = estate_of(state, request).compliance()
    return page("compliance.html", request, title="Compliance", user=user, rows=rows,
                now=state.clock(), stale=sum(1 for r in rows if r.stale))  # fmt: skip


def _database_page(
    request: Request, user: Token, state: WebState, name: str, *, status: int = 200,
    message: str | None = None,
) -> HTMLResponse:  # fmt: skip
    try:
        detail = estate_of(state, request).database(name)
    except UsageError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    return page(
        "database.html", request, status, title=name, user=user, d=detail, message=message,
        can_operate=role_rank(user.role) >= role_rank("operator"), health_fields=HEALTH_FIELDS,
        forecast_reason="not enough size history yet (health samples over at least a day)",
    )  # fmt: skip


@router.get("/databases/{name:path}")
def database(request: Request, name: str, user: User, state: State) -> HTMLResponse:
    return _database_page(request, user, state, name)


async def _start(request: Request, name: str, kind: str) -> Response:
    check_same_origin(request)
    user = viewer(request)
    state = web_state(request)
    if role_rank(user.role) < role_rank("operator"):
        raise HTTPException(status_code=403, detail=f"{kind} needs an operator token")
    if name not in state.inventory.databases:
        raise HTTPException(status_code=404, detail=f"no database {name!r} in the inventory")
    if state.submit is None:
        raise HTTPException(status_code=503, detail="this server runs no jobs (dbfleet web)")
    try:
        run_id = await run_in_threadpool(state.submit, kind, name, f"api:{user.name}")
    except DbfleetError as exc:
        code = 409 if type(exc).__name__ == "JobBusy" else 503
        return _database_page(request, user, state, name, status=code, message=str(exc))
    return RedirectResponse(f"/jobs/{run_id}", status_code=303)


@router.post("/databases/{name}/backup")
async def backup_now(request: Request, name: str) -> Response:
    return await _start(request, name, "backup")


@router.post("/databases/{name}/drill")
async def drill_now(request: Request, name: str) -> Response:
    return await _start(request, name, "drill")


@router.get("/jobs")
def jobs(request: Request, user: User, state: State) -> HTMLResponse:
    found = estate_of(state, request).jobs()
    return page("jobs.html", request, title="Jobs", user=user, jobs=found, poll=True,
                fragment_url="/jobs/fragment", message=None)  # fmt: skip


@router.get("/jobs/fragment")
def jobs_fragment(request: Request, user: User, state: State) -> HTMLResponse:
    found = estate_of(state, request).jobs()
    return page("_jobs.html", request, jobs=found, poll=True, fragment_url="/jobs/fragment")


def _one_job(state: WebState, run_id: int) -> list[Any]:
    # SQLite integers are 64-bit: a larger id is no run (not an OverflowError)
    if not state.catalog_path.exists() or not 0 < run_id < 2**63:
        raise HTTPException(status_code=404, detail=f"no job {run_id}")
    with state.catalog() as catalog:
        try:
            return [catalog.get(run_id)]
        except UsageError:
            raise HTTPException(status_code=404, detail=f"no job {run_id}") from None


@router.get("/jobs/{run_id}")
def job(request: Request, run_id: int, user: User, state: State) -> HTMLResponse:
    found = _one_job(state, run_id)
    return page("job.html", request, title=f"Job {run_id}", user=user, jobs=found,
                poll=found[0].status in ("queued", "running"),
                fragment_url=f"/jobs/{run_id}/fragment", message=None)  # fmt: skip


@router.get("/jobs/{run_id}/fragment")
def job_fragment(request: Request, run_id: int, user: User, state: State) -> HTMLResponse:
    found = _one_job(state, run_id)
    return page("_jobs.html", request, jobs=found, fragment_url=f"/jobs/{run_id}/fragment",
                poll=found[0].status in ("queued", "running"))  # fmt: skip


# -- exports -----------------------------------------------------------------


def _export(rows: list[dict[str, Any]], columns: list[str], fmt: str, stem: str,
            now: str) -> Response:  # fmt: skip
    headers = {"Content-Disposition": f'attachment; filename="{quote(stem)}.{fmt}"',
               "Cache-Control": "no-store"}  # fmt: skip
    if fmt == "csv":
        return Response(to_csv(rows, columns), media_type="text/csv; charset=utf-8",
                        headers=headers)  # fmt: skip
    return Response(to_json(rows, generated_at=now), media_type="application/json",
                    headers=headers)  # fmt: skip


@router.get("/export/compliance.{fmt}")
def export_compliance(request: Request, fmt: str, user: User, state: State) -> Response:
    if fmt not in ("csv", "json"):
        raise HTTPException(status_code=404, detail="exports are .csv or .json")
    rows = [r.as_dict() for r in estate_of(state, request).compliance()]
    return _export(rows, COMPLIANCE_COLUMNS, fmt, "compliance", state.clock().isoformat())


@router.get("/export/drills.{fmt}")
def export_drills(request: Request, fmt: str, user: User, state: State) -> Response:
    if fmt not in ("csv", "json"):
        raise HTTPException(status_code=404, detail="exports are .csv or .json")
    rows = [d.as_dict() for d in estate_of(state, request).drills()]
    return _export(rows, DRILL_COLUMNS, fmt, "drills", state.clock().isoformat())
