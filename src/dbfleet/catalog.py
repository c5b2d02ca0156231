"""The job catalog: every run of a scheduled (or recorded manual) job.

An embedded SQLite file, by default ``<inventory stem>.catalog.db`` next to
the inventory (``serve.catalog`` or ``--catalog`` choose another). Written by
``dbfleet serve`` only (one serve per catalog: it holds ``<catalog>.lock``),
read by ``dbfleet jobs`` at any time (WAL mode: readers never block it).

Table ``runs``: one row per attempt. ``status`` is ``queued`` while it waits
(for a free slot, for its database or repository, or for a retry's time),
``running`` while it runs, then ``ok``, ``failed``, ``timeout``, ``aborted``
(stopped by a shutdown, or its serve died) or ``skipped`` (not run: missed
while serve was stopped with ``missed_runs: skip``, or the same job was
still running or queued). ``bytes`` is,
per kind: backup and copy, bytes added to the repository; verify and drill, bytes
restored; prune, bytes freed; forget, 0. Times are ISO 8601 UTC text.

``actor`` says who started it: ``schedule`` (serve's own fire times and
retries), ``cli:<user>`` (a command run by hand), ``api:<token name>`` (an
HTTP call). ``progress`` is JSON (``stage``, ``bytes``, ``updated_at``) that
a running job updates, for the jobs page.

Table ``health_samples``: one row per health sample of a database
(:class:`dbfleet.engines.base.HealthSample` as JSON in ``sample``, with
``up`` and ``size_bytes`` as columns for history queries and forecasts).

Table ``alerts``: the notification state per alert key (``job:backup:notes``,
``freshness:notes``), so that a restart neither repeats nor forgets an alert.
Table ``meta``: ``last_tick``, the scheduler time serve last looked at, from
which the next start tells which fire times it missed.

The schema version is ``PRAGMA user_version``; :data:`MIGRATIONS` lists the
steps from each version to the next, applied in one transaction on open.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from dbfleet.catalog_health import HealthHistory
from dbfleet.errors import OperationError, UsageError

STATUSES = ("queued", "running", "ok", "failed", "timeout", "aborted", "skipped")
FINISHED = ("ok", "failed", "timeout", "aborted", "skipped")

MIGRATIONS: list[str] = [
    # 0 -> 1
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        database TEXT,
        trigger TEXT NOT NULL,
        scheduled_at TEXT,
        started_at TEXT,
        finished_at TEXT,
        duration_seconds REAL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1,
        will_retry INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER,
        snapshot TEXT,
        error TEXT,
        details TEXT
    );
    CREATE INDEX runs_by_job ON runs (job, id);
    CREATE INDEX runs_by_database ON runs (database, id);
    CREATE TABLE alerts (
        key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        since TEXT NOT NULL,
        notified_at TEXT,
        details TEXT
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 1 -> 2: who started a run, its live progress, and health samples
    """
    ALTER TABLE runs ADD COLUMN actor TEXT;
    ALTER TABLE runs ADD COLUMN progress TEXT;
    CREATE INDEX runs_by_kind ON runs (kind, id);
    CREATE TABLE health_samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        database TEXT NOT NULL,
        taken_at TEXT NOT NULL,
        up INTEGER NOT NULL,
        size_bytes REAL,
        sample TEXT NOT NULL
    );
    CREATE INDEX health_samples_by_database ON health_samples (database, taken_at);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    if when.tzinfo is None:
        raise ValueError("catalog times must be timezone-aware")
    return when.astimezone(UTC).isoformat(timespec="seconds")


def parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


@dataclass
class Run:
    id: int
    job: str
    kind: str
    target: str
    database: str | None
    trigger: str
    scheduled_at: str | None
    started_at: str
    finished_at: str | None
    duration_seconds: float | None
    status: str
    attempt: int
    will_retry: bool
    bytes: int | None
    snapshot: str | None
    error: str | None
    details: dict[str, Any] | None
    actor: str | None = None
    progress: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Run:
        values = dict(row)
        values["will_retry"] = bool(values["will_retry"])
        values["details"] = json.loads(values["details"]) if values["details"] else None
        values["progress"] = json.loads(values["progress"]) if values.get("progress") else None
        return cls(**values)


@dataclass(frozen=True)
class Alert:
    key: str
    state: str
    since: datetime
    notified_at: datetime | None
    details: dict[str, Any] | None = None


def default_path(inventory: Path) -> Path:
    """``/etc/dbfleet/prod.yaml`` -> ``/etc/dbfleet/prod.catalog.db``."""
    return inventory.with_name(f"{inventory.stem}.catalog.db")


class Catalog(HealthHistory):
    """One open catalog. Not shared between threads: serve uses it from its
    main loop only (the health monitor opens its own)."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if not create and not path.exists():
            raise UsageError(f"no job catalog at {path}", hint="dbfleet serve creates it")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise OperationError(f"cannot open job catalog {path}: {exc}") from None
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA busy_timeout = 30000")
            self._migrate(create)
        except BaseException:
            self._db.close()
            raise

    # -- lifecycle ---------------------------------------------------------

    def _migrate(self, create: bool) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise UsageError(
                f"job catalog {self.path} has schema version {version}; this dbfleet "
                f"knows up to {SCHEMA_VERSION}",
                hint="upgrade dbfleet",
            )
        if version == SCHEMA_VERSION:
            return
        if not create:
            raise UsageError(
                f"job catalog {self.path} needs an upgrade (schema {version} -> {SCHEMA_VERSION})",
                hint="start 'dbfleet serve' once to upgrade it",
            )
        self._db.execute("PRAGMA journal_mode = WAL")
        with self._transaction():
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -- runs --------------------------------------------------------------

    def add_run(
        self,
        *,
        job: str,
        kind: str,
        target: str,
        database: str | None,
        trigger: str,
        scheduled_at: datetime | None,
        attempt: int = 1,
        started_at: datetime | None = None,
        status: str = "queued",
        actor: str | None = None,
    ) -> int:
        """A new run, ``queued`` (not started yet) or ``running``."""
        if status not in ("queued", "running"):
            raise ValueError(f"a new run is queued or running, not {status!r}")
        cursor = self._db.execute(
            "INSERT INTO runs (job, kind, target, database, trigger, scheduled_at, started_at, "
            "status, attempt, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job, kind, target, database, trigger, iso(scheduled_at), iso(started_at), status,
             attempt, actor),
        )  # fmt: skip
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def set_progress(self, run_id: int, progress: dict[str, Any]) -> None:
        """A running job's stage and bytes so far (JSON), for the jobs page."""
        self._db.execute(
            "UPDATE runs SET progress = ? WHERE id = ?",
            (json.dumps(progress, default=str), run_id),
        )

    def mark_started(self, run_id: int, started_at: datetime) -> None:
        self._db.execute(
            "UPDATE runs SET status = 'running', started_at = ? WHERE id = ?",
            (iso(started_at), run_id),
        )

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        finished_at: datetime,
        duration_seconds: float,
        bytes: int | None = None,
        snapshot: str | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
        will_retry: bool = False,
    ) -> None:
        if status not in FINISHED:
            raise ValueError(f"unknown status {status!r}")
        self._db.execute(
            "UPDATE runs SET status = ?, finished_at = ?, duration_seconds = ?, bytes = ?, "
            "snapshot = ?, error = ?, details = ?, will_retry = ? WHERE id = ?",
            (
                status,
                iso(finished_at),
                round(duration_seconds, 3),
                bytes,
                snapshot,
                error,
                json.dumps(details, default=str) if details is not None else None,
                int(will_retry),
                run_id,
            ),
        )

    def record_run(
        self,
        *,
        job: str,
        kind: str,
        target: str,
        database: str | None,
        trigger: str,
        scheduled_at: datetime | None,
        started_at: datetime,
        status: str,
        duration_seconds: float = 0.0,
        attempt: int = 1,
        bytes: int | None = None,
        snapshot: str | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> int:
        """A finished run in one call: skipped fire times, and manual runs
        (``trigger="manual"``) that a command chooses to record."""
        run_id = self.add_run(
            job=job,
            kind=kind,
            target=target,
            database=database,
            trigger=trigger,
            scheduled_at=scheduled_at,
            started_at=started_at,
            attempt=attempt,
            status="running",
            actor=actor,
        )
        self.finish_run(
            run_id,
            status=status,
            finished_at=started_at + timedelta(seconds=duration_seconds),
            duration_seconds=duration_seconds,
            bytes=bytes,
            snapshot=snapshot,
            error=error,
            details=details,
        )
        return run_id

    def get(self, run_id: int) -> Run:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UsageError(f"no run {run_id} in the catalog")
        return Run.from_row(row)

    def runs(
        self,
        *,
        database: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        job: str | None = None,
        limit: int | None = 50,
    ) -> list[Run]:
        """Newest first."""
        where: list[str] = []
        args: list[str | int] = []
        if database is not None:
            where.append("(database = ? OR database LIKE ? OR target = ?)")
            args += [database, f"{database}/%", database]
        for column, value in (("kind", kind), ("status", status), ("job", job)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [Run.from_row(r) for r in self._db.execute(sql, args)]

    def last_runs(self) -> dict[str, Run]:
        """The newest run of each job."""
        rows = self._db.execute(
            "SELECT * FROM runs WHERE id IN (SELECT max(id) FROM runs GROUP BY job)"
        )
        return {r["job"]: Run.from_row(r) for r in rows}

    def last_scheduled(self) -> dict[str, datetime]:
        """The newest fire time each job's runs stand for."""
        rows = self._db.execute(
            "SELECT job, max(scheduled_at) FROM runs WHERE scheduled_at IS NOT NULL GROUP BY job"
        )
        return {job: datetime.fromisoformat(when) for job, when in rows}

    def mark_interrupted(self, now: datetime, reason: str) -> int:
        """Runs still ``queued`` or ``running`` (their serve stopped without
        recording an end) become ``aborted``. Returns how many."""
        cursor = self._db.execute(
            "UPDATE runs SET status = 'aborted', finished_at = ?, error = ? "
            "WHERE status IN ('queued', 'running')",
            (iso(now), reason),
        )
        return cursor.rowcount

    # -- alerts and meta ---------------------------------------------------

    def alert(self, key: str) -> Alert | None:
        row = self._db.execute("SELECT * FROM alerts WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        since = parse_time(row["since"])
        assert since is not None
        return Alert(
            row["key"],
            row["state"],
            since,
            parse_time(row["notified_at"]),
            json.loads(row["details"]) if row["details"] else None,
        )

    def alerts(self) -> list[Alert]:
        keys = [r[0] for r in self._db.execute("SELECT key FROM alerts ORDER BY key")]
        return [a for a in (self.alert(k) for k in keys) if a is not None]

    def set_alert(
        self,
        key: str,
        state: str,
        since: datetime,
        notified_at: datetime | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO alerts (key, state, since, notified_at, details) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET state = excluded.state, since = excluded.since, "
            "notified_at = excluded.notified_at, details = excluded.details",
            (
                key,
                state,
                iso(since),
                iso(notified_at),
                json.dumps(details, default=str) if details else None,
            ),
        )

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def last_tick(self) -> datetime | None:
        return parse_time(self.get_meta("last_tick"))

    def set_last_tick(self, when: datetime) -> None:
        value = iso(when)
        assert value is not None
        self.set_meta("last_tick", value)


def record_manual_run(
    path: Path,
    *,
    kind: str,
    target: str,
    database: str | None,
    started_at: datetime,
    duration_seconds: float,
    ok: bool,
    bytes: int | None = None,
    snapshot: str | None = None,
    error: str | None = None,
    details: dict[str, Any] | None = None,
    actor: str | None = None,
) -> int:
    """Record a run started by hand (``dbfleet backup``, ...) with trigger
    ``manual``. Safe while serve runs: SQLite serializes the two writers. A
    manual run has no fire time, so it never stands in for a scheduled one."""
    with Catalog(path) as catalog:
        return catalog.record_run(
            job=f"{kind}:{target}",
            kind=kind,
            target=target,
            database=database,
            trigger="manual",
            scheduled_at=None,
            started_at=started_at,
            status="ok" if ok else "failed",
            duration_seconds=duration_seconds,
            bytes=bytes,
            snapshot=snapshot,
            error=error,
            details=details,
            actor=actor,
        )


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold ``<catalog>.lock`` for the block: one serve per catalog."""
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str]
    with closing(open(lock_path, "a+")) as handle:  # noqa: SIM115 - closed by closing()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise OperationError(
                f"job catalog {path} is in use by {holder}",
                hint="one 'dbfleet serve' per catalog; stop the other or set serve.catalog",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
