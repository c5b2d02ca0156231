"""Restore drills against every server engine that has landed (PostgreSQL,
MariaDB, Redis logical and RDB, ClickHouse, InfluxDB 1.x), on the real test
servers: back a sample database up, drill it (restore into a scratch target,
compare fingerprints, measure the RTO, drop the scratch target), record it
in a job catalog and read it back as ``dbfleet drills`` does. Also a
PostgreSQL server entry drilled member by member into a scratch database
named in the inventory, a scratch database name on the same MariaDB server,
and a mismatch that still cleans up.

Each drill prints the RTO it measured (``pytest -s`` shows them)."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from dbfleet.catalog import Catalog
from dbfleet.cli.drill import drill_status
from dbfleet.config import DatabaseConfig, Inventory, parse_inventory
from dbfleet.operations.backup import backup_many
from dbfleet.operations.common import Repositories
from dbfleet.operations.drill import DrillResult, drill_targets, exit_code, record
from dbfleet.operations.repository import init_repository
from tests.integration import fixtures_clickhouse, fixtures_influxdb
from tests.integration.conftest import FAST_KDF, PG_PASSWORD_ENV, PgServer

REPO_PW_ENV = "DBFLEET_TEST_DRILL_REPO_PW"


@dataclass
class Case:
    name: str
    config: DatabaseConfig
    leftovers: Callable[[], list[str]]
    """Scratch databases of this source still on the server after the drill."""
    scratch_mark: str = "_dbfleet_drill_"
    """Part of the scratch location's description."""


def _postgresql(request: pytest.FixtureRequest) -> Case:
    source = request.getfixturevalue("pg_source")
    server: PgServer = request.getfixturevalue("pg_server")

    def leftovers() -> list[str]:
        with server.connect() as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                (f"{source.name}_dbfleet_",),
            ).fetchall()
        return [r[0] for r in rows]

    return Case("pg", source.config, leftovers)


def _mysql(request: pytest.FixtureRequest) -> Case:
    source = request.getfixturevalue("mysql_source")
    server = request.getfixturevalue("mysql_server")

    def leftovers() -> list[str]:
        rows = server.query("SHOW DATABASES")
        return [r[0] for r in rows if str(r[0]).startswith(f"{source.name}_dbfleet_")]

    return Case("mariadb", source.config, leftovers)


def _redis(mode: str) -> Callable[[pytest.FixtureRequest], Case]:
    def build(request: pytest.FixtureRequest) -> Case:
        source = request.getfixturevalue("redis_source")
        server = source.server

        def leftovers() -> list[str]:
            # logical: an empty database (above the fixtures' 1-12), flushed afterwards;
            # rdb: a private directory with the RDB file, loaded by a throw-away redis-server
            with server.client() as client:
                used = {int(k[2:]) for k in client.info("keyspace") if k.startswith("db")}
            files = Path(tempfile.gettempdir()).glob("dbfleet-redis-scratch-drill_*")
            return [f"db{db}" for db in sorted(used - set(range(0, 13)))] + [str(f) for f in files]

        options = {"mode": mode} if mode == "rdb" else {}
        mark = "dbfleet-redis-scratch-drill_" if mode == "rdb" else server.url.rsplit("/", 1)[0]
        config = source.config.with_changes(options=options)
        return Case(f"redis-{mode}", config, leftovers, mark)

    return build


def _clickhouse(request: pytest.FixtureRequest) -> Case:
    server: fixtures_clickhouse.ClickHouseServer = request.getfixturevalue("ch_server")
    name = request.getfixturevalue("ch_databases")("drill")
    fixtures_clickhouse.create_sample_database(server, name)

    def leftovers() -> list[str]:
        return server.query(
            f"SELECT name FROM system.databases WHERE startsWith(name, '{name}_dbfleet_')"
        ).split()

    return Case("ch", server.config(name), leftovers)


def _influxdb(request: pytest.FixtureRequest) -> Case:
    server: fixtures_influxdb.InfluxServer = request.getfixturevalue("influx_server")
    name = request.getfixturevalue("influx_databases")("drill")
    fixtures_influxdb.create_sample_database(server, name)

    def leftovers() -> list[str]:
        return sorted(d for d in server.databases() if d.startswith(f"{name}_dbfleet_"))

    return Case("influx", server.config(name), leftovers)


CASES: dict[str, Callable[[pytest.FixtureRequest], Case]] = {
    "postgresql": _postgresql,
    "mysql": _mysql,
    "redis": _redis("logical"),
    "redis-rdb": _redis("rdb"),
    "clickhouse": _clickhouse,
    "influxdb": _influxdb,
}


def _entry(config: DatabaseConfig, **extra: Any) -> dict[str, Any]:
    return {**config.model_dump(mode="json", exclude_defaults=True), **extra}


def _inventory(databases: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.setenv(REPO_PW_ENV, "drill-integration")
    inventory = parse_inventory(
        {
            "repositories": {
                "mem": {
                    "url": f"memory://drill-{secrets.token_hex(6)}",
                    "passphrase_env": REPO_PW_ENV,
                }
            },
            "databases": databases,
        }
    )
    init_repository(inventory, "mem", kdf=FAST_KDF)
    return inventory


def _report(engine: str, r: DrillResult) -> None:
    print(
        f"\nDRILL {engine}: result={r.result} rto={r.rto_seconds}s (restore {r.restore_seconds}s"
        f" + fingerprint {r.fingerprint_seconds}s; cleanup {r.cleanup_seconds}s; total"
        f" {r.total_seconds}s) restored={r.bytes} bytes tables={r.tables_compared}"
    )


@pytest.mark.parametrize("engine", list(CASES))
def test_drill_every_engine(
    engine: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    case = CASES[engine](request)
    inventory = _inventory({case.name: _entry(case.config, rto="10m")}, monkeypatch)
    repos = Repositories(inventory)
    backups = backup_many(repos, [case.name])
    assert all(b.ok for b in backups), backups

    (result,) = drill_targets(repos, [case.name])[case.name]
    _report(engine, result)
    assert result.result == "pass", (result.reason, result.differences)
    assert result.snapshot == backups[0].snapshot and result.tables_compared > 0
    assert result.rto_seconds is not None and 0 < result.rto_seconds <= result.total_seconds
    assert result.within_objective is True and result.rto_objective_seconds == 600
    assert result.scratch and case.scratch_mark in result.scratch and result.bytes > 0
    assert case.leftovers() == [], "the scratch target was not dropped"
    assert exit_code([result]) == 0

    with Catalog(tmp_path / "catalog.db") as cat:
        run = record(cat, case.name, [result], datetime.fromisoformat(result.started_at))
        (row,) = drill_status(inventory, cat)
    assert (row.database, row.result, row.run_id, row.snapshot) == (
        case.name, "pass", run.id, result.snapshot,
    )  # fmt: skip
    assert row.rto_seconds == result.rto_seconds and row.within_objective is True


@pytest.mark.postgres
def test_server_entry_members_into_an_inventory_scratch_database(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prefix = f"dbfleet_it_drill{secrets.token_hex(3)}"
    members, scratch = [f"{prefix}_a", f"{prefix}_b"], f"{prefix}_scratch"
    try:
        for size, name in enumerate(members, start=1):
            with pg_server.connect() as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            with pg_server.connect(name) as conn:
                conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
                conn.execute(
                    "INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, %s) i",
                    (size * 1000,),
                )
        main = {"engine": "postgresql", "url": pg_server.url, "password_env": PG_PASSWORD_ENV}
        inventory = _inventory(
            {
                "pg-main": {
                    **main, "all_databases": True, "include": [f"{prefix}_*"],
                    "exclude": ["*_scratch"], "scratch": "pg-scratch", "rto": "5m",
                },
                # a scratch database named in the inventory: may be on another server
                "pg-scratch": {**main, "url": pg_server.url.rsplit("/", 1)[0] + f"/{scratch}"},
            },
            monkeypatch,
        )  # fmt: skip
        repos = Repositories(inventory)
        assert all(b.ok for b in backup_many(repos, ["pg-main"]))

        results = drill_targets(repos, ["pg-main"])["pg-main"]
        for r in results:
            _report(f"postgresql server entry member {r.database}", r)
        assert [(r.database, r.result) for r in results] == [
            (f"pg-main/{members[0]}", "pass"), (f"pg-main/{members[1]}", "pass"),
        ]  # fmt: skip
        assert all(r.scratch and r.scratch.endswith(f"/{scratch}") for r in results)
        with pg_server.connect() as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (scratch,))
            assert found.fetchone() is None, "the scratch database was not dropped"

        with Catalog(tmp_path / "catalog.db") as cat:
            record(cat, "pg-main", results, datetime.fromisoformat(results[0].started_at))
            rows = drill_status(inventory, cat, ["pg-main"])
        assert [(r.database, r.result, r.rto_objective) for r in rows] == [
            (f"pg-main/{members[0]}", "pass", "5m"), (f"pg-main/{members[1]}", "pass", "5m"),
        ]  # fmt: skip
    finally:
        for name in [*members, scratch]:
            pg_server.drop_database(name)


@pytest.mark.mysql
def test_scratch_name_on_the_same_server_and_a_mismatch_still_cleans_up(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = _mysql(request)
    scratch = request.getfixturevalue("mysql_databases")("scratch")
    inventory = _inventory({"app": _entry(case.config, scratch=scratch)}, monkeypatch)
    repos = Repositories(inventory)
    assert all(b.ok for b in backup_many(repos, ["app"]))
    (result,) = drill_targets(repos, ["app"])["app"]
    assert result.result == "pass" and str(result.scratch).endswith(f"/{scratch}")

    repo = repos.for_database("app")
    latest = repo.find_snapshot("app:latest")
    assert latest.fingerprint is not None
    tables = {k: {**v, "rows": v["rows"] + 1} for k, v in latest.fingerprint["tables"].items()}
    wrong = {**latest.fingerprint, "tables": tables}
    bad = latest.model_copy(update={"id": "", "fingerprint": wrong})
    repo.save_snapshot(bad)
    (result,) = drill_targets(repos, ["app"], snapshot=bad.id)["app"]
    assert result.result == "mismatch" and exit_code([result]) == 3
    assert any("rows" in d for d in result.differences)
    server = request.getfixturevalue("mysql_server")
    assert scratch not in {r[0] for r in server.query("SHOW DATABASES")}
