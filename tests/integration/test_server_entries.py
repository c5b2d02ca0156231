"""An inventory entry that names a whole PostgreSQL server (``all_databases``):
every database on it is backed up, including ones created later."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest
from psycopg import sql

from dbfleet.config import parse_inventory
from dbfleet.operations.backup import backup_many
from dbfleet.operations.common import Repositories
from dbfleet.operations.repository import init_repository
from dbfleet.operations.restore import restore_snapshot, verify_snapshot
from tests.integration.conftest import PG_PASSWORD_ENV, PgServer

pytestmark = pytest.mark.postgres


def _create(server: PgServer, name: str, rows: int) -> None:
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with server.connect(name) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, %s) i", (rows,))


def test_all_databases_includes_new_ones(
    pg_server: PgServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"dbfleet_it_srv{secrets.token_hex(3)}"
    first, second, skipped = f"{prefix}_a", f"{prefix}_b", f"{prefix}_skip"
    _create(pg_server, first, 10)
    _create(pg_server, skipped, 5)
    monkeypatch.setenv("DBFLEET_TEST_REPO_PW", "server-entry-test")
    inventory = parse_inventory(
        {
            "repositories": {
                "mem": {
                    "url": f"memory://server-entries-{prefix}",
                    "passphrase_env": "DBFLEET_TEST_REPO_PW",
                }
            },
            "databases": {
                "pg-main": {
                    "engine": "postgresql",
                    "url": pg_server.url,
                    "password_env": PG_PASSWORD_ENV,
                    "all_databases": True,
                    "include": [f"{prefix}_*"],
                    "exclude": ["*_skip"],
                }
            },
        }
    )
    try:
        init_repository(inventory, "mem", kdf={"n": 2**10, "r": 8, "p": 1})
        repos = Repositories(inventory)
        results = backup_many(repos, ["pg-main"])
        assert [(r.database, r.ok) for r in results] == [(f"pg-main/{first}", True)]

        _create(pg_server, second, 20)  # created after the first run
        results = backup_many(repos, ["pg-main"])
        assert sorted(r.database for r in results if r.ok) == [
            f"pg-main/{first}",
            f"pg-main/{second}",
        ]
        assert all(r.ok for r in results)

        assert verify_snapshot(repos, f"pg-main/{second}:latest").ok
        copy = f"{prefix}_copy"
        result = restore_snapshot(repos, f"pg-main/{second}:latest", target=copy)
        assert copy in result.target
        with pg_server.connect(copy) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (20,)
    finally:
        for name in (first, second, skipped, f"{prefix}_copy"):
            pg_server.drop_database(name)


@pytest.mark.mysql
def test_mysql_server_entry_lists_new_databases(
    mysql_server: Any, mysql_databases: Callable[[str], str]
) -> None:
    from dbfleet.engines.mysql import MySQLEngine

    name = mysql_databases("srv")
    engine = MySQLEngine(mysql_server.config("mysql"))
    assert name not in engine.list_databases()
    mysql_server.execute([f"CREATE DATABASE `{name}`"])
    listed = engine.list_databases()
    assert name in listed
    assert not {"mysql", "information_schema", "performance_schema", "sys"} & set(listed)


def test_clickhouse_server_entry_lists_new_databases(
    ch_server: Any, ch_databases: Callable[[str], str]
) -> None:
    from dbfleet.engines.clickhouse import ClickHouseEngine

    name = ch_databases("srv")
    engine = ClickHouseEngine(ch_server.config("default"))
    assert name not in engine.list_databases()
    ClickHouseEngine(ch_server.config(name))._client().execute(f"CREATE DATABASE {name}")
    listed = engine.list_databases()
    assert name in listed and "system" not in listed


def test_influxdb_server_entry_lists_new_databases(
    influx_server: Any, influx_databases: Callable[[str], str]
) -> None:
    from dbfleet.engines.influxdb import InfluxDBEngine

    name = influx_databases("srv")
    engine = InfluxDBEngine(influx_server.config("_internal"))
    assert name not in engine.list_databases()
    engine._client().query(f'CREATE DATABASE "{name}"')
    listed = engine.list_databases()
    assert name in listed and "_internal" not in listed
