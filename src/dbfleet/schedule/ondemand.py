"""On-demand jobs (``POST /api/v1/databases/{name}/backup|drill``) run by
serve's loop, in its worker processes, like any scheduled job.

How a request reaches the loop: the request thread puts it on a thread-safe
queue and sets the Service's ``wakeup`` event; the loop (which owns the
in-memory queue of pending runs and the catalog connection that writes
runs) takes it on its next pass -- at once, since the event wakes it --
records the ``queued`` run (trigger ``api``, actor ``api:<token name>``) and
answers with its run id through a :class:`concurrent.futures.Future`; the
request then returns 202 with that id.

Why not write the queued row from the request thread with its own catalog
connection: the loop keeps its queue in memory and never reads queued rows
back (a starting serve marks leftovers aborted), so it would have to poll
the catalog every tick, and two writers would race over the same runs'
states (the queued/busy check, the id of a run already queued). One owner
for the queue and the run rows keeps the scheduler's rules -- never two jobs
for one database, concurrency, repository locks -- exactly as they are.

An on-demand job is never retried (``retries=0``): the caller started it
and sees its result in ``GET /api/v1/jobs/{id}``; a retry row would carry
no actor. It has no fire time (``scheduled_at`` NULL, as for manual runs),
so it never stands in for a scheduled run.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dbfleet.errors import DbfleetError, OperationError, UsageError
from dbfleet.schedule.core import Job, Pending, _database_resources
from dbfleet.schedule.cron import Cron
from dbfleet.schedule.service import Service

if TYPE_CHECKING:
    from dbfleet.config import Inventory
    from dbfleet.schedule.config import Scheduling

log = logging.getLogger("dbfleet.serve")

ON_DEMAND_KINDS = ("backup", "drill")
HANDOVER_TIMEOUT = 15.0
"""Seconds a request waits for the loop to record its run."""
_NEVER = Cron("0 0 1 1 *")
"""On-demand jobs never enter the scheduler's job list, so their cron is
never consulted; :class:`Job` needs one."""


class JobBusy(OperationError):
    """The same job is already running or queued (HTTP 409)."""


class NotAccepting(OperationError):
    """serve is shutting down, or its loop did not answer (HTTP 503)."""


def on_demand_job(
    inventory: Inventory, scheduling: Scheduling, kind: str, name: str, scheduled: list[Job]
) -> Job:
    """The job ``kind:name`` as serve runs it on demand: the scheduled job's
    timeout and resources when it has one, else the database's defaults;
    never retried."""
    if kind not in ON_DEMAND_KINDS:
        raise UsageError(f"cannot start {kind!r} on demand (only {', '.join(ON_DEMAND_KINDS)})")
    if name not in inventory.databases:
        inventory.database(name)  # raises: no database ..., defined: ...
        raise UsageError(f"{name!r} is a member of a server entry: start its entry's job")
    for job in scheduled:
        if job.kind == kind and job.target == name:
            return dataclasses.replace(job, retries=0)
    db = inventory.databases[name]
    own = scheduling.database(name).schedule
    timeout = (own.timeout if own is not None else None) or scheduling.serve.job_timeout
    assert db.repository is not None  # filled in by inventory validation
    resources = _database_resources(kind, name, db.repository, list(db.copy_to))
    return Job(kind, name, _NEVER, timeout, 0, tuple(resources), name)


@dataclass
class Request:
    kind: str
    database: str
    actor: str
    reply: Future[int] = field(default_factory=Future)


class OnDemandService(Service):
    """The serve loop plus on-demand jobs and a heartbeat for ``/readyz``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests: queue.Queue[Request] = queue.Queue()
        self._last_pass: float | None = None
        self._lock = threading.Lock()

    # -- called from request threads ----------------------------------------

    def submit(self, kind: str, database: str, actor: str) -> int:
        """Queue ``kind`` of ``database`` for ``actor``; the run id once the
        loop has recorded it. Raises :class:`JobBusy`, :class:`NotAccepting`
        or a :class:`UsageError` for an unknown database or kind."""
        if self.stopping:
            raise NotAccepting("serve is shutting down: no new jobs")
        request = Request(kind, database, actor)
        self.requests.put(request)
        self.wakeup.set()
        try:
            return request.reply.result(timeout=HANDOVER_TIMEOUT)
        except FutureTimeout:
            request.reply.cancel()
            raise NotAccepting(
                f"serve's loop did not take the job within {HANDOVER_TIMEOUT:.0f}s"
            ) from None

    def seconds_since_pass(self) -> float | None:
        with self._lock:
            last = self._last_pass
        return None if last is None else time.monotonic() - last

    # -- called from the loop ----------------------------------------------

    def step(self, *, schedule: bool = True) -> None:
        self._take_requests(self.clock())
        super().step(schedule=schedule)
        with self._lock:
            self._last_pass = time.monotonic()

    def _take_requests(self, now: datetime) -> None:
        while True:
            try:
                request = self.requests.get_nowait()
            except queue.Empty:
                return
            if not request.reply.set_running_or_notify_cancel():
                continue  # the request gave up waiting: record nothing
            try:
                request.reply.set_result(self._enqueue_request(request, now))
            except DbfleetError as exc:
                request.reply.set_exception(exc)

    def _enqueue_request(self, request: Request, now: datetime) -> int:
        if self.stopping:
            raise NotAccepting("serve is shutting down: no new jobs")
        job = on_demand_job(self.inventory, self.scheduling, request.kind, request.database,
                            self.jobs)  # fmt: skip
        busy = self._active(job.key)
        if busy:
            raise JobBusy(f"{job.key} not started: {busy}")
        item = Pending(job, now, "api")
        run_id = self.catalog.add_run(
            job=job.key,
            kind=job.kind,
            target=job.target,
            database=job.database,
            trigger="api",
            scheduled_at=None,
            actor=request.actor,
        )
        self.pending.append(item)
        self.queued_ids[item.seq] = run_id
        log.info("%s queued by %s (run %d)", job.key, request.actor, run_id)
        return run_id
