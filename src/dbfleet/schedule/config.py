"""The inventory fields for scheduling, freshness and notifications.

Top level::

    schedule:                 # defaults for every database; `prune` is per repository
      timezone: UTC
      backup: "0 2 * * *"
      verify: "0 5 * * 0"
      drill: "0 6 * * 6"      # restore drill: verify + RTO + catalog record (docs/drills.md)
      forget: "30 3 * * *"
      prune: "0 4 * * 0"
    serve:
      concurrency: 2
      job_timeout: 6h
      retries: 3
      backoff: 1m
      missed_runs: run-once   # or skip
    notifications:
      - type: slack
        url_env: SLACK_WEBHOOK_URL

Per database::

    schedule: {backup: "*/30 * * * *", verify: off}
    rpo: 26h
    rto: 30m

This module imports nothing from :mod:`dbfleet.config`, so that module can
use these models as field types. Durations here use ``s``, ``m`` (minutes),
``h``, ``d`` and ``w`` (``90s``, ``30m``, ``1h30m``, ``2d``) -- unlike
retention's ``keep_within``, where ``m`` means months, a minute is what
``m`` means for timeouts and objectives.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from dbfleet.schedule.cron import normalize, zone

if TYPE_CHECKING:  # health_config imports this module's span types
    from dbfleet.schedule.health_config import HealthConfig

JOB_KINDS = ("backup", "verify", "drill", "forget", "copy", "prune")
DATABASE_JOB_KINDS = ("backup", "verify", "drill", "forget", "copy")
EVENTS = ("job_failed", "job_recovered", "database_stale", "database_fresh", "health_alert",
          "health_cleared")  # fmt: skip
OFF = "off"

_SPAN = re.compile(r"(\d+)\s*(ms|s|min|m|h|d|w)")
_SPAN_UNITS = {
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}


MAX_SPAN = timedelta(days=100 * 365)
"""The longest duration accepted (100 years): longer is a typo, and would
overflow the date arithmetic of schedules and freshness."""


def parse_span(value: Any) -> timedelta:
    """``"1h30m"``, ``"90s"``, ``"2d"``, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 10m, 6h, 2d")
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("expected a duration like 30s, 10m, 6h, 2d (a finite number)")
        if value < 0:
            raise ValueError("a duration must not be negative")
        if value > MAX_SPAN.total_seconds():
            raise ValueError(f"duration {value!r} is too long (at most 100 years)")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("expected a duration like 30s, 10m, 6h, 2d")
    text = value.strip().lower()
    parts = _SPAN.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"invalid duration {value!r}; use e.g. 90s, 30m, 6h, 1h30m, 2d, 1w")
    # in integer milliseconds first: int * timedelta overflows on a huge count
    milliseconds = sum(int(n) * (_SPAN_UNITS[u] // _SPAN_UNITS["ms"]) for n, u in parts)
    if milliseconds > MAX_SPAN // _SPAN_UNITS["ms"]:
        raise ValueError(f"duration {value!r} is too long (at most 100 years)")
    return timedelta(milliseconds=milliseconds)


def format_span(span: timedelta | None) -> str:
    """``timedelta(hours=26)`` -> ``"1d2h"``; the inverse of :func:`parse_span`."""
    if span is None:
        return "-"
    seconds = int(span.total_seconds())
    if seconds <= 0:
        return f"{span.total_seconds():g}s"
    out = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def _span_or_off(value: Any) -> timedelta | None:
    if value is None or value is False:  # YAML reads a bare `off` as false
        return None
    if isinstance(value, str) and value.strip().lower() in (OFF, "never"):
        return None
    return parse_span(value)


def _positive(span: timedelta) -> timedelta:
    if span <= timedelta():
        raise ValueError("must be longer than zero")
    return span


def _cron_or_off(value: Any) -> str:
    if value is None or value is False:
        return OFF
    if not isinstance(value, str):
        raise ValueError("expected a cron expression like '0 2 * * *', or off")
    if value.strip().lower() == OFF:
        return OFF
    return normalize(value)


def _timezone(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected an IANA time zone name like UTC or Europe/Berlin")
    zone(value)
    return value


_serialize_span = PlainSerializer(format_span, return_type=str)
Span = Annotated[timedelta, BeforeValidator(parse_span), _serialize_span]
"""A duration: ``90s``, ``30m``, ``6h``, ``1h30m``, ``2d``, ``1w`` or seconds."""
PositiveSpan = Annotated[
    timedelta, BeforeValidator(parse_span), AfterValidator(_positive), _serialize_span
]
OptionalSpan = Annotated[
    timedelta | None,
    BeforeValidator(_span_or_off),
    PlainSerializer(lambda v: OFF if v is None else format_span(v), return_type=str),
]
CronField = Annotated[str, BeforeValidator(_cron_or_off)]
"""A cron expression, or ``off`` (also YAML ``null``/``false``) to disable."""
TimeZoneName = Annotated[str, BeforeValidator(_timezone)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DatabaseSchedule(_Strict):
    """``databases.NAME.schedule``: when each job runs for this database. A
    key left out inherits the top-level ``schedule:``; ``off`` disables it."""

    backup: CronField | None = None
    verify: CronField | None = Field(
        default=None, description="restore the latest snapshot into scratch and compare"
    )
    drill: CronField | None = Field(
        default=None,
        description="restore drill: restore into scratch, compare, measure the RTO, record it",
    )
    forget: CronField | None = Field(
        default=None, description="apply the retention policy (prune frees the space)"
    )
    copy_: CronField | None = Field(
        default=None,
        alias="copy",
        description="copy snapshots to every copy_to repository (backup also does after each run)",
    )
    timezone: TimeZoneName | None = None
    timeout: PositiveSpan | None = Field(default=None, description="overrides serve.job_timeout")
    retries: int | None = Field(default=None, ge=0, le=20, description="overrides serve.retries")

    def cron(self, kind: str) -> str | None:
        """The expression for ``kind``, ``"off"``, or ``None`` when not set here."""
        value: str | None = getattr(self, "copy_" if kind == "copy" else kind)
        return value


class ScheduleDefaults(DatabaseSchedule):
    """Top-level ``schedule:``: defaults for every database, the time zone,
    and ``prune`` (run for every repository)."""

    timezone: TimeZoneName | None = "UTC"
    prune: CronField | None = Field(
        default=None, description="prune every repository (exclusive lock: backups wait)"
    )

    def cron(self, kind: str) -> str | None:
        if kind == "prune":
            return self.prune
        return super().cron(kind)


class ServeConfig(_Strict):
    """Top-level ``serve:``: how ``dbfleet serve`` runs jobs."""

    concurrency: int = Field(default=2, ge=1, le=64, description="jobs running at once")
    job_timeout: PositiveSpan = Field(default=timedelta(hours=6))
    retries: int = Field(default=3, ge=0, le=20, description="extra attempts after a failure")
    backoff: PositiveSpan = Field(
        default=timedelta(minutes=1), description="delay before the first retry; doubles each time"
    )
    backoff_max: PositiveSpan = Field(default=timedelta(hours=1))
    missed_runs: Literal["run-once", "skip"] = Field(
        default="run-once",
        description="runs missed while serve was stopped: run each such job once, or skip",
    )
    misfire_grace: PositiveSpan = Field(
        default=timedelta(minutes=1),
        description="a fire time at most this old when seen is on time, not missed",
    )
    shutdown: Literal["abort", "finish"] = Field(
        default="abort",
        description="on SIGTERM: abort running jobs, or let them finish within shutdown_grace",
    )
    shutdown_grace: PositiveSpan = Field(default=timedelta(seconds=30))
    freshness_interval: PositiveSpan = Field(
        default=timedelta(minutes=1), description="how often RPOs are checked"
    )
    alert_repeat: OptionalSpan = Field(
        default=timedelta(hours=24),
        description="remind about a still-failing job or still-stale database; off: only on change",
    )
    catalog: Path | None = Field(
        default=None,
        description="SQLite job catalog (default: <inventory>.catalog.db next to the inventory)",
    )


Event = Literal["job_failed", "job_recovered", "database_stale", "database_fresh",
                "health_alert", "health_cleared"]  # fmt: skip


def _all_events() -> list[Event]:
    return ["job_failed", "job_recovered", "database_stale", "database_fresh", "health_alert",
            "health_cleared"]  # fmt: skip


class _Channel(_Strict):
    name: str | None = Field(default=None, description="label in logs (default: type#index)")
    events: list[Event] = Field(default_factory=_all_events)
    timeout: PositiveSpan = Field(default=timedelta(seconds=10))


class _UrlChannel(_Channel):
    url: str | None = None
    url_env: str | None = None
    url_file: Path | None = None

    @model_validator(mode="after")
    def _one_url(self) -> _UrlChannel:
        given = [k for k in ("url", "url_env", "url_file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of url, url_env, url_file")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self


class WebhookChannel(_UrlChannel):
    """POST a JSON document (see docs/scheduling.md) to ``url``."""

    type: Literal["webhook"]
    headers: dict[str, str] = Field(default_factory=dict, description="extra, non-secret headers")
    bearer_token_env: str | None = None
    bearer_token_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str | None) -> str | None:
        if url is not None and "@" in url.split("://", 1)[-1].split("/", 1)[0]:
            raise ValueError("must not contain credentials; use bearer_token_env or url_env")
        return url


class SlackChannel(_UrlChannel):
    """Slack (or Mattermost, Rocket.Chat, ...) incoming webhook: ``{"text": ...}``.
    The URL is the secret, so it comes from ``url_env`` or ``url_file``."""

    type: Literal["slack"]

    @field_validator("url")
    @classmethod
    def _url_is_secret(cls, url: str | None) -> str | None:
        if url is not None:
            raise ValueError("a Slack webhook URL is a secret: use url_env or url_file, not url")
        return url


class EmailChannel(_Channel):
    """Plain-text mail over SMTP (STARTTLS by default)."""

    type: Literal["email"]
    host: str
    port: int | None = Field(default=None, ge=1, le=65535, description="default: 587/465/25")
    security: Literal["starttls", "ssl", "none"] = "starttls"
    ca_file: Path | None = Field(default=None, description="CA bundle to trust (private CA)")
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    subject_prefix: str = "[dbfleet]"

    @model_validator(mode="after")
    def _auth(self) -> EmailChannel:
        has_password = self.password_env is not None or self.password_file is not None
        if has_password and not self.username:
            raise ValueError("password_env/password_file need username")
        if has_password and self.security == "none":
            raise ValueError("refusing to send a password without TLS (security: none)")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "ssl": 465, "none": 25}[self.security]


NotificationConfig = Annotated[
    WebhookChannel | SlackChannel | EmailChannel, Field(discriminator="type")
]


class DatabaseScheduling(_Strict):
    """The keys a database entry gains: ``schedule``, ``rpo``, ``rto``,
    ``capacity_bytes`` (docs/health.md)."""

    schedule: DatabaseSchedule | None = None
    rpo: PositiveSpan | None = Field(
        default=None, description="alert when the latest snapshot is older than this"
    )
    rto: PositiveSpan | None = Field(
        default=None,
        description="a scheduled verify or a drill fails when its restore takes longer",
    )
    capacity_bytes: ByteSize | None = Field(default=None, gt=0)


class Scheduling(_Strict):
    """Everything serve needs from the inventory, in one object."""

    schedule: ScheduleDefaults = Field(default_factory=ScheduleDefaults)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    notifications: list[NotificationConfig] = Field(default_factory=list)
    databases: dict[str, DatabaseScheduling] = Field(default_factory=dict)
    health: HealthConfig | None = None

    def database(self, name: str) -> DatabaseScheduling:
        return self.databases.get(name) or DatabaseScheduling()

    def effective_cron(self, database: str, kind: str) -> tuple[str | None, str]:
        """``(expression or None, time zone)`` for one database's job."""
        own = self.database(database).schedule
        value = own.cron(kind) if own is not None else None
        if value is None:
            value = self.schedule.cron(kind)
        tz = (own.timezone if own is not None else None) or self.schedule.timezone or "UTC"
        return (None if value in (None, OFF) else value), tz


INVENTORY_KEYS = ("schedule", "serve", "notifications", "health")
DATABASE_KEYS = ("schedule", "rpo", "rto", "capacity_bytes")


def scheduling_problems(
    scheduling: Scheduling, copy_to: dict[str, list[str]], databases: set[str]
) -> list[str]:
    """Cross-references the models cannot check alone, with their paths."""
    problems = []
    for name in scheduling.databases:
        if name not in databases:
            problems.append(f"databases.{name}: not in the inventory")
    for name in sorted(databases):
        own = scheduling.database(name).schedule
        if own is not None and own.copy_ not in (None, OFF) and not copy_to.get(name):
            problems.append(
                f"databases.{name}.schedule.copy: {name} has no copy_to repositories to copy to"
            )
    names = [c.name for c in scheduling.notifications if c.name]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"notifications: name {duplicate!r} is used twice")
    return problems


def _resolve_health() -> None:
    """Complete ``Scheduling.health`` once both modules are loaded (the
    health models use this module's span types)."""
    from dbfleet.schedule.health_config import HealthConfig

    Scheduling.model_rebuild(_types_namespace={"HealthConfig": HealthConfig})


_resolve_health()
