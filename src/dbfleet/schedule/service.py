"""The ``dbfleet serve`` loop: fire times -> queue -> job processes -> catalog
-> notifications, plus the freshness watch.

One thread owns the queue, the processes and the catalog; it wakes up every
``tick`` (1 s) or when a signal arrives. The freshness check (which reads
repositories, possibly remote) runs in its own thread and hands its results
to the loop; notifications are sent from another (:class:`dbfleet.notify.Notifier`).
The decisions themselves are the plain functions of :mod:`dbfleet.schedule.core`.

Shutdown (SIGTERM or SIGINT): nothing new starts; queued runs are recorded
as ``aborted``; with ``serve.shutdown: abort`` (default) running jobs get
SIGTERM at once, with ``finish`` they get ``shutdown_grace`` to finish first;
whatever still runs ``shutdown_grace`` after its SIGTERM is killed. A second
signal kills running jobs at once. Stopped jobs are recorded as ``aborted``
(never a partial snapshot: see :mod:`dbfleet.schedule.worker`), and serve
exits 0. With ``missed_runs: run-once`` the next start runs each of them once.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from dbfleet.catalog import Catalog
from dbfleet.freshness import Freshness, SnapshotIndex, check_freshness
from dbfleet.notify import Event, Notifier
from dbfleet.schedule.config import Scheduling, format_span
from dbfleet.schedule.core import (
    AlertState,
    Due,
    History,
    Job,
    Pending,
    Skipped,
    alert_transition,
    build_jobs,
    due_jobs,
    interrupted_jobs,
    merge_due,
    next_fire,
    retry_delay,
    startable,
)
from dbfleet.schedule.runner import JobProcess, Outcome, worker_argv

if TYPE_CHECKING:
    from dbfleet.config import Inventory

log = logging.getLogger("dbfleet.serve")

Clock = Callable[[], datetime]
SCHEDULE_ACTOR = "schedule"
"""The actor of every run serve records (its fire times, retries and skips)."""

TICK_SAVE_EVERY = timedelta(seconds=10)


def system_clock() -> datetime:
    return datetime.now(UTC)


def offset_clock(start: datetime) -> Clock:
    """A clock that reads ``start`` now and runs at normal speed from there."""
    began = time.monotonic()

    def clock() -> datetime:
        return start + timedelta(seconds=time.monotonic() - began)

    return clock


@dataclass
class Running:
    item: Pending
    run_id: int
    process: JobProcess
    started: datetime
    deadline: float
    kill_at: float | None = None

    @property
    def job(self) -> Job:
        return self.item.job


class FreshnessWatch:
    """Checks freshness every ``interval`` seconds in a thread; results go to ``results``."""

    def __init__(
        self, check: Callable[[datetime], list[Freshness]], clock: Clock, interval: float
    ) -> None:
        self.check = check
        self.clock = clock
        self.interval = interval
        self.results: queue.Queue[list[Freshness]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dbfleet-freshness", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.results.put(self.check(self.clock()))
            except Exception as exc:  # noqa: BLE001 - the watch must keep watching
                log.warning("freshness check failed: %s: %s", type(exc).__name__, exc)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class Service:
    def __init__(
        self,
        *,
        inventory: Inventory,
        scheduling: Scheduling,
        config_path: Path,
        catalog: Catalog,
        notifier: Notifier,
        clock: Clock = system_clock,
        tick: float = 1.0,
        jobs: Sequence[Job] | None = None,
        spawn: Callable[[Job], JobProcess] | None = None,
        freshness: Callable[[datetime], list[Freshness]] | None = None,
    ) -> None:
        self.inventory = inventory
        self.scheduling = scheduling
        self.serve = scheduling.serve
        self.config_path = config_path
        self.catalog = catalog
        self.notifier = notifier
        self.clock = clock
        self.tick = tick
        self.jobs = list(jobs) if jobs is not None else build_jobs(inventory, scheduling)
        self.spawn = spawn or self._spawn_worker
        self.freshness = freshness or self._check_freshness
        self.pending: list[Pending] = []
        self.queued_ids: dict[int, int] = {}
        """Pending.seq -> catalog run id."""
        self.running: dict[str, Running] = {}
        self.signals = 0
        self.stopping = False
        self.wakeup = threading.Event()
        self.window_end: datetime | None = None
        self._next_fire: datetime | None = None
        self._tick_saved: datetime | None = None
        self._index = SnapshotIndex()
        self._repos: Any = None
        self._freshness_errors: dict[str, str] = {}
        self.failed_runs = 0
        """Runs that failed for good (no retry left) in this process."""

    # -- wiring --------------------------------------------------------------

    def _spawn_worker(self, job: Job) -> JobProcess:
        return JobProcess(worker_argv(self.config_path, job.kind, job.target))

    def _check_freshness(self, now: datetime) -> list[Freshness]:
        from dbfleet.operations.common import Repositories

        if self._repos is None:
            self._repos = Repositories(self.inventory)
        monitored = [n for n in self.inventory.databases if self.scheduling.database(n).rpo]
        if not monitored:
            return []
        return check_freshness(
            self.inventory,
            self.scheduling,
            self._repos,
            now=now,
            databases=monitored,
            index=self._index,
        )

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        self.wakeup.set()

    # -- history and queueing ------------------------------------------------

    def _history(self) -> dict[str, History]:
        scheduled = self.catalog.last_scheduled()
        return {
            key: History(scheduled.get(key), run.status, run.will_retry)
            for key, run in self.catalog.last_runs().items()
        }

    def _active(self, key: str) -> str | None:
        if key in self.running:
            return "the previous run is still running"
        if any(p.job.key == key for p in self.pending):
            return "a previous run is still queued"
        return None

    def _enqueue(self, due: Due) -> None:
        job = due.job
        busy = self._active(job.key)
        if busy:
            self._record_skipped(Skipped(job, due.scheduled_at, f"not started: {busy}"))
            return
        item = Pending(job, due.scheduled_at, due.trigger)
        self.pending.append(item)
        self.queued_ids[item.seq] = self.catalog.add_run(
            job=job.key,
            kind=job.kind,
            target=job.target,
            database=job.database,
            trigger=due.trigger,
            scheduled_at=due.scheduled_at,
            actor=SCHEDULE_ACTOR,
        )
        extra = f" (stands for {due.coalesced} more fire time(s))" if due.coalesced else ""
        log.info("%s due (%s, scheduled %s)%s", job.key, due.trigger, _t(due.scheduled_at), extra)

    def _record_skipped(self, skipped: Skipped) -> None:
        job = skipped.job
        log.warning("%s skipped: %s", job.key, skipped.reason)
        self.catalog.record_run(
            job=job.key,
            kind=job.kind,
            target=job.target,
            database=job.database,
            trigger="schedule",
            scheduled_at=skipped.scheduled_at,
            started_at=self.clock(),
            status="skipped",
            error=skipped.reason,
            actor=SCHEDULE_ACTOR,
        )

    def _save_tick(self, now: datetime, force: bool = False) -> None:
        if force or self._tick_saved is None or now - self._tick_saved >= TICK_SAVE_EVERY:
            self.catalog.set_last_tick(now)
            self._tick_saved = now

    # -- the passes ----------------------------------------------------------

    def start(self) -> None:
        """Recover from the previous run of serve and queue what it missed."""
        now = self.clock()
        lost = self.catalog.mark_interrupted(now, "serve stopped before this run finished")
        if lost:
            log.warning("%d run(s) left unfinished by the previous serve marked aborted", lost)
        history = self._history()
        since = self.catalog.last_tick or (now - self.serve.misfire_grace)
        due, skipped = due_jobs(
            self.jobs,
            since=since,
            now=now,
            history=history,
            grace=self.serve.misfire_grace,
            missed_runs=self.serve.missed_runs,
        )
        again = interrupted_jobs(self.jobs, history, self.serve.missed_runs)
        for skip in skipped:
            self._record_skipped(skip)
        for item in sorted(merge_due(due, again), key=lambda d: d.scheduled_at):
            self._enqueue(item)
        self.window_end = now
        self._next_fire = next_fire(self.jobs, now)
        self._save_tick(now, force=True)
        if not self.jobs:
            log.warning("the inventory schedules no jobs (see docs/scheduling.md)")
        log.info(
            "serving %d job(s); catalog %s; missed runs: %s",
            len(self.jobs),
            self.catalog.path,
            self.serve.missed_runs,
        )

    def _schedule(self, now: datetime) -> None:
        assert self.window_end is not None
        if self._next_fire is not None and now >= self._next_fire:
            due, skipped = due_jobs(
                self.jobs,
                since=self.window_end,
                now=now,
                history={},
                grace=self.serve.misfire_grace,
                missed_runs=self.serve.missed_runs,
            )
            for skip in skipped:
                self._record_skipped(skip)
            for item in sorted(due, key=lambda d: d.scheduled_at):
                self._enqueue(item)
            self._next_fire = next_fire(self.jobs, now)
        self.window_end = now
        self._save_tick(now)

    def _dispatch(self, now: datetime) -> None:
        chosen = startable(
            self.pending,
            [r.job for r in self.running.values()],
            concurrency=self.serve.concurrency,
            now=now,
        )
        for item in chosen:
            self.pending.remove(item)
            run_id = self.queued_ids.pop(item.seq)
            self.catalog.mark_started(run_id, now)
            try:
                process = self.spawn(item.job)
            except OSError as exc:
                failed = Outcome("failed", None, error=f"cannot start the job process: {exc}")
                self._finish(item, run_id, now, failed, now)
                continue
            deadline = time.monotonic() + item.job.timeout.total_seconds()
            self.running[item.job.key] = Running(item, run_id, process, now, deadline)
            log.info(
                "%s started (attempt %d, pid %d, timeout %s)",
                item.job.key,
                item.attempt,
                process.pid,
                format_span(item.job.timeout),
            )

    def _watch(self) -> None:
        grace = self.serve.shutdown_grace.total_seconds()
        for running in self.running.values():
            moment = time.monotonic()
            process = running.process
            if process.poll() is not None:
                continue
            if process.terminated_at is None and moment >= running.deadline:
                log.warning(
                    "%s timed out after %s; stopping it", running.job.key,
                    format_span(running.job.timeout),
                )  # fmt: skip
                process.terminate("timeout")
                running.kill_at = moment + grace
            if running.kill_at is not None and moment >= running.kill_at and not process.killed:
                log.warning("%s did not stop within %.0fs; killing it", running.job.key, grace)
                process.kill()

    def _reap(self, now: datetime) -> None:
        for key, running in list(self.running.items()):
            if running.process.poll() is None:
                continue
            del self.running[key]
            self._finish(
                running.item, running.run_id, running.started, running.process.outcome(), now
            )

    def _finish(
        self, item: Pending, run_id: int, started: datetime, outcome: Outcome, now: datetime
    ) -> None:
        job = item.job
        retryable = outcome.status in ("failed", "timeout")
        will_retry = retryable and item.attempt <= job.retries and not self.stopping
        duration = (now - started).total_seconds()
        self.catalog.finish_run(
            run_id,
            status=outcome.status,
            finished_at=now,
            duration_seconds=max(duration, 0.0),
            bytes=outcome.bytes,
            snapshot=outcome.snapshot,
            error=outcome.error,
            details=outcome.details or None,
            will_retry=will_retry,
        )
        if outcome.status == "ok":
            log.info("%s ok in %.1fs", job.key, duration)
        else:
            log.warning("%s %s: %s", job.key, outcome.status, outcome.error)
        if will_retry:
            delay = retry_delay(item.attempt, self.serve.backoff, self.serve.backoff_max)
            retry = Pending(job, item.scheduled_at, "retry", item.attempt + 1, now + delay)
            self.pending.append(retry)
            self.queued_ids[retry.seq] = self.catalog.add_run(
                job=job.key,
                kind=job.kind,
                target=job.target,
                database=job.database,
                trigger="retry",
                scheduled_at=item.scheduled_at,
                attempt=retry.attempt,
                actor=SCHEDULE_ACTOR,
            )
            log.info("%s: attempt %d in %s", job.key, retry.attempt, format_span(delay))
        if outcome.status == "ok":
            self._job_alert(item, run_id, outcome, "ok", now)
        elif retryable and not will_retry:
            self.failed_runs += 1
            self._job_alert(item, run_id, outcome, "failing", now)

    # -- alerts --------------------------------------------------------------

    def _transition(
        self, key: str, state: str, bad: str, now: datetime, details: dict[str, Any]
    ) -> tuple[AlertState, str | None, AlertState | None]:
        stored = self.catalog.alert(key)
        previous = AlertState(stored.state, stored.since, stored.notified_at) if stored else None
        new, action = alert_transition(
            previous, state, bad=bad, now=now, repeat=self.serve.alert_repeat
        )
        if new != previous:
            self.catalog.set_alert(key, new.state, new.since, new.notified_at, details)
        return new, action, previous

    def _job_alert(
        self, item: Pending, run_id: int, outcome: Outcome, state: str, now: datetime
    ) -> None:
        job = item.job
        run = self.catalog.get(run_id).as_dict()
        new, action, previous = self._transition(
            f"job:{job.key}", state, "failing", now, {"run": run_id}
        )
        what = f"{job.kind} of {job.target}"
        if action in ("raise", "remind"):
            attempts = item.attempt
            summary = f"{what} {outcome.status} after {attempts} attempt(s): {outcome.error}"
            self.notifier.notify(
                Event("job_failed", summary, now, job.database, run, reminder=action == "remind")
            )
        elif action == "clear":
            since = _t(previous.since) if previous else "?"
            summary = f"{what} succeeded again (failing since {since})"
            self.notifier.notify(Event("job_recovered", summary, now, job.database, run))

    def apply_freshness(self, results: Sequence[Freshness], now: datetime) -> None:
        for item in results:
            if item.state == "error":
                if self._freshness_errors.get(item.database) != item.error:
                    log.warning("freshness of %s unknown: %s", item.database, item.error)
                self._freshness_errors[item.database] = item.error or ""
                continue
            self._freshness_errors.pop(item.database, None)
            if item.state not in ("fresh", "stale"):
                continue
            details = item.as_dict()
            new, action, _previous = self._transition(
                f"freshness:{item.database}", item.state, "stale", now, details
            )
            if action in ("raise", "remind"):
                if item.latest_time is None:
                    summary = f"{item.database}: no snapshot at all (RPO {item.rpo})"
                else:
                    summary = (
                        f"{item.database}: latest snapshot is {item.age} old, "
                        f"over its RPO of {item.rpo}"
                    )
                self.notifier.notify(
                    Event(
                        "database_stale",
                        summary,
                        now,
                        item.database,
                        freshness=details,
                        reminder=action == "remind",
                    )  # fmt: skip
                )
            elif action == "clear":
                summary = (
                    f"{item.database}: backups are fresh again "
                    f"(latest {item.age} old, RPO {item.rpo})"
                )
                self.notifier.notify(
                    Event("database_fresh", summary, now, item.database, freshness=details)
                )

    # -- shutdown ------------------------------------------------------------

    def _begin_shutdown(self, now: datetime) -> None:
        self.stopping = True
        log.info(
            "shutting down (%s): %d running, %d queued",
            self.serve.shutdown,
            len(self.running),
            len(self.pending),
        )
        for item in self.pending:
            run_id = self.queued_ids.pop(item.seq)
            self.catalog.finish_run(
                run_id,
                status="aborted",
                finished_at=now,
                duration_seconds=0.0,
                error="not started: serve was stopped",
            )
        self.pending.clear()
        grace = self.serve.shutdown_grace.total_seconds()
        moment = time.monotonic()
        for running in self.running.values():
            if self.serve.shutdown == "abort":
                running.process.terminate("shutdown")
                running.kill_at = moment + grace
            else:
                running.deadline = min(running.deadline, moment + grace)
                running.kill_at = None

    def _watch_shutdown(self) -> None:
        moment = time.monotonic()
        grace = self.serve.shutdown_grace.total_seconds()
        for running in self.running.values():
            process = running.process
            if process.poll() is not None:
                continue
            if process.terminated_at is None and moment >= running.deadline:
                process.terminate("shutdown")
                running.kill_at = moment + grace
            if self.signals > 1 or (running.kill_at is not None and moment >= running.kill_at):
                process.terminate("shutdown")
                process.kill()

    # -- driving -------------------------------------------------------------

    def step(self, *, schedule: bool = True) -> None:
        """One pass of the loop."""
        now = self.clock()
        if self.signals and not self.stopping:
            self._begin_shutdown(now)
        if schedule and not self.stopping:
            self._schedule(now)
        self._reap(now)
        if self.stopping:
            self._watch_shutdown()
        else:
            self._watch()
            self._dispatch(now)

    def idle(self) -> bool:
        return not self.running and not self.pending

    def run_forever(self) -> None:
        self.start()
        watch = FreshnessWatch(
            self.freshness, self.clock, self.serve.freshness_interval.total_seconds()
        )
        watch.start()
        try:
            while True:
                self.step()
                while not watch.results.empty():
                    self.apply_freshness(watch.results.get(), self.clock())
                if self.stopping and not self.running:
                    break
                self.wakeup.wait(self._sleep())
                self.wakeup.clear()
        finally:
            watch.stop()
            self._close()

    def run_once(self) -> None:
        """One scheduling pass at ``clock()``: run what is due (with retries),
        wait for it, check freshness once, and return."""
        self.start()
        try:
            while True:
                self.step(schedule=False)
                if self.idle() or (self.stopping and not self.running):
                    break
                self.wakeup.wait(self._sleep())
                self.wakeup.clear()
            if not self.stopping:
                now = self.clock()
                try:
                    results = self.freshness(now)
                except Exception as exc:  # noqa: BLE001 - report, do not crash the pass
                    log.warning("freshness check failed: %s: %s", type(exc).__name__, exc)
                else:
                    self.apply_freshness(results, now)
        finally:
            self._close()

    def _sleep(self) -> float:
        wait = self.tick
        if self.running:
            wait = min(wait, 0.2)
        return wait

    def _close(self) -> None:
        self._save_tick(self.clock(), force=True)
        self.notifier.close()
        log.info("stopped")


def _t(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
