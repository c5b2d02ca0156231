"""Every metric dbfleet exports: name, type, labels and meaning, in one table
that the collector, the docs test and the Grafana test share
(docs/metrics.md lists the same).

Names follow the Prometheus rules: the ``dbfleet_`` prefix, base units,
``_total`` only on counters (a counter's name here is without it; the
exposition adds it), ``_timestamp_seconds`` for times, ``_info`` for
metadata. Labels are bounded: inventory database and repository names, the
engine, the job kind, the log stream, the result; never ids or error text.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbfleet.observe.repo_facts import DEFAULT_TTL

CACHED = f" (repository facts, cached up to {DEFAULT_TTL:g}s by default)"
SAMPLED = " (from the background health sample)"


@dataclass(frozen=True)
class Spec:
    name: str
    type: str
    """``gauge``, ``counter`` or ``info``."""
    labels: tuple[str, ...]
    help: str

    @property
    def exposed(self) -> str:
        """The name in the exposition (counters gain ``_total``, info ``_info``)."""
        suffix = {"counter": "_total", "info": "_info"}.get(self.type, "")
        return self.name + suffix


DB = ("database", "engine")
_SPECS = [
    Spec("dbfleet_build", "info", ("version",), "dbfleet's version."),
    Spec("dbfleet_database", "info", ("database", "engine", "repository"),
         "One per inventory database: its engine and repository (join with group_left)."),
    Spec("dbfleet_rpo_seconds", "gauge", ("database",),
         "The database's recovery point objective (rpo: in the inventory)."),
    Spec("dbfleet_rto_seconds", "gauge", ("database",),
         "The database's recovery time objective (rto: in the inventory)."),
    # backups, from the job catalog
    Spec("dbfleet_backup_last_success_timestamp_seconds", "gauge", DB,
         "When the newest successful backup run finished."),
    Spec("dbfleet_backup_last_failure_timestamp_seconds", "gauge", DB,
         "When the newest failed (or timed out, aborted) backup run finished."),
    Spec("dbfleet_backup_last_attempt_timestamp_seconds", "gauge", DB,
         "When the newest backup run (success or failure) finished."),
    Spec("dbfleet_backup_last_run_success", "gauge", DB,
         "1 if the newest finished backup run succeeded, else 0."),
    Spec("dbfleet_backup_runs", "counter", (*DB, "result"),
         "Backup runs recorded in the job catalog, by result (success, failure, skipped)."),
    Spec("dbfleet_backup_running", "gauge", DB, "Backup runs of the database queued or running."),
    Spec("dbfleet_backup_last_duration_seconds", "gauge", DB,
         "How long the newest successful backup took (a server entry: per member)."),
    Spec("dbfleet_backup_last_size_bytes", "gauge", DB,
         "Bytes the newest successful backup stored in the repository, after "
         "compression, before deduplication (a server entry: per member)."),
    Spec("dbfleet_backup_last_source_size_bytes", "gauge", DB,
         "Bytes the newest successful backup read from the database (a server entry: per member)."),
    Spec("dbfleet_backup_last_added_bytes", "gauge", DB,
         "Bytes the newest successful backup added to the repository after "
         "deduplication (a server entry: per member)."),
    Spec("dbfleet_backup_next_run_timestamp_seconds", "gauge", DB,
         "The next scheduled backup fire time (absent: no backup schedule)."),
    # recovery, from the repository
    Spec("dbfleet_recovery_point_timestamp_seconds", "gauge", DB,
         "The newest restorable moment: the newest snapshot's end, or the newest "
         "archived WAL segment / captured binlog event after it" + CACHED + "."),
    Spec("dbfleet_recovery_window_start_timestamp_seconds", "gauge", DB,
         "The oldest restorable moment: the oldest snapshot's end" + CACHED + "."),
    Spec("dbfleet_recovery_snapshots", "gauge", DB,
         "Restorable snapshots of the database in its repository" + CACHED + "."),
    Spec("dbfleet_archive_last_success_timestamp_seconds", "gauge", ("database", "stream"),
         "When the newest piece of the change log (WAL segment, binlog file) "
         "reached the repository" + CACHED + "."),
    Spec("dbfleet_archive_pending_segments", "gauge", ("database",),
         "WAL segments the server has not archived yet" + SAMPLED + "."),
    Spec("dbfleet_archive_failures", "counter", ("database", "stream"),
         "Failed archive attempts the server counted since its start" + SAMPLED + "."),
    Spec("dbfleet_repository_size_bytes", "gauge", ("destination",),
         "Bytes stored in the repository (every object)" + CACHED + "."),
    Spec("dbfleet_repository_objects", "gauge", ("destination",),
         "Objects stored in the repository" + CACHED + "."),
    Spec("dbfleet_repository_up", "gauge", ("destination",),
         "1 if the last read of the repository's facts succeeded, else 0 (the "
         "recovery metrics then keep their previous values)."),
    Spec("dbfleet_repository_facts_timestamp_seconds", "gauge", ("destination",),
         "When the repository's facts were last read successfully."),
    # drills, from the job catalog
    Spec("dbfleet_drill_last_success_timestamp_seconds", "gauge", DB,
         "When the newest passing restore drill finished."),
    Spec("dbfleet_drill_last_failure_timestamp_seconds", "gauge", DB,
         "When the newest failing restore drill finished."),
    Spec("dbfleet_drill_last_run_success", "gauge", DB,
         "1 if the newest finished drill passed, else 0."),
    Spec("dbfleet_drill_runs", "counter", (*DB, "result"),
         "Restore drills recorded in the job catalog, by result (success, failure, skipped)."),
    Spec("dbfleet_drill_last_rto_seconds", "gauge", DB,
         "The RTO (restore + fingerprint) the newest drill that measured one measured "
         "(a server entry: its slowest member)."),
    # other jobs
    Spec("dbfleet_job_last_success_timestamp_seconds", "gauge", ("database", "kind"),
         "When the newest successful run of each job kind (verify, copy, forget, "
         "prune, restore) finished; prune jobs are per repository (database=repository name)."),
    Spec("dbfleet_job_runs", "counter", ("database", "kind", "result"),
         "Runs of the other job kinds recorded in the job catalog, by result."),
    Spec("dbfleet_jobs", "gauge", ("state",), "Runs in the job catalog queued or running."),
    # health, from the background sampler
    Spec("dbfleet_database_up", "gauge", DB,
         "1 if dbfleet reached the database at its last health sample, else 0."),
    Spec("dbfleet_database_probe_duration_seconds", "gauge", DB,
         "How long the last health sample took."),
    Spec("dbfleet_database_probe_timestamp_seconds", "gauge", DB,
         "When the last health sample was taken."),
    Spec("dbfleet_database_connections", "gauge", DB, "Connections in use" + SAMPLED + "."),
    Spec("dbfleet_database_connections_max", "gauge", DB,
         "The server's connection limit" + SAMPLED + "."),
    Spec("dbfleet_database_replication_lag_seconds", "gauge", DB,
         "Replication lag of this replica" + SAMPLED + "."),
    Spec("dbfleet_database_is_replica", "gauge", DB, "1 on a replica" + SAMPLED + "."),
    Spec("dbfleet_database_cache_hits", "counter", DB,
         "Cache hits the server counted since its start" + SAMPLED + "."),
    Spec("dbfleet_database_cache_misses", "counter", DB,
         "Cache misses the server counted since its start" + SAMPLED + "."),
    Spec("dbfleet_database_lock_waits", "gauge", DB,
         "Sessions waiting for a lock" + SAMPLED + "."),
    Spec("dbfleet_database_deadlocks", "counter", DB,
         "Deadlocks the server counted since its start" + SAMPLED + "."),
    Spec("dbfleet_database_slow_queries", "counter", DB,
         "Slow queries the server counted since its start" + SAMPLED + "."),
    Spec("dbfleet_database_longest_transaction_seconds", "gauge", DB,
         "Age of the oldest open transaction" + SAMPLED + "."),
    Spec("dbfleet_database_size_bytes", "gauge", DB, "Size of the database" + SAMPLED + "."),
    # dbfleet itself
    Spec("dbfleet_scheduler_last_tick_timestamp_seconds", "gauge", (),
         "The scheduler time dbfleet serve last recorded (every 10s while it runs)."),
    Spec("dbfleet_collector_success", "gauge", ("collector",),
         "1 if this scrape read the source (catalog, schedule, repositories, health), else 0."),
    Spec("dbfleet_collector_duration_seconds", "gauge", ("collector",),
         "How long this scrape spent on the source."),
]  # fmt: skip
SPECS: dict[str, Spec] = {s.name: s for s in _SPECS}
