"""The catalog's ``health_samples`` table: history of each database's
health samples, for the database page, the forecast and alerts.

Retention (:meth:`HealthHistory.prune_health_samples`, run by the
monitor at most hourly): every sample is kept for
:data:`FULL_RESOLUTION` (7 days); older ones are thinned to the last
sample of each UTC day per database, which is what the size forecast
needs. The table therefore grows by ``86400 / interval`` rows per database
for a week and by one row per database per day after that.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from dbfleet.engines.base import HealthSample

FULL_RESOLUTION = timedelta(days=7)


def _iso(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("catalog times must be timezone-aware")
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def sample_to_json(sample: HealthSample) -> str:
    document = asdict(sample)
    document["taken_at"] = _iso(sample.taken_at)
    return json.dumps(document, default=str, sort_keys=True)


def sample_from_json(text: str) -> HealthSample:
    """The sample as stored; keys this dbfleet does not know are ignored."""
    document: dict[str, Any] = json.loads(text)
    known = HealthSample.__dataclass_fields__
    values = {k: v for k, v in document.items() if k in known}
    values["taken_at"] = datetime.fromisoformat(values["taken_at"])
    return HealthSample(**values)


class HealthHistory:
    """Methods :class:`dbfleet.catalog.Catalog` gains for ``health_samples``."""

    _db: sqlite3.Connection

    def _transaction(self) -> AbstractContextManager[None]:  # provided by Catalog
        raise NotImplementedError

    def add_health_sample(self, sample: HealthSample) -> int:
        """Store one sample; returns its row id."""
        cursor = self._db.execute(
            "INSERT INTO health_samples (database, taken_at, up, size_bytes, sample)"
            " VALUES (?, ?, ?, ?, ?)",
            (sample.database, _iso(sample.taken_at), int(sample.up), sample.size_bytes,
             sample_to_json(sample)),
        )  # fmt: skip
        return int(cursor.lastrowid or 0)

    def health_history(
        self, database: str, since: datetime | None = None, *, until: datetime | None = None
    ) -> list[HealthSample]:
        """``database``'s samples taken at or after ``since`` (all when
        ``None``) and before ``until``, oldest first."""
        query = "SELECT sample FROM health_samples WHERE database = ?"
        params: list[Any] = [database]
        if since is not None:
            query += " AND taken_at >= ?"
            params.append(_iso(since))
        if until is not None:
            query += " AND taken_at < ?"
            params.append(_iso(until))
        rows = self._db.execute(query + " ORDER BY taken_at, id", params)
        return [sample_from_json(row[0]) for row in rows]

    def size_history(self, database: str, since: datetime | None = None) -> Iterator[
        tuple[datetime, float]
    ]:  # fmt: skip
        """``(taken_at, size_bytes)`` of the samples that have a size, oldest
        first: the forecast's input, read without decoding the samples."""
        query = "SELECT taken_at, size_bytes FROM health_samples WHERE database = ?"
        query += " AND size_bytes IS NOT NULL"
        params: list[Any] = [database]
        if since is not None:
            query += " AND taken_at >= ?"
            params.append(_iso(since))
        for taken_at, size in self._db.execute(query + " ORDER BY taken_at, id", params):
            yield datetime.fromisoformat(taken_at), float(size)

    def prune_health_samples(self, now: datetime) -> int:
        """Apply the retention (module docstring); returns rows removed."""
        cutoff = _iso(now - FULL_RESOLUTION)
        with self._transaction():
            cursor = self._db.execute(
                "DELETE FROM health_samples WHERE taken_at < ? AND id NOT IN ("
                " SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY database,"
                "  substr(taken_at, 1, 10) ORDER BY taken_at DESC, id DESC) AS n"
                "  FROM health_samples WHERE taken_at < ?) WHERE n = 1)",
                (cutoff, cutoff),
            )
        return cursor.rowcount
