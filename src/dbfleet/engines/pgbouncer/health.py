"""PgBouncer health sample through its admin console (what
pgbouncer_exporter reads).

Readings: client connections (active + waiting, over every pool including
the console) against ``max_client_conn`` (``SHOW CONFIG``); ``pool`` with
the clients active and waiting, server connections active and idle and the
pool size (``default_pool_size`` times the pools in use, or each database's
own ``pool_size`` from ``SHOW DATABASES``) over the pools that serve
databases (the console's own pool left out), the longest wait of a queued
client (``maxwait``), and ``per_pool`` rows; ``SHOW STATS`` totals in
``extra`` (``wait_seconds_total``, ``queries_total``, ``transactions_total``)
and the version. A pool has no size, cache, locks or replication: ``None``.

The console speaks only the simple query protocol and no transactions:
the connection is autocommit with a client-side cursor.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.health import number, password_of, scrub, take_sample
from dbfleet.engines.base import HealthSample
from dbfleet.errors import EngineError, UsageError

CONSOLE = "pgbouncer"


class PgBouncerHealthSampler:
    """:class:`~dbfleet.engines.base.HealthSampler` for a PgBouncer entry."""

    def __init__(self, database: str, config: DatabaseConfig) -> None:
        self.database = database
        self.config = config

    def sample(self, timeout: float) -> HealthSample:
        return take_sample(self.database, "pgbouncer", self.config, timeout, self._collect)

    def _collect(self, sample: HealthSample, timeout: float) -> None:
        if not self.config.url:
            raise UsageError("engine pgbouncer needs 'url'")
        parts = urlsplit(self.config.url)
        where = f"{parts.hostname or 'localhost'}:{parts.port or 6432}"
        password = password_of(self.config)
        try:
            conn = psycopg.connect(
                host=parts.hostname or "localhost", port=parts.port or 6432,
                user=unquote(parts.username or "") or None, password=password,
                dbname=parts.path.strip("/") or CONSOLE, autocommit=True,
                connect_timeout=max(2, math.ceil(timeout)), cursor_factory=psycopg.ClientCursor,
            )  # fmt: skip
        except psycopg.Error as exc:
            reason = scrub(str(exc), [password])
            raise EngineError(f"cannot connect to PgBouncer {where}: {reason}") from None
        try:
            with conn:
                _fill(sample, {q: _rows(conn, q) for q in _QUERIES})
        except psycopg.Error as exc:
            raise EngineError(f"PgBouncer {where}: {scrub(str(exc), [password])}") from None


_QUERIES = ("SHOW VERSION", "SHOW CONFIG", "SHOW POOLS", "SHOW DATABASES", "SHOW STATS")


def _rows(conn: psycopg.Connection[Any], query: str) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(query)
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _fill(sample: HealthSample, answers: dict[str, list[dict[str, Any]]]) -> None:
    version = answers["SHOW VERSION"]
    sample.version = str(next(iter(version[0].values()))) if version else None
    config = {str(r["key"]): r["value"] for r in answers["SHOW CONFIG"]}
    sample.connections_max = number(config.get("max_client_conn"))
    default_size = number(config.get("default_pool_size")) or 0.0
    sizes = {str(r["name"]): number(r.get("pool_size")) for r in answers["SHOW DATABASES"]}
    pools = answers["SHOW POOLS"]
    sample.connections = sum((number(p.get("cl_active")) or 0) + (number(p.get("cl_waiting")) or 0)
                             for p in pools)  # fmt: skip
    served = [p for p in pools if p.get("database") != CONSOLE]
    per_pool: list[dict[str, Any]] = []
    for p in served:
        wait = (number(p.get("maxwait")) or 0) + (number(p.get("maxwait_us")) or 0) / 1e6
        per_pool.append({
            "database": p.get("database"), "user": p.get("user"),
            "clients_active": number(p.get("cl_active")),
            "clients_waiting": number(p.get("cl_waiting")),
            "servers_active": number(p.get("sv_active")),
            "servers_idle": number(p.get("sv_idle")),
            "pool_size": sizes.get(str(p.get("database"))) or default_size,
            "max_wait_seconds": wait, "mode": p.get("pool_mode"),
        })  # fmt: skip

    def total(key: str) -> float:
        return float(sum(p[key] or 0 for p in per_pool))

    sample.pool = {
        "clients_active": total("clients_active"),
        "clients_waiting": total("clients_waiting"),
        "servers_active": total("servers_active"),
        "servers_idle": total("servers_idle"),
        "pool_size": total("pool_size"),
        "max_wait_seconds": max((float(p["max_wait_seconds"]) for p in per_pool), default=0.0),
        "per_pool": per_pool,
    }
    stats = [s for s in answers["SHOW STATS"] if s.get("database") != CONSOLE]
    sample.extra.update(
        max_client_conn=sample.connections_max,
        default_pool_size=default_size,
        wait_seconds_total=sum(number(s.get("total_wait_time")) or 0 for s in stats) / 1e6,
        queries_total=sum(number(s.get("total_query_count")) or 0 for s in stats),
        transactions_total=sum(number(s.get("total_xact_count")) or 0 for s in stats),
    )
