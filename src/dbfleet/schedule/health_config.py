"""The inventory fields for background health sampling (docs/health.md).

Top level::

    health:
      interval: 30s          # every database is sampled this often
      timeout: 10s           # per sample: connect and each query
      parallel: 4            # samples taken at once
      alerts:                # each one optional; notified once when crossed, once when cleared
        connections_ratio: 0.8   # connections / connections_max at or above
        replication_lag: 30s     # a replica's lag at or above
        cache_hit_ratio: 0.95    # hits / (hits + misses) over the last interval below
        free_ratio: 0.1          # 1 - size / capacity_bytes below

Per database: ``capacity_bytes`` (``500GiB``, ``2TB`` or a number of
bytes), the space the database may fill; ``free_ratio`` and the forecast
measure against it.

Like :mod:`dbfleet.schedule.config`, this imports nothing from
:mod:`dbfleet.config`, which uses these models as field types.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dbfleet.schedule.config import PositiveSpan


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class HealthAlerts(_Strict):
    """``health.alerts``: thresholds; a threshold left out is not alerted on."""

    connections_ratio: float | None = Field(
        default=None, gt=0, le=1, description="alert when connections / max is at or above"
    )
    replication_lag: PositiveSpan | None = Field(
        default=None, description="alert when a replica's lag is at or above"
    )
    cache_hit_ratio: float | None = Field(
        default=None, gt=0, le=1, description="alert when the interval's cache hit ratio is below"
    )
    free_ratio: float | None = Field(
        default=None, gt=0, lt=1, description="alert when free / capacity_bytes is below"
    )


class HealthConfig(_Strict):
    """Top-level ``health:``: ``dbfleet serve`` samples every database."""

    interval: PositiveSpan = Field(default=timedelta(seconds=30))
    timeout: PositiveSpan = Field(
        default=timedelta(seconds=10), description="per sample (connect and each query)"
    )
    parallel: int = Field(default=4, ge=1, le=32, description="samples taken at once")
    alerts: HealthAlerts = Field(default_factory=HealthAlerts)

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> HealthConfig:
        if self.timeout > self.interval:
            raise ValueError(
                f"timeout ({self.timeout.total_seconds():g}s) must not be longer than "
                f"interval ({self.interval.total_seconds():g}s): lower timeout or raise interval"
            )
        return self
