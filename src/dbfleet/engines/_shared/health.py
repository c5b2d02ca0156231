"""What every engine's health sampler shares: timing, the never-raise
contract and secret scrubbing (see ``HealthSampler`` in engines/base.py).

An engine's ``health.py`` writes only ``collect(sample, timeout)``: it fills
the readings its server has and leaves the others ``None``; any exception
it lets through becomes ``up=False`` with a one-line error here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from dbfleet.config import DatabaseConfig
from dbfleet.engines.base import HealthSample
from dbfleet.errors import DbfleetError, one_line, redact
from dbfleet.secrets import secret_from

MAX_ERROR = 300
"""Errors are cut to this many characters: one line on a page or in a log."""


def password_of(config: DatabaseConfig) -> str | None:
    """The entry's password, or ``None`` (also when its file is unreadable:
    the connection attempt then says what is wrong)."""
    try:
        return secret_from(config.password_env, config.password_file)
    except DbfleetError:
        return None


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` on one line, without any of ``secrets`` and URL passwords."""
    line = one_line(text) or "error"
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    line = redact(line)
    return line if len(line) <= MAX_ERROR else line[: MAX_ERROR - 3] + "..."


def with_options(config: DatabaseConfig, **options: Any) -> DatabaseConfig:
    """``config`` with ``options`` overriding its own (the sampler's timeouts)."""
    return config.with_changes(options={**config.options, **options})


def take_sample(
    database: str,
    engine: str,
    config: DatabaseConfig,
    timeout: float,
    collect: Callable[[HealthSample, float], None],
) -> HealthSample:
    """Run ``collect`` on a fresh sample; never raises (the contract)."""
    started = time.monotonic()
    sample = HealthSample(
        database=database, engine=engine, taken_at=datetime.now(UTC), up=True, probe_seconds=0.0
    )
    try:
        collect(sample, timeout)
    except Exception as exc:  # noqa: BLE001 - the contract: a down server is a sample
        sample.up = False
        message = exc.message if isinstance(exc, DbfleetError) else f"{type(exc).__name__}: {exc}"
        sample.error = scrub(message, [password_of(config)])
    sample.probe_seconds = round(time.monotonic() - started, 6)
    return sample


def number(value: Any) -> float | None:
    """``value`` as a float, ``None`` when absent or not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
