"""The inventory: one YAML file describing repositories and databases.

Found at ``--config``, else ``$DBFLEET_CONFIG``, else ``./dbfleet.yaml``.
Validation reports every problem with its path in the document, e.g.
``databases.app-pg.url: field required``. Secrets are never stored in the
file: it names environment variables or files that hold them.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dbfleet.config_yaml import missing_sections, read_document
from dbfleet.engines.names import ALIASES, FILE_ENGINES, INVENTORY_ENGINES, URL_ENGINES, canonical
from dbfleet.errors import ConfigError, UsageError
from dbfleet.schedule.config import (
    DATABASE_KEYS,
    INVENTORY_KEYS,
    DatabaseSchedule,
    DatabaseScheduling,
    NotificationConfig,
    PositiveSpan,
    ScheduleDefaults,
    Scheduling,
    ServeConfig,
    scheduling_problems,
)
from dbfleet.schedule.health_config import HealthConfig
from dbfleet.validation import (
    NAME_RE,
    NAME_RULE,
    has_url_password,
    nested_url_passwords,
    target_name_problem,
)
from dbfleet.web.config import HttpConfig

DEFAULT_PATH = "dbfleet.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


REPOSITORY_SCHEMES = ("file", "s3", "memory")
_PROBLEMS_SEPARATOR = "\n"  # several cross-reference problems in one ValueError


_DURATION = re.compile(r"(\d+)([yYmwdhM])")
_UNIT_DAYS = {"y": 365, "m": 30, "w": 7, "d": 1}
MAX_DURATION_DAYS = 100 * 365
"""The longest duration the inventory and the command line accept (100 years):
longer ones are typos, and would overflow date arithmetic."""


def parse_duration(text: str) -> timedelta:
    """``1y2m3w4d5h`` (years of 365 days, months of 30) -> timedelta."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"invalid duration {text!r}; use e.g. 7d, 36h, 1y6m")
    hours = sum(int(n) * (1 if u == "h" else 24 * _UNIT_DAYS[u.lower()]) for n, u in parts)
    if hours > MAX_DURATION_DAYS * 24:
        raise ValueError(f"duration {text!r} is too long (at most 100y)")
    return timedelta(hours=hours)


class RetentionPolicy(_Strict):
    """How many snapshots to keep (see dbfleet.retention for the semantics)."""

    # strict: YAML's `keep_last: true` must not quietly mean 1
    keep_last: StrictInt = Field(default=0, ge=0)
    keep_hourly: StrictInt = Field(default=0, ge=0)
    keep_daily: StrictInt = Field(default=0, ge=0)
    keep_weekly: StrictInt = Field(default=0, ge=0)
    keep_monthly: StrictInt = Field(default=0, ge=0)
    keep_yearly: StrictInt = Field(default=0, ge=0)
    keep_within: str | None = None

    @field_validator("keep_within")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @property
    def empty(self) -> bool:
        return not any(
            (self.keep_last, self.keep_hourly, self.keep_daily, self.keep_weekly,
             self.keep_monthly, self.keep_yearly, self.keep_within)
        )  # fmt: skip

    def describe(self) -> str:
        rules = [f"{k}={v}" for k, v in self.model_dump().items() if v]
        return ", ".join(rules) or "keep everything"


class SecretSource(_Strict):
    """Where a secret comes from: an environment variable or a file (first line)."""

    env: str | None = None
    file: Path | None = None


class S3Options(_Strict):
    """Settings for ``s3://bucket/prefix`` repositories. Credentials come from
    the named environment variables, else from the AWS shared credentials
    file (``credentials_file``/``profile``), never from the inventory itself."""

    endpoint: str | None = Field(
        default=None, description="e.g. http://127.0.0.1:9000 for MinIO; empty for AWS"
    )
    region: str | None = None
    access_key_env: str = "AWS_ACCESS_KEY_ID"
    secret_key_env: str = "AWS_SECRET_ACCESS_KEY"
    credentials_file: Path | None = None
    profile: str | None = None
    path_style: bool = Field(default=True, description="path-style addressing (MinIO, Ceph)")
    verify_tls: bool = True


class RepositoryConfig(_Strict):
    url: str
    passphrase_env: str | None = None
    passphrase_file: Path | None = None
    description: str | None = None
    s3: S3Options = Field(default_factory=S3Options)
    retention: RetentionPolicy = Field(
        default_factory=RetentionPolicy, description="default policy for its databases"
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if not url.strip():
            raise ValueError("must not be empty")
        if has_url_password(url):
            raise ValueError(
                "must not contain a password or secret key; use passphrase_env/passphrase_file "
                "and s3.access_key_env/secret_key_env"
            )
        scheme = urlsplit(url).scheme if "://" in url else ""
        if scheme and scheme not in REPOSITORY_SCHEMES:
            raise ValueError(
                f"unsupported scheme {scheme!r}; use file:///path, a path or s3://bucket/prefix"
            )
        if scheme == "s3" and not urlsplit(url).netloc:
            raise ValueError("s3:// needs a bucket: s3://bucket/prefix")
        if scheme == "file" and not urlsplit(url).path:
            raise ValueError("file:// needs a path: file:///var/backups/dbfleet")
        return url


class DatabaseConfig(_Strict):
    engine: str
    url: str | None = Field(default=None, validate_default=True)
    path: Path | None = Field(default=None, validate_default=True)
    password_env: str | None = None
    password_file: Path | None = None
    repository: str | None = None
    globals: bool = Field(
        default=False, description="PostgreSQL: also back up roles and tablespaces"
    )
    scratch: str | None = Field(
        default=None,
        description="where verify and drill restore: an inventory database, a database name "
        "on the same server (SQLite: a file name next to the source, or an absolute path)",
    )
    tags: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    retention: RetentionPolicy | None = Field(
        default=None, description="overrides the repository's retention policy"
    )
    copy_to: list[str] = Field(
        default_factory=list,
        description="repositories that each new snapshot is also copied to (3-2-1)",
    )
    all_databases: bool = Field(
        default=False,
        description="the entry names a server: back up every database on it, including "
        "ones created later; snapshots are named '<entry>/<database>'",
    )
    include: list[str] = Field(
        default_factory=lambda: ["*"],
        description="with all_databases: glob patterns of names to back up",
    )
    exclude: list[str] = Field(
        default_factory=list, description="with all_databases: glob patterns of names to skip"
    )
    schedule: DatabaseSchedule | None = Field(
        default=None, description="cron per job (backup, verify, drill, forget, copy); see serve"
    )
    rpo: PositiveSpan | None = Field(
        default=None, description="alert when the latest snapshot is older than this (26h)"
    )
    rto: PositiveSpan | None = Field(
        default=None,
        description="a scheduled verify or a drill fails when its restore takes longer",
    )
    capacity_bytes: ByteSize | None = Field(default=None, gt=0, description="docs/health.md")

    @field_validator("engine")
    @classmethod
    def _alias(cls, engine: str) -> str:
        engine = canonical(engine)
        if engine not in INVENTORY_ENGINES:
            known = ", ".join(sorted(INVENTORY_ENGINES | set(ALIASES)))
            raise ValueError(f"unknown engine {engine!r} (known: {known})")
        return engine

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        engine = info.data.get("engine")
        if engine in URL_ENGINES and not url:
            raise ValueError(f"required for engine {engine}")
        if url and has_url_password(url):
            raise ValueError("must not contain a password; use password_env or password_file")
        if url and engine in FILE_ENGINES:
            raise ValueError(f"engine {engine} takes 'path' (the database file), not 'url'")
        if url and "://" not in url:
            raise ValueError(f"not a URL: {url!r} (e.g. {engine}://user@host/database)")
        return url

    @field_validator("path", mode="before")
    @classmethod
    def _check_path(cls, path: Any, info: ValidationInfo) -> Any:
        engine = info.data.get("engine")
        if engine in FILE_ENGINES and path is None:
            raise ValueError(f"required for engine {engine} (the database file)")
        if path is not None and engine in URL_ENGINES:
            raise ValueError(f"engine {engine} takes 'url', not 'path'")
        if isinstance(path, str | Path):
            text = str(path)
            if not text.strip():
                raise ValueError("must not be empty")
            if "\0" in text:
                raise ValueError("must not contain NUL")
            if "://" in text:
                problem = "a password" if has_url_password(text) else "a URL"
                raise ValueError(f"expected a file path, got {problem}")
        return path

    @field_validator("scratch")
    @classmethod
    def _check_scratch(cls, scratch: str | None) -> str | None:
        problem = target_name_problem(scratch) if scratch is not None else None
        if problem:
            raise ValueError(problem)
        return scratch

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, tags: list[str]) -> list[str]:
        if any(not t.strip() for t in tags):
            raise ValueError("a tag must not be empty")
        return tags

    @field_validator("options")
    @classmethod
    def _check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        secret = nested_url_passwords(options, "options")
        if secret:
            raise ValueError(
                f"{secret[0]} must not contain a password; use password_env or password_file"
            )
        return options

    def with_changes(self, **changes: Any) -> DatabaseConfig:
        return self.model_copy(update=changes)


class Inventory(_Strict):
    version: Literal[1] = 1
    repositories: dict[str, RepositoryConfig] = Field(default_factory=dict)
    databases: dict[str, DatabaseConfig] = Field(default_factory=dict)
    schedule: ScheduleDefaults = Field(default_factory=ScheduleDefaults)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    notifications: list[NotificationConfig] = Field(default_factory=list)
    http: HttpConfig = Field(default_factory=HttpConfig)
    health: HealthConfig | None = None
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _check_references(self) -> Inventory:

        sections: dict[str, dict[str, Any]] = {
            "repositories": self.repositories,
            "databases": self.databases,
        }
        problems = [
            f"{section}.{name!r}: {NAME_RULE}"
            for section, names in sections.items()
            for name in names
            if not NAME_RE.match(name)
        ]
        for name, db in self.databases.items():
            if db.all_databases and db.engine in FILE_ENGINES:
                problems.append(
                    f"databases.{name}.all_databases: {db.engine} has no server to list"
                )
            if db.repository is None and len(self.repositories) == 1:
                db.repository = next(iter(self.repositories))
            if db.repository is None:
                problems.append(
                    f"databases.{name}.repository: required when the inventory has "
                    f"{len(self.repositories)} repositories"
                )
            elif db.repository not in self.repositories:
                problems.append(
                    f"databases.{name}.repository: no repository named {db.repository!r} "
                    f"(defined: {', '.join(sorted(self.repositories)) or 'none'})"
                )
            for index, target in enumerate(db.copy_to):
                if target not in self.repositories:
                    problems.append(
                        f"databases.{name}.copy_to.{index}: no repository named {target!r}"
                    )
                elif target == db.repository:
                    problems.append(
                        f"databases.{name}.copy_to.{index}: {target!r} is the database's own "
                        "repository (copy_to names a second one)"
                    )
        problems.extend(
            scheduling_problems(
                self.scheduling(),
                {name: list(db.copy_to) for name, db in self.databases.items()},
                set(self.databases),
            )
        )
        if problems:
            raise ValueError(_PROBLEMS_SEPARATOR.join(problems))
        return self

    def scheduling(self) -> Scheduling:
        """The scheduling settings (schedules, serve, notifications, per-database
        schedule/rpo/rto) in the form the scheduler uses."""
        databases = {}
        for name, db in self.databases.items():
            values = {key: getattr(db, key, None) for key in DATABASE_KEYS}
            if any(v is not None for v in values.values()):
                databases[name] = DatabaseScheduling.model_validate(values)
        top = {key: getattr(self, key) for key in INVENTORY_KEYS}
        return Scheduling.model_validate(top | {"databases": databases})

    def database(self, name: str) -> DatabaseConfig:
        """The entry for ``name``; for ``<server entry>/<database>`` the server
        entry (whose repository and credentials the member shares)."""
        entry, _member = self.split_member(name)
        try:
            return self.databases[entry]
        except KeyError:
            known = ", ".join(sorted(self.databases)) or "none"
            raise UsageError(f"no database {name!r} in the inventory (defined: {known})") from None

    def split_member(self, name: str) -> tuple[str, str | None]:
        """``"pg-main/app"`` -> ``("pg-main", "app")`` when ``pg-main`` is an
        ``all_databases`` entry; any other name -> ``(name, None)``."""
        entry, slash, member = name.partition("/")
        if slash and member and entry in self.databases and self.databases[entry].all_databases:
            return entry, member
        return name, None

    def repository(self, name: str) -> RepositoryConfig:
        try:
            return self.repositories[name]
        except KeyError:
            known = ", ".join(sorted(self.repositories)) or "none"
            raise UsageError(
                f"no repository {name!r} in the inventory (defined: {known})"
            ) from None


def _format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the README's inventory section)"
        if err["type"] == "value_error" and _PROBLEMS_SEPARATOR in message and not path:
            problems.extend(message.split(_PROBLEMS_SEPARATOR))
            continue
        problems.append(f"{path}: {message}" if path else message)
    return problems


def parse_inventory(document: Any, source: Path | None = None) -> Inventory:
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{source or 'inventory'}: the top level must be a mapping")
    try:
        inventory = Inventory.model_validate(document)
    except ValidationError as exc:
        problems = _format_errors(exc)
        # Field errors stop pydantic before the cross-references are checked;
        # check them on the raw document so one run reports every problem.
        problems += [p for p in _reference_problems(document) if p not in problems]
        raise ConfigError(f"{source or 'inventory'} is invalid:", problems) from None
    inventory.source = source
    return inventory


def _reference_problems(document: dict[str, Any]) -> list[str]:
    repositories = document.get("repositories")
    databases = document.get("databases")
    if not isinstance(repositories, dict) or not isinstance(databases, dict):
        return []
    problems = []
    for name, db in databases.items():
        if not isinstance(db, dict):
            continue
        ref = db.get("repository")
        if isinstance(ref, str) and ref not in repositories:
            problems.append(
                f"databases.{name}.repository: no repository named {ref!r} "
                f"(defined: {', '.join(sorted(map(str, repositories))) or 'none'})"
            )
    return problems


def config_path(explicit: str | Path | None) -> Path:
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("DBFLEET_CONFIG") or DEFAULT_PATH)


def load_inventory(explicit: str | Path | None = None) -> Inventory:
    path = config_path(explicit)
    document = read_document(path)
    missing_sections(path, document, Inventory.model_fields)
    return parse_inventory(document, path)
