"""``/health/backups/{name}`` and ``/health/database/{name}``: 200 or 503
with a list of checks, for uptime monitors, load balancers and status pages.

No token is needed (like ``/healthz``): the bodies hold check names,
numbers and short texts, never a URL or a secret. They answer GET and HEAD
and allow any origin (``Access-Control-Allow-Origin: *``), so a status page
in a browser can read them. 200 unless a check fails; with ``?strict=1`` a
warning fails too. 404 for a name the inventory does not have.

Backup checks (:func:`backup_checks`):

- ``backup_age``: the newest snapshot's age against the database's RPO
  (``dbfleet freshness``): fail when older, or when there is none; with no
  RPO set, pass (warn when there is no snapshot at all); fail when the
  repository cannot be read.
- ``copy_age:<repository>``: the same for each ``copy_to`` repository.
- ``drill_result``: the last drill's result: fail unless it passed; warn
  when the database was never drilled.
- ``drill_age``: with a drill schedule, the last drill's age against two
  intervals of that schedule (one missed drill is tolerated, two are not).
- ``drill_rto``: the last drill's measured restore time against ``rto``.

Database checks (:func:`database_health`): the health monitor's checks of
the newest sample (:func:`dbfleet.observe.health.database_checks`:
``reachable``, ``connections_ratio``, ``replication_lag``,
``cache_hit_ratio``, ``free_ratio``), plus ``sample_age``: the sample's age
against three ``health.interval`` (fail when older: a stalled sampler or a
stopped serve must not read as healthy). In a process without a monitor
(``dbfleet web``) the newest sample stored in the catalog is judged the
same way; with no ``health:`` in the inventory and no sample at all, the
check ``health_sampling`` fails: nothing is measured, so nothing is green.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from dbfleet.observe.checks import Check, Status, http_status, worst
from dbfleet.observe.health import database_checks
from dbfleet.observe.snapshots import latest_samples
from dbfleet.schedule.cron import Cron
from dbfleet.schedule.health_config import HealthConfig
from dbfleet.web.auth import web_state
from dbfleet.web.models import CheckModel, HealthReport, Problem
from dbfleet.web.state import WebState

router = APIRouter(prefix="/health", tags=["health"])
State = Annotated[WebState, Depends(web_state)]
Strict = Annotated[bool, Query(description="fail on warnings too")]
Name = Annotated[str, Path(description="an inventory database name")]
RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthReport, "description": "a check failed (or warned, with strict)"},
    404: {"model": Problem, "description": "no such database"},
}
CORS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"}


def schedule_interval(cron: Cron, after: datetime) -> timedelta:
    """The longest gap between consecutive fire times in the next five."""
    fires = list(itertools.islice(cron.upcoming(after), 5))
    return max(b - a for a, b in itertools.pairwise(fires))


def verdict(ok: bool) -> Status:
    return "pass" if ok else "fail"


def backup_checks(state: WebState, name: str) -> list[Check]:
    checks: list[Check] = []
    fresh = state.freshness(name)
    rpo = fresh.rpo_seconds
    if fresh.state == "error":
        checks.append(Check("backup_age", "fail", fresh.error, rpo))
    elif fresh.age_seconds is None:
        checks.append(Check("backup_age", "fail" if rpo is not None else "warn", "never", rpo))
    else:
        ok = rpo is None or fresh.age_seconds <= rpo
        checks.append(Check("backup_age", verdict(ok), fresh.age_seconds, rpo))
    for repo, copy in fresh.copies.items():
        observed = copy.get("age_seconds") if copy.get("state") != "error" else copy.get("error")
        checks.append(
            Check(f"copy_age:{repo}", verdict(repo not in fresh.stale_copies), observed, rpo)
        )
    checks.extend(drill_checks(state, name))
    return checks


def drill_checks(state: WebState, name: str) -> list[Check]:
    evidence = state.estate.drills(name)
    cron, tz = state.scheduling.effective_cron(name, "drill")
    rto = state.scheduling.database(name).rto
    if not evidence:
        return [Check("drill_result", "warn", "never drilled", "pass")]
    last = evidence[0]
    checks = [
        Check("drill_result", "pass" if last.result == "pass" else "fail", last.result, "pass")
    ]
    if cron is not None and last.started_at:
        started = datetime.fromisoformat(last.started_at)
        limit = 2 * schedule_interval(Cron(cron, tz), started)
        age = (state.clock() - started).total_seconds()
        checks.append(
            Check("drill_age", verdict(age <= limit.total_seconds()), round(age, 3),
                  limit.total_seconds())
        )  # fmt: skip
    if rto is not None and last.rto_seconds is not None:
        ok = last.rto_seconds <= rto.total_seconds()
        checks.append(Check("drill_rto", verdict(ok), last.rto_seconds, rto.total_seconds()))
    return checks


def report(name: str, checks: list[Check], strict: bool) -> JSONResponse:
    body = HealthReport(
        name=name, status=worst(checks), checks=[CheckModel(**c.as_dict()) for c in checks]
    )
    return JSONResponse(
        body.model_dump(), status_code=http_status(checks, strict=strict), headers=CORS
    )


def known(state: WebState, name: str) -> None:
    if name not in state.inventory.databases:
        raise HTTPException(
            status_code=404, detail=f"no database {name!r} in the inventory", headers=CORS
        )


@router.api_route(
    "/backups/{name}",
    methods=["GET", "HEAD"],
    response_model=HealthReport,
    responses=RESPONSES,
    summary="Backup age vs RPO, last drill result, age and RTO",
)
def backups(state: State, name: Name, strict: Strict = False) -> JSONResponse:
    known(state, name)
    return report(name, backup_checks(state, name), strict)


def database_health(state: WebState, name: str) -> list[Check]:
    configured = state.scheduling.health
    interval = (configured or HealthConfig()).interval.total_seconds()
    monitor = state.health
    if monitor is not None:
        checks = list(monitor.checks(name))
        sample = monitor.latest().get(name)
    else:
        sample = latest_samples(state.catalog_path).get(name)
        if sample is None and configured is None:
            return [Check("health_sampling", "fail", "off (no health: in the inventory)", "on")]
        checks = database_checks(name, sample, state.scheduling)
    if sample is not None:
        age = round((state.clock() - sample.taken_at).total_seconds(), 3)
        checks.append(Check("sample_age", verdict(age <= 3 * interval), age, 3 * interval))
    return checks


@router.api_route(
    "/database/{name}",
    methods=["GET", "HEAD"],
    response_model=HealthReport,
    responses=RESPONSES,
    summary="Reachable, connections, replication lag, cache hit ratio, free space",
)
def database(state: State, name: Name, strict: Strict = False) -> JSONResponse:
    known(state, name)
    return report(name, database_health(state, name), strict)
