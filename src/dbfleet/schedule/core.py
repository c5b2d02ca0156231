"""The scheduler's decisions as plain functions of their inputs and a clock.

Nothing here starts a process, sleeps, or reads the time: the service passes
``now`` in, which is what makes these rules testable to the second.

Rules (docs/scheduling.md states them for users):

- A job is one kind of work for one target: ``backup|verify|drill|forget|copy`` of
  a database, ``prune`` of a repository. Its key is ``kind:target``.
- Each scheduling pass looks at the fire times in ``(previous pass, now]``.
  Several fire times of one job in one window make **one** run, never a burst.
  A fire time already recorded in the catalog (run, skipped or running) is
  never run twice.
- A fire time at most ``misfire_grace`` old is on time. An older one was
  missed (serve was stopped, or the machine was asleep): ``missed_runs:
  run-once`` runs the job once for all of them, ``skip`` records that they
  were skipped and waits for the next fire time.
- On start, a job whose last run was aborted by a shutdown, or was waiting
  for a retry, runs once more (with ``run-once``).
- A job due while the same job is still running or queued is skipped.
- At most ``concurrency`` jobs run at once; never two jobs for one database;
  jobs that remove data (forget, prune) hold their repositories exclusively,
  the others share them. A job that must wait keeps its place: later jobs do
  not overtake it on the resources it waits for.
- A failed (or timed-out) attempt is retried up to ``retries`` times, after
  ``backoff``, doubling each time up to ``backoff_max``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from dbfleet.engines.names import is_database
from dbfleet.schedule.config import DATABASE_JOB_KINDS, Scheduling
from dbfleet.schedule.cron import Cron

if TYPE_CHECKING:
    from dbfleet.config import Inventory

Trigger = Literal["schedule", "catch-up", "retry", "manual", "api"]
Resource = tuple[str, bool]
"""``(name, exclusive)``, e.g. ``("repository:local", False)``."""

INTERRUPTED = "aborted"


@dataclass(frozen=True)
class Job:
    kind: str
    target: str
    cron: Cron
    timeout: timedelta
    retries: int
    resources: tuple[Resource, ...]
    database: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.target}"


def _database_resources(kind: str, name: str, repository: str, copies: list[str]) -> list[Resource]:
    exclusive = kind == "forget"
    repos = [repository] if kind in ("verify", "drill") else [repository, *copies]
    return [(f"database:{name}", True)] + [(f"repository:{r}", exclusive) for r in repos]


def build_jobs(inventory: Inventory, scheduling: Scheduling) -> list[Job]:
    """Every scheduled job of the inventory, in inventory order."""
    serve = scheduling.serve
    jobs = []
    for name, db in inventory.databases.items():
        if not is_database(db.engine):
            continue  # a connection pool: nothing to back up, verify or drill
        own = scheduling.database(name).schedule
        timeout = (own.timeout if own is not None else None) or serve.job_timeout
        retries = own.retries if own is not None and own.retries is not None else serve.retries
        for kind in DATABASE_JOB_KINDS:
            expression, tz = scheduling.effective_cron(name, kind)
            if expression is None or (kind == "copy" and not db.copy_to):
                continue
            assert db.repository is not None  # filled in by inventory validation
            resources = _database_resources(kind, name, db.repository, list(db.copy_to))
            jobs.append(
                Job(kind, name, Cron(expression, tz), timeout, retries, tuple(resources), name)
            )
    prune = scheduling.schedule.prune
    if prune and prune != "off":
        tz = scheduling.schedule.timezone or "UTC"
        for repo in inventory.repositories:
            jobs.append(
                Job(
                    "prune",
                    repo,
                    Cron(prune, tz),
                    serve.job_timeout,
                    serve.retries,
                    ((f"repository:{repo}", True),),
                )
            )
    return jobs


def next_runs(jobs: Iterable[Job], now: datetime, count: int = 1) -> dict[str, list[datetime]]:
    """The next ``count`` fire times after ``now`` of each job, by job key."""
    return {job.key: list(itertools.islice(job.cron.upcoming(now), count)) for job in jobs}


def next_fire(jobs: Iterable[Job], now: datetime) -> datetime | None:
    fires = [job.cron.next_after(now) for job in jobs]
    return min(fires) if fires else None


@dataclass(frozen=True)
class History:
    """What the catalog knows about one job."""

    last_scheduled: datetime | None = None
    """The newest fire time any of its runs stands for (run, skipped or aborted)."""
    last_status: str | None = None
    """Status of its newest run."""
    last_will_retry: bool = False
    """Its newest run failed and was waiting for a retry."""


@dataclass(frozen=True)
class Due:
    job: Job
    scheduled_at: datetime
    trigger: Trigger
    coalesced: int = 0
    """Further fire times this run stands for (missed, or passed in one window)."""


@dataclass(frozen=True)
class Skipped:
    job: Job
    scheduled_at: datetime
    reason: str


def due_jobs(
    jobs: Iterable[Job],
    *,
    since: datetime,
    now: datetime,
    history: Mapping[str, History],
    grace: timedelta,
    missed_runs: str,
) -> tuple[list[Due], list[Skipped]]:
    """Which jobs to run for the fire times in ``(since, now]``."""
    due: list[Due] = []
    skipped: list[Skipped] = []
    for job in jobs:
        fires = job.cron.fires_between(since, now)
        seen = history.get(job.key, History()).last_scheduled
        if seen is not None:
            fires = [f for f in fires if f > seen]
        if not fires:
            continue
        latest = fires[-1]
        if now - latest <= grace:
            due.append(Due(job, latest, "schedule", len(fires) - 1))
        elif missed_runs == "run-once":
            due.append(Due(job, latest, "catch-up", len(fires) - 1))
        else:
            count = f"{len(fires)}+" if len(fires) >= 1000 else str(len(fires))
            skipped.append(
                Skipped(job, latest, f"missed {count} scheduled run(s); missed_runs: skip")
            )
    return due, skipped


def interrupted_jobs(
    jobs: Iterable[Job], history: Mapping[str, History], missed_runs: str
) -> list[Due]:
    """On start: jobs whose last run was cut short by a shutdown or was waiting
    for a retry run once more (``run-once``); ``skip`` leaves them."""
    if missed_runs != "run-once":
        return []
    out = []
    for job in jobs:
        h = history.get(job.key)
        if h is None or h.last_scheduled is None:
            continue
        if h.last_status == INTERRUPTED or h.last_will_retry:
            out.append(Due(job, h.last_scheduled, "catch-up"))
    return out


def merge_due(*groups: Sequence[Due]) -> list[Due]:
    """One run per job: the one for the newest fire time."""
    chosen: dict[str, Due] = {}
    for group in groups:
        for item in group:
            have = chosen.get(item.job.key)
            if have is None or item.scheduled_at > have.scheduled_at:
                chosen[item.job.key] = item
    return list(chosen.values())


_seq = itertools.count()


@dataclass
class Pending:
    """A run waiting to start (a new one, or a retry waiting for its time)."""

    job: Job
    scheduled_at: datetime
    trigger: Trigger
    attempt: int = 1
    not_before: datetime | None = None
    seq: int = field(default_factory=lambda: next(_seq))


def _conflicts(wanted: Iterable[Resource], held: Mapping[str, bool]) -> bool:
    return any(name in held and (exclusive or held[name]) for name, exclusive in wanted)


def _hold(resources: Iterable[Resource], held: dict[str, bool]) -> None:
    for name, exclusive in resources:
        held[name] = held.get(name, False) or exclusive


def startable(
    pending: Sequence[Pending], running: Iterable[Job], *, concurrency: int, now: datetime
) -> list[Pending]:
    """The pending runs to start now, oldest first, within the concurrency
    limit and without conflicting resources (see the module docstring)."""
    held: dict[str, bool] = {}
    count = 0
    for job in running:
        _hold(job.resources, held)
        count += 1
    claimed: dict[str, bool] = {}
    chosen = []
    for item in sorted(pending, key=lambda p: (p.not_before or p.scheduled_at, p.seq)):
        if count >= concurrency:
            break
        if item.not_before is not None and item.not_before > now:
            continue
        if _conflicts(item.job.resources, held) or _conflicts(item.job.resources, claimed):
            _hold(item.job.resources, claimed)
            continue
        _hold(item.job.resources, held)
        chosen.append(item)
        count += 1
    return chosen


def retry_delay(failed_attempt: int, backoff: timedelta, maximum: timedelta) -> timedelta:
    """Delay after attempt ``failed_attempt`` (1-based) failed: backoff, 2x, 4x, ... <= max."""
    factor: int = 2 ** min(max(failed_attempt - 1, 0), 30)
    delay: timedelta = backoff * factor
    return min(delay, maximum)


AlertAction = Literal["raise", "remind", "clear"]


@dataclass(frozen=True)
class AlertState:
    state: str
    since: datetime
    notified_at: datetime | None = None


def alert_transition(
    previous: AlertState | None,
    state: str,
    *,
    bad: str,
    now: datetime,
    repeat: timedelta | None,
) -> tuple[AlertState, AlertAction | None]:
    """Notify on a change into or out of ``bad`` only (plus reminders every
    ``repeat`` while it stays bad): no alert storms, and none on restart."""
    if state == bad:
        if previous is None or previous.state != bad:
            return AlertState(state, now, now), "raise"
        due = previous.notified_at is None or (
            repeat is not None and now - previous.notified_at >= repeat
        )
        if due:
            return AlertState(state, previous.since, now), "remind"
        return previous, None
    if previous is not None and previous.state == bad:
        return AlertState(state, now, now), "clear"
    if previous is not None and previous.state == state:
        return previous, None
    return AlertState(state, now, None), None
