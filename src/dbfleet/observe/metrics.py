"""Prometheus metrics, built at scrape time (docs/metrics.md).

:class:`FleetCollector` is a ``prometheus_client`` custom collector: each
scrape reads the job catalog (so a restart loses nothing), the schedule
(next fire times), the repositories (cached, see
:mod:`dbfleet.observe.repo_facts`) and the newest health samples from a
provider (B's ``HealthMonitor.latest``; none without one). Every metric is
declared in :mod:`dbfleet.observe.metric_names`.

A source that fails is reported, not raised: ``dbfleet_collector_success
{collector=...} 0`` and its metrics are left out for this scrape (an absent
series alerts as ``absent()``, a wrong value would alert falsely). Only
inventory databases get series, so a removed database's series end.

``build_registry`` gives the registry ``dbfleet serve``'s ``/metrics`` and
``dbfleet metrics`` render; ``render`` gives the text exposition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from dbfleet import __version__
from dbfleet.config import Inventory
from dbfleet.engines.base import HealthSample
from dbfleet.errors import DbfleetError, one_line
from dbfleet.observe.catalog_facts import CatalogFacts, KindFacts, read_catalog
from dbfleet.observe.metric_names import SPECS
from dbfleet.observe.repo_facts import DEFAULT_TTL, RepositoryFacts, RepositorySource
from dbfleet.schedule.config import Scheduling
from dbfleet.schedule.core import build_jobs, next_runs

log = logging.getLogger("dbfleet.metrics")

HealthProvider = Callable[[], Mapping[str, HealthSample]]
Family = GaugeMetricFamily | CounterMetricFamily | InfoMetricFamily
OTHER_KINDS = ("verify", "copy", "forget", "prune", "restore")
HEALTH_FIELDS = {
    "dbfleet_database_connections": "connections",
    "dbfleet_database_connections_max": "connections_max",
    "dbfleet_database_replication_lag_seconds": "replication_lag_seconds",
    "dbfleet_database_cache_hits": "cache_hits_total",
    "dbfleet_database_cache_misses": "cache_misses_total",
    "dbfleet_database_lock_waits": "lock_waits",
    "dbfleet_database_deadlocks": "deadlocks_total",
    "dbfleet_database_slow_queries": "slow_queries_total",
    "dbfleet_database_longest_transaction_seconds": "longest_transaction_seconds",
    "dbfleet_database_size_bytes": "size_bytes",
}


class Families:
    """The families of one scrape, created on first use from their spec."""

    def __init__(self) -> None:
        self.items: dict[str, Family] = {}

    def add(self, name: str, labels: tuple[str, ...], value: float | None) -> None:
        if value is None:
            return
        spec = SPECS[name]
        family = self.items.get(name)
        if family is None:
            kinds: dict[str, Any] = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily}
            family = kinds[spec.type](name, spec.help, labels=list(spec.labels))
            self.items[name] = family
        assert len(labels) == len(spec.labels), name
        assert not isinstance(family, InfoMetricFamily), name
        family.add_metric(list(labels), float(value))

    def info(self, name: str, values: dict[str, str]) -> None:
        spec = SPECS[name]
        family = self.items.get(name)
        if family is None:
            family = InfoMetricFamily(name, spec.help, labels=[])
            self.items[name] = family
        assert isinstance(family, InfoMetricFamily)
        family.add_metric([], values)


class FleetCollector(Collector):
    def __init__(
        self,
        inventory: Inventory,
        scheduling: Scheduling,
        catalog_path: Path,
        *,
        health: HealthProvider | None = None,
        repositories: RepositoryFacts | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.inventory = inventory
        self.scheduling = scheduling
        self.catalog_path = catalog_path
        self.health = health
        self.repositories = repositories
        self.clock = clock
        self.jobs = build_jobs(inventory, scheduling)

    def describe(self) -> list[Any]:
        return []  # the families depend on the estate: no duplicate checks at register time

    def collect(self) -> Iterator[Family]:
        out = Families()
        out.info("dbfleet_build", {"version": __version__})
        for name, db in self.inventory.databases.items():
            out.info("dbfleet_database", {"database": name, "engine": db.engine,
                                          "repository": str(db.repository)})  # fmt: skip
            own = self.scheduling.database(name)
            out.add("dbfleet_rpo_seconds", (name,), own.rpo.total_seconds() if own.rpo else None)
            out.add("dbfleet_rto_seconds", (name,), own.rto.total_seconds() if own.rto else None)
        self._source(out, "catalog", self._catalog)
        self._source(out, "schedule", self._schedule)
        if self.repositories is not None:
            self._source(out, "repositories", self._repositories)
        if self.health is not None:
            self._source(out, "health", self._health)
        yield from out.items.values()

    def _source(self, out: Families, collector: str, read: Callable[[Families], None]) -> None:
        """Run one source into a scratch set; merge it only if it finished."""
        began = time.monotonic()
        scratch = Families()
        try:
            read(scratch)
            ok = True
        except (DbfleetError, OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("metrics: %s not collected: %s", collector, one_line(str(exc)))
            ok = False
        if ok:
            for name, family in scratch.items.items():
                if name in out.items:
                    out.items[name].samples.extend(family.samples)
                else:
                    out.items[name] = family
        out.add("dbfleet_collector_success", (collector,), 1 if ok else 0)
        out.add("dbfleet_collector_duration_seconds", (collector,), time.monotonic() - began)

    # -- sources -----------------------------------------------------------

    def _catalog(self, out: Families) -> None:
        facts = read_catalog(self.catalog_path)
        out.add("dbfleet_scheduler_last_tick_timestamp_seconds", (), facts.last_tick)
        for state in ("queued", "running"):
            out.add("dbfleet_jobs", (state,), facts.jobs.get(state, 0))
        for name, db in self.inventory.databases.items():
            labels = (name, db.engine)
            self._kind(out, "backup", labels, facts.get("backup", name))
            self._kind(out, "drill", labels, facts.get("drill", name))
            self._backup_sizes(out, name, db.engine, facts.get("backup", name))
            out.add("dbfleet_drill_last_rto_seconds", labels, facts.drill_rto.get(name))
            for kind in OTHER_KINDS:
                self._other(out, kind, name, facts)
        for repo in self.inventory.repositories:
            self._other(out, "prune", repo, facts)

    @staticmethod
    def _kind(out: Families, kind: str, labels: tuple[str, str], f: KindFacts | None) -> None:
        prefix = f"dbfleet_{kind}"
        for result in ("success", "failure", "skipped"):
            out.add(f"{prefix}_runs", (*labels, result), f.runs.get(result, 0) if f else 0)
        if f is None:
            return
        out.add(f"{prefix}_last_success_timestamp_seconds", labels, f.last_success)
        out.add(f"{prefix}_last_failure_timestamp_seconds", labels, f.last_failure)
        if kind == "backup":
            out.add(f"{prefix}_last_attempt_timestamp_seconds", labels, f.last_attempt)
            out.add(f"{prefix}_running", labels, f.running)
        if f.last_ok is not None:
            out.add(f"{prefix}_last_run_success", labels, 1 if f.last_ok else 0)

    @staticmethod
    def _backup_sizes(out: Families, name: str, engine: str, f: KindFacts | None) -> None:
        """Per member of the newest successful backup run (``details.results``)."""
        if f is None or not f.last_success_details:
            return
        for result in f.last_success_details.get("results") or []:
            if not result.get("ok"):
                continue
            labels = (str(result.get("database") or name), engine)
            out.add("dbfleet_backup_last_duration_seconds", labels, result.get("duration_seconds"))
            out.add("dbfleet_backup_last_size_bytes", labels, result.get("stored_size"))
            out.add("dbfleet_backup_last_source_size_bytes", labels, result.get("size"))
            out.add("dbfleet_backup_last_added_bytes", labels, result.get("added_bytes"))

    @staticmethod
    def _other(out: Families, kind: str, target: str, facts: CatalogFacts) -> None:
        f = facts.get(kind, target)
        if f is None:
            return
        out.add("dbfleet_job_last_success_timestamp_seconds", (target, kind), f.last_success)
        for result in ("success", "failure", "skipped"):
            out.add("dbfleet_job_runs", (target, kind, result), f.runs.get(result, 0))

    def _schedule(self, out: Families) -> None:
        upcoming = next_runs(self.jobs, self.clock())
        for job in self.jobs:
            if job.kind != "backup" or not upcoming.get(job.key):
                continue
            engine = self.inventory.database(job.target).engine
            when = upcoming[job.key][0].timestamp()
            out.add("dbfleet_backup_next_run_timestamp_seconds", (job.target, engine), when)

    def _repositories(self, out: Families) -> None:
        assert self.repositories is not None
        for repo_name, state in self.repositories.all().items():
            out.add("dbfleet_repository_up", (repo_name,), 1 if state.ok else 0)
            out.add("dbfleet_repository_facts_timestamp_seconds", (repo_name,), state.refreshed_at)
            out.add("dbfleet_repository_size_bytes", (repo_name,), state.size_bytes)
            out.add("dbfleet_repository_objects", (repo_name,), state.objects)
            for name, window in state.windows.items():
                labels = (name, self.inventory.database(name).engine)
                point, start = window.newest_point, window.window_start
                out.add("dbfleet_recovery_snapshots", labels, window.snapshots)
                out.add("dbfleet_recovery_point_timestamp_seconds", labels,
                        point.timestamp() if point else None)  # fmt: skip
                out.add("dbfleet_recovery_window_start_timestamp_seconds", labels,
                        start.timestamp() if start else None)  # fmt: skip
                archived = window.log.last_archived if window.log is not None else None
                if window.log is not None and archived is not None:
                    stream = (name, window.log.stream)
                    out.add("dbfleet_archive_last_success_timestamp_seconds", stream,
                            archived.timestamp())  # fmt: skip

    def _health(self, out: Families) -> None:
        assert self.health is not None
        samples = self.health() or {}
        for name, db in self.inventory.databases.items():
            sample = samples.get(name)
            if sample is None:
                continue
            labels = (name, db.engine)
            out.add("dbfleet_database_up", labels, 1 if sample.up else 0)
            out.add("dbfleet_database_probe_duration_seconds", labels, sample.probe_seconds)
            out.add("dbfleet_database_probe_timestamp_seconds", labels,
                    sample.taken_at.timestamp())  # fmt: skip
            if sample.is_replica is not None:
                out.add("dbfleet_database_is_replica", labels, 1 if sample.is_replica else 0)
            for metric, attribute in HEALTH_FIELDS.items():
                out.add(metric, labels, getattr(sample, attribute))
            archive = sample.archive or {}
            out.add("dbfleet_archive_pending_segments", (name,), archive.get("pending_segments"))
            out.add("dbfleet_archive_failures", (name, "wal"), archive.get("failed_total"))


def build_registry(
    inventory: Inventory,
    scheduling: Scheduling,
    catalog_path: Path,
    *,
    health: HealthProvider | None = None,
    repositories: RepositorySource | RepositoryFacts | None = None,
    ttl: float = DEFAULT_TTL,
    clock: Callable[[], datetime] | None = None,
) -> CollectorRegistry:
    """A registry holding only dbfleet's collector (no process or platform
    collectors: ``/metrics`` of serve and ``dbfleet metrics`` print the same).

    ``repositories`` opens inventory repositories (``Repositories``; without
    it there are no repository or recovery metrics); its facts are cached
    for ``ttl`` seconds. ``health`` returns the newest sample per database.
    """
    facts = repositories
    if facts is not None and not isinstance(facts, RepositoryFacts):
        facts = RepositoryFacts(inventory, facts, ttl=ttl)
    registry = CollectorRegistry(auto_describe=False)
    collector = FleetCollector(
        inventory, scheduling, catalog_path, health=health, repositories=facts,
        clock=clock or (lambda: datetime.now(UTC)),
    )  # fmt: skip
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of ``registry``."""
    return generate_latest(registry)
