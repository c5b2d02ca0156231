"""The engine interface: one plug-in per database engine.

An engine object is bound to one location (an inventory entry, or a
restore target derived from one). It never touches the repository: backup
writes named streams into a :class:`StreamSink`, restore reads them from a
:class:`StreamSource`. The conformance suite in
``tests/conformance/test_engines.py`` runs every engine through the same
round trip against a real server.

Besides ``Engine`` itself, an engine package may implement capability
protocols (below), each in its own module; the rest of dbfleet reaches them
only through :mod:`dbfleet.engines.registry`, which says "unsupported for
ENGINE" when an engine lacks one. ``Capabilities`` declares which an engine
has; a test checks that the declaration and the registry agree.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Protocol

from dbfleet.config import DatabaseConfig
from dbfleet.errors import UsageError

if TYPE_CHECKING:  # the operations layer imports engines, never the reverse at run time
    import typer

    from dbfleet.config import Inventory
    from dbfleet.migrate.model import Applied, Step
    from dbfleet.operations.common import Repositories
    from dbfleet.repo import Repository, Snapshot
    from dbfleet.repo.check import CheckReport


@dataclass(frozen=True)
class Capabilities:
    subset_restore: bool = False
    """``restore --table`` works (tables, collections or key patterns)."""
    globals: bool = False
    """Server-wide objects (roles, ...) can be included with ``globals: true``."""
    consistency_point: bool = False
    """Snapshots record an engine position (LSN, binlog, oplog)."""
    scratch_targets: bool = True
    """``verify`` can restore into a scratch target and drop it afterwards."""
    server_entries: bool = False
    """``all_databases: true`` works: ``list_databases`` names the databases."""
    point_in_time: bool = False
    """``restore --time`` works (:class:`PointInTime`)."""
    migrations: bool = False
    """``dbfleet migrate`` works (:class:`Migrations`)."""
    health_sample: bool = False
    """A health sample can be taken (:class:`HealthSampler`, ``engines/<engine>/health.py``)."""
    subjects: bool = False
    """One data subject's records can be found, exported, erased (:class:`Subjects`; none yet)."""


@dataclass
class Health:
    ok: bool
    version: str | None = None
    size_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BackupMeta:
    """What an engine reports about a finished backup; goes into the manifest."""

    server_version: str | None = None
    tool: str | None = None
    tool_version: str | None = None
    fingerprint: dict[str, Any] | None = None
    consistency_point: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RestoreOptions:
    tables: tuple[str, ...] = ()
    """Restore only these (engine-specific names, e.g. ``public.orders``)."""
    clean: bool = False
    """Drop objects that the backup contains before recreating them."""
    include_globals: bool = False


class StreamSink(Protocol):
    def write_stream(self, name: str, source: BinaryIO, media_type: str = ...) -> Any:
        """Read ``source`` to EOF and store it as stream ``name``."""


class StreamSource(Protocol):
    def stream_names(self) -> list[str]: ...

    def open_stream(self, name: str) -> Iterator[bytes]:
        """The stream's bytes, in order, verified."""
        ...


class Engine(Protocol):
    """Contract for every engine module.

    - ``backup`` must fail (raise ``EngineError`` with the tool's own message)
      when the dump tool exits non-zero or is killed; the caller then records
      no snapshot. The fingerprint it returns must describe exactly the data
      in the streams (taken in the same snapshot where the engine has them).
    - ``restore`` writes into *this* engine's location, creating the database
      if needed; with ``clean`` it replaces objects the backup contains.
      It must fail loudly, never restore half silently.
    - ``fingerprint`` of a location restored from a backup equals the
      backup's fingerprint (for the restored subset when ``tables`` is given).
    - ``scratch`` returns a config for a throw-away location next to this one
      and ``drop`` removes such a location.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    config: DatabaseConfig

    def health(self) -> Health: ...

    def backup(self, sink: StreamSink) -> BackupMeta: ...

    def restore(self, source: StreamSource, options: RestoreOptions) -> None: ...

    def fingerprint(self, tables: tuple[str, ...] = ()) -> dict[str, Any]: ...

    def scratch(self, label: str) -> DatabaseConfig: ...

    def target(self, name: str) -> DatabaseConfig:
        """A config for restoring next to this location under another name
        (a database on the same server, or a file path for file engines)."""
        ...

    def drop(self) -> None: ...


class ServerEngine(Engine, Protocol):
    """An engine whose entries may name a whole server (``all_databases``)."""

    def list_databases(self) -> list[str]:
        """User databases on the server, now (system databases excluded)."""
        ...


def server_url(config: DatabaseConfig, engine: str, known_options: Collection[str]) -> str:
    """Check a server engine's config: its ``url`` (returned) and that every
    key of ``options`` is one the engine knows (a typo must not be ignored)."""
    if not config.url:
        raise UsageError(f"engine {engine} needs 'url'")
    unknown = set(config.options) - set(known_options)
    if unknown:
        raise UsageError(
            f"unknown {engine} option(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(known_options))})"
        )
    return config.url


# --- capabilities besides backup/restore/fingerprint -------------------------


@dataclass(frozen=True)
class PointInTimeRequest:
    """What ``dbfleet restore ENTRY --time/--lsn/--latest`` asks for. An
    engine refuses (``UsageError``) the fields that do not apply to it."""

    database: str
    """The inventory entry."""
    time: str | None = None
    position: str | None = None
    """An engine log position (PostgreSQL: an LSN)."""
    latest: bool = False
    target: str | None = None
    to: str | None = None
    password_env: str | None = None
    clean: bool = False
    tables: tuple[str, ...] = ()
    include_globals: bool = False
    datadir: Path | None = None
    """PostgreSQL: the new data directory of the recovered cluster."""
    start: bool = False
    port: int | None = None
    accept_gap: bool = False
    """Recover up to a hole in the change archive instead of refusing."""


class PointInTimeResult(Protocol):
    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        ...


class PointInTime(Protocol):
    """Restore an entry as it was at a time or log position, from a snapshot
    and the change log the engine archives (PostgreSQL WAL, MySQL binlogs).

    Must refuse a target it cannot reach exactly (a hole in the archive, a
    time before the first snapshot) rather than stop early silently."""

    def restore_to_point(
        self, inventory: Inventory, repos: Repositories, request: PointInTimeRequest
    ) -> PointInTimeResult: ...

    def render(self, result: PointInTimeResult) -> None:
        """Print the human summary of ``result`` (warnings to stderr)."""
        ...


class ArchiveCopy(Protocol):
    database: str
    destination: str
    wal_files: int
    """Files in the source's archive of ``database``."""
    copied_files: int
    """Files the destination lacked, now stored there."""
    added_bytes: int

    def as_dict(self) -> dict[str, Any]: ...


class ChangeArchive(Protocol):
    """A change log an engine keeps in the repository outside snapshots
    (PostgreSQL's WAL archive). ``repo check``, ``copy`` and ``forget`` reach
    it through this protocol."""

    snapshot_kind: str
    """The snapshot kind whose kept snapshots need the archive (base backups)."""

    def check(self, repo: Repository, report: CheckReport, *, read_data: bool) -> None:
        """Add the archive's problems to ``report`` (holes, conflicts, corruption)."""
        ...

    def databases(self, repo: Repository) -> list[str]:
        """The inventory entries that have an archive in ``repo``."""
        ...

    def copy(
        self, source: Repository, destination: Repository, database: str, destination_name: str
    ) -> ArchiveCopy:
        """Copy ``database``'s archived files that the destination lacks."""
        ...

    def forget(
        self, repo: Repository, database: str, kept: list[Snapshot], *, dry_run: bool
    ) -> list[str]:
        """Remove (unless ``dry_run``) the archived files no kept snapshot
        needs; returns their names."""
        ...


class ChainedSnapshots(Protocol):
    """A snapshot kind kept by the recovery chain of other snapshots rather
    than by the retention policy (MySQL binlog captures): ``forget`` decides
    it last, after the policy has chosen the dumps to keep."""

    kind: str

    def obsolete(self, remaining: list[Snapshot], database: str) -> list[Snapshot]:
        """The snapshots of this kind that no remaining snapshot needs."""
        ...


@dataclass(frozen=True)
class LogCoverage:
    """How far an engine's change log carries a database past its snapshots."""

    stream: str
    """``wal``, ``binlog``, ..."""
    newest_point: datetime
    """The newest moment restorable from a snapshot plus the log after it
    without a hole (UTC)."""
    last_archived: datetime | None
    """When the newest piece of the log reached the repository."""
    pieces: int
    """Log pieces (segments, binlog files) in that unbroken run."""


class RecoveryLog(Protocol):
    """The reach of an engine's change log (PostgreSQL WAL, MySQL binlogs),
    for the recovery point metrics (``dbfleet.observe.recovery``)."""

    stream: str

    def coverage(
        self, repo: Repository, database: str, snapshots: list[Snapshot]
    ) -> LogCoverage | None:
        """``database``'s log coverage given its ``snapshots`` in ``repo``
        (``None``: no log, or none usable after a snapshot). Reads the
        repository's listings only, never object data."""
        ...


class CommandGroup(Protocol):
    """Engine-specific commands (``wal-push``, ``binlog-ship``, ...)."""

    def __call__(self, app: typer.Typer) -> None:
        """Register the commands on ``app`` (idempotent)."""
        ...


# Capabilities the engines gain one by one (``Capabilities`` says which has
# one; commands say "unsupported for ENGINE" otherwise).


class Migrations(Protocol):
    """Apply migrations to one location, keep its history there, lease it
    (the contract :mod:`dbfleet.migrate` relies on):

    - ``history()``: the ``dbfleet_migrations`` record in the database itself,
      by version; ``[]`` when it does not exist. Never creates or changes anything.
    - ``apply(step)`` runs ``step.statements[step.start:]`` and keeps the
      history row in step with what is in effect: after each commit
      ``statements_done`` and ``statement_checksums`` say how far it got; at
      the end ``up`` leaves status ``applied``, ``down`` removes the row. With
      ``transactional_ddl`` the statements that can run in a transaction run
      in one with the history write. On failure it records status ``failed``
      where anything stayed in effect and raises
      :class:`~dbfleet.migrate.model.StepFailed`, never half silently.
    - ``trial(steps)`` (``transactional_ddl`` only): the steps in one
      transaction that is rolled back, skipping (and returning as ``(version,
      index)``) the statements that cannot run in one. Changes nothing.
    - ``record(row)`` writes a row as is (``baseline``); ``forget(version)``
      removes one.
    - ``lease(holder, ttl)`` takes or renews the lease, never blocking:
      ``None`` when ``holder`` has it, else the holder's name. It ends by
      itself when the holder dies (a session lock, or a record whose ``ttl``
      seconds run out unless renewed) and is never held by the session that
      migrates (a waiter must not block ``CREATE INDEX CONCURRENTLY``).
      ``release(holder)`` ends it; ``holder()`` names the holder (``None``:
      free) without taking it.
    - ``split(text)``: a section's statements; ``non_transactional``: cannot run
      in a transaction; ``leftovers()``: debris of failed non-transactional
      statements (INVALID indexes); ``close()``: ends every session and lease.
    """

    transactional_ddl: bool

    def split(self, text: str) -> list[str]: ...
    def non_transactional(self, statement: str) -> bool: ...
    def history(self) -> list[Applied]: ...
    def apply(self, step: Step) -> None: ...
    def trial(self, steps: list[Step]) -> list[tuple[int, int]]: ...
    def record(self, row: Applied) -> None: ...
    def forget(self, version: int) -> None: ...
    def lease(self, holder: str, ttl: float) -> str | None: ...
    def release(self, holder: str) -> None: ...
    def holder(self) -> str | None: ...
    def leftovers(self) -> list[str]: ...
    def close(self) -> None: ...


@dataclass
class HealthSample:
    """One health sample of a location, in one schema for every engine.

    ``None`` means "this engine or server does not have it", never zero.
    Counters (``*_total``) are the server's own cumulative counts since its
    start (Prometheus computes rates); the others are gauges read at
    ``taken_at``. Units are base units: seconds and bytes.
    """

    database: str
    engine: str
    taken_at: datetime
    up: bool
    probe_seconds: float
    error: str | None = None
    """Why ``up`` is false: one line, secrets removed."""
    version: str | None = None
    connections: float | None = None
    connections_max: float | None = None
    replication_lag_seconds: float | None = None
    is_replica: bool | None = None
    cache_hits_total: float | None = None
    cache_misses_total: float | None = None
    lock_waits: float | None = None
    deadlocks_total: float | None = None
    slow_queries_total: float | None = None
    longest_transaction_seconds: float | None = None
    size_bytes: float | None = None
    archive: dict[str, Any] | None = None
    """PostgreSQL ``pg_stat_archiver``: ``archived_total``, ``failed_total``,
    ``last_archived_at`` (ISO text), ``last_failed_at``, ``pending_segments``."""
    pool: dict[str, Any] | None = None
    """pgbouncer: ``clients_active``, ``clients_waiting``, ``servers_active``,
    ``servers_idle``, ``pool_size``, ``max_wait_seconds``, ``per_pool`` (list)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Engine-specific readings worth showing on the database page."""


class HealthSampler(Protocol):
    """Takes one :class:`HealthSample` of a location.

    Contract: never raises for an unreachable or failing server -- it returns
    a sample with ``up=False`` and ``error`` set; it bounds its own time
    (``timeout`` seconds for connecting and for each query); it opens and
    closes its own connection (the sampler thread calls it every
    ``health.interval``); it reads only, never writes to the database.
    """

    def sample(self, timeout: float) -> HealthSample: ...


class Subjects(Protocol):
    """Find, export and erase one data subject's records."""

    def find(self, subject: dict[str, Any]) -> dict[str, int]: ...

    def export(self, subject: dict[str, Any], sink: StreamSink) -> None: ...

    def erase(self, subject: dict[str, Any]) -> dict[str, int]: ...
