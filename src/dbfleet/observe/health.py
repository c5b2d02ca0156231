"""Background health sampling (``health:`` in the inventory), its history
in the catalog, threshold alerts, and the checks of ``/health/database``.

:class:`HealthMonitor` samples every inventory database each
``health.interval`` with at most ``health.parallel`` samples at once, each
bounded by ``health.timeout``; keeps the newest sample per database
(:meth:`HealthMonitor.latest`, thread-safe); writes every sample into the
catalog's ``health_samples`` (retention in :mod:`dbfleet.catalog_health`);
and notifies ``health_alert`` once when a threshold of ``health.alerts`` is
crossed and ``health_cleared`` once when it is no longer (no reminders),
with the state in the catalog's ``alerts`` table (``health:<alert>:<db>``)
so that a restart neither repeats nor forgets one. A reading that is not
available (``None``, or the server is down) changes no alert state: a
missing number is not a crossing, nor a recovery.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dbfleet.catalog import Catalog
from dbfleet.config import Inventory
from dbfleet.engines.base import HealthSample, HealthSampler
from dbfleet.engines.registry import health_sampler
from dbfleet.notify import Channel, Event, Notifier
from dbfleet.observe.checks import Check, Status
from dbfleet.schedule.config import Scheduling
from dbfleet.schedule.core import AlertState, alert_transition
from dbfleet.schedule.health_config import HealthAlerts, HealthConfig

log = logging.getLogger("dbfleet.health")

MIN_CACHE_LOOKUPS = 100
"""An interval with fewer cache lookups says nothing about the hit ratio
(an idle database would alarm on its first miss): no reading then."""
PRUNE_EVERY = timedelta(hours=1)
ALERTS = ("connections_ratio", "replication_lag", "cache_hit_ratio", "free_ratio")

Clock = Callable[[], datetime]
SamplerFactory = Callable[[str, Any], HealthSampler]


def _now() -> datetime:
    return datetime.now(UTC)


def cache_hit_ratio(previous: HealthSample | None, current: HealthSample) -> float | None:
    """Hits / lookups between two samples of one server, from the counter
    deltas; ``None`` without two readings, after a counter reset (the server
    restarted) or with fewer than :data:`MIN_CACHE_LOOKUPS` lookups."""
    if previous is None or not (previous.up and current.up):
        return None
    values = (previous.cache_hits_total, previous.cache_misses_total,
              current.cache_hits_total, current.cache_misses_total)  # fmt: skip
    if any(v is None for v in values):
        return None
    h0, m0, h1, m1 = (float(v) for v in values if v is not None)
    hits, misses = h1 - h0, m1 - m0
    if hits < 0 or misses < 0 or hits + misses < MIN_CACHE_LOOKUPS:
        return None
    return hits / (hits + misses)


def readings(
    sample: HealthSample, capacity: float | None, previous: HealthSample | None
) -> dict[str, float | None]:
    """The values the alerts compare: ``None`` where there is none."""
    if not sample.up:
        return dict.fromkeys(ALERTS)
    ratio = None
    if sample.connections is not None and sample.connections_max:
        ratio = sample.connections / sample.connections_max
    free = None
    if capacity and sample.size_bytes is not None:
        free = 1 - sample.size_bytes / capacity
    lag = sample.replication_lag_seconds if sample.is_replica else None
    return {
        "connections_ratio": ratio,
        "replication_lag": lag,
        "cache_hit_ratio": cache_hit_ratio(previous, sample),
        "free_ratio": free,
    }


def thresholds(alerts: HealthAlerts) -> dict[str, float | None]:
    """Each alert's threshold as a number (seconds for the lag)."""
    lag = alerts.replication_lag
    return {
        "connections_ratio": alerts.connections_ratio,
        "replication_lag": lag.total_seconds() if lag is not None else None,
        "cache_hit_ratio": alerts.cache_hit_ratio,
        "free_ratio": alerts.free_ratio,
    }


def crossed(alert: str, value: float, threshold: float) -> bool:
    """Ratios of use and lags alarm at or above; hit and free ratios below."""
    if alert in ("connections_ratio", "replication_lag"):
        return value >= threshold
    return value < threshold


DEFAULTS = HealthAlerts(connections_ratio=0.8, replication_lag=timedelta(seconds=30),
                        cache_hit_ratio=0.95, free_ratio=0.1)  # fmt: skip
"""The checks' thresholds where ``health.alerts`` sets none (the issue's)."""


def database_checks(
    name: str,
    sample: HealthSample | None,
    config: Scheduling,
    *,
    previous: HealthSample | None = None,
) -> list[Check]:
    """The checks of ``/health/database/{name}``.

    ``reachable`` fails when the newest sample is down, warns when there is
    none yet. With the server up: ``connections`` (warn at the threshold,
    fail when full), ``replication_lag`` (replicas only; warn at the
    threshold, fail at ten times it or when the lag is unknown),
    ``cache_hit_ratio`` (with ``previous``: warn below), ``free_ratio``
    (with ``capacity_bytes``: warn below, fail when full). A check whose
    reading the engine does not have is left out. Thresholds come from
    ``health.alerts``, else :data:`DEFAULTS`."""
    if sample is None:
        return [Check("reachable", "warn", "no sample yet", True)]
    if not sample.up:
        return [Check("reachable", "fail", sample.error or "down", True)]
    checks = [Check("reachable", "pass", True, True)]
    configured = config.health.alerts if config.health else HealthAlerts()
    limit = {k: v if v is not None else thresholds(DEFAULTS)[k]
             for k, v in thresholds(configured).items()}  # fmt: skip
    capacity = config.database(name).capacity_bytes
    values = readings(sample, float(capacity) if capacity else None, previous)

    def verdict(alert: str, value: float, fail: bool) -> Check:
        threshold = limit[alert]
        assert threshold is not None
        status: Status = "fail" if fail else "warn" if crossed(alert, value, threshold) else "pass"
        return Check(alert, status, round(value, 6), threshold)

    ratio = values["connections_ratio"]
    if ratio is not None:
        checks.append(verdict("connections_ratio", ratio, ratio >= 1))
    if sample.is_replica:
        lag = values["replication_lag"]
        if lag is None:
            checks.append(Check("replication_lag", "fail", None, limit["replication_lag"]))
        else:
            checks.append(
                verdict("replication_lag", lag, lag >= 10 * (limit["replication_lag"] or 0))
            )
    hit = values["cache_hit_ratio"]
    if hit is not None:
        checks.append(verdict("cache_hit_ratio", hit, False))
    free = values["free_ratio"]
    if free is not None:
        checks.append(verdict("free_ratio", free, free <= 0))
    return checks


class HealthMonitor:
    """Samples every database of ``inventory`` in a background thread.

    ``start()`` begins (the first round at once), ``stop()`` ends it and
    waits for the round in progress (bounded by ``timeout``). ``run_round``
    takes one round synchronously (the thread calls it; tests and
    ``dbfleet health`` may too). The catalog is opened per round in the
    calling thread: a SQLite connection is not shared between threads.
    """

    def __init__(
        self,
        inventory: Inventory,
        scheduling: Scheduling,
        catalog_path: Path | None,
        notifier: Notifier | None = None,
        *,
        clock: Clock = _now,
        sampler: SamplerFactory = health_sampler,
    ) -> None:
        self.inventory = inventory
        self.scheduling = scheduling
        self.config: HealthConfig = scheduling.health or HealthConfig()
        self.catalog_path = catalog_path
        self.notifier = notifier
        self.clock = clock
        self._samplers = {name: sampler(name, db) for name, db in inventory.databases.items()}
        self._lock = threading.Lock()
        self._latest: dict[str, HealthSample] = {}
        self._previous: dict[str, HealthSample] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(self.config.parallel, thread_name_prefix="dbfleet-sample")
        self._pruned_at: datetime | None = None
        self.rounds = 0

    # -- what others read ---------------------------------------------------

    def latest(self) -> dict[str, HealthSample]:
        """The newest sample per database name (a copy: safe to keep)."""
        with self._lock:
            return dict(self._latest)

    def checks(self, name: str) -> list[Check]:
        """:func:`database_checks` of ``name``'s newest sample, with the
        cache hit ratio over the last interval."""
        with self._lock:
            sample, previous = self._latest.get(name), self._previous.get(name)
        return database_checks(name, sample, self.scheduling, previous=previous)

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="dbfleet-health", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(
                timeout if timeout is not None else self.config.timeout.total_seconds() * 2
            )
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """``stop()``, then deliver the notifications still queued."""
        self.stop()
        if self.notifier is not None:
            self.notifier.close()

    def _run(self) -> None:
        interval = self.config.interval.total_seconds()
        while not self._stop.is_set():
            try:
                self.run_round()
            except Exception as exc:  # noqa: BLE001 - the monitor must keep going
                log.warning("health round failed: %s: %s", type(exc).__name__, exc)
            self._stop.wait(interval)

    # -- one round ------------------------------------------------------------

    def run_round(self) -> dict[str, HealthSample]:
        """Sample every database once, store, alert; returns the samples."""
        timeout = self.config.timeout.total_seconds()
        futures = {name: self._pool.submit(s.sample, timeout) for name, s in self._samplers.items()}
        samples: dict[str, HealthSample] = {}
        for name, future in futures.items():
            try:
                # a sampler bounds itself; this is the belt to its braces
                samples[name] = future.result(timeout=timeout * 3 + 5)
            except Exception as exc:  # noqa: BLE001 - a hung or broken sampler
                samples[name] = HealthSample(
                    database=name, engine=self.inventory.databases[name].engine,
                    taken_at=self.clock(), up=False, probe_seconds=timeout * 3 + 5,
                    error=f"sampler did not answer: {type(exc).__name__}",
                )  # fmt: skip
        with self._lock:
            for name, sample in samples.items():
                if name in self._latest:
                    self._previous[name] = self._latest[name]
                self._latest[name] = sample
            previous = dict(self._previous)
        if self.catalog_path is not None:
            with Catalog(self.catalog_path) as catalog:
                for sample in samples.values():
                    catalog.add_health_sample(sample)
                self._alerts(catalog, samples, previous)
                now = self.clock()
                if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
                    catalog.prune_health_samples(now)
                    self._pruned_at = now
        self.rounds += 1
        return samples

    def _alerts(
        self, catalog: Catalog, samples: dict[str, HealthSample],
        previous: dict[str, HealthSample],
    ) -> None:  # fmt: skip
        limits = thresholds(self.config.alerts)
        now = self.clock()
        for name, sample in samples.items():
            capacity = self.scheduling.database(name).capacity_bytes
            values = readings(sample, float(capacity) if capacity else None, previous.get(name))
            for alert, threshold in limits.items():
                value = values[alert]
                if threshold is None or value is None:
                    continue  # not configured, or no reading: the state stands
                state = "crossed" if crossed(alert, value, threshold) else "ok"
                self._transition(catalog, name, alert, state, value, threshold, now)

    def _transition(
        self, catalog: Catalog, name: str, alert: str, state: str, value: float,
        threshold: float, now: datetime,
    ) -> None:  # fmt: skip
        key = f"health:{alert}:{name}"
        stored = catalog.alert(key)
        before = AlertState(stored.state, stored.since, stored.notified_at) if stored else None
        new, action = alert_transition(before, state, bad="crossed", now=now, repeat=None)
        details = {"alert": alert, "observed": round(value, 6), "threshold": threshold}
        if new != before:
            catalog.set_alert(key, new.state, new.since, new.notified_at, details)
        limit = f"(threshold {_show(alert, threshold)})"
        if action == "raise":
            summary = f"{name}: {alert} {_show(alert, value)} {limit}"
            self._notify(Event("health_alert", summary, now, name, health=details))
        elif action == "clear":
            summary = f"{name}: {alert} back to {_show(alert, value)} {limit}"
            self._notify(Event("health_cleared", summary, now, name, health=details))

    def _notify(self, event: Event) -> None:
        if self.notifier is None:
            log.warning("%s", event.title)
        else:
            self.notifier.notify(event)


def _show(alert: str, value: float) -> str:
    return f"{value:g}s" if alert == "replication_lag" else f"{value:.3g}"


def health_monitor(
    inventory: Inventory,
    scheduling: Scheduling,
    catalog_path: Path,
    channels: list[Channel],
) -> HealthMonitor | None:
    """The monitor ``dbfleet serve`` runs, ``None`` when the inventory has no
    ``health:``. It notifies through its own :class:`Notifier` on the same
    channels, so that stopping the scheduler and the monitor is independent;
    :meth:`HealthMonitor.close` stops both."""
    if scheduling.health is None:
        return None
    return HealthMonitor(inventory, scheduling, catalog_path, Notifier(channels))
