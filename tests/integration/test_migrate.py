"""``dbfleet migrate`` on the real servers: PostgreSQL, MariaDB and SQLite.

Each test builds an estate (inventory, file repository, migration files) in
a temporary directory and runs the CLI as a process, as a user would."""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from tests.integration.conftest import PG_PASSWORD_ENV, PgServer
from tests.integration.fixtures_mysql import MYSQL_PASSWORD_ENV, MySQLServer
from tests.integration.migrate_kit import Estate, make_estate, wait_for

ENGINES = ["sqlite", "postgresql", "mysql"]


@dataclass
class Target:
    """One scratch database of one engine: its inventory entry and a way to look inside."""

    engine: str
    entry: dict[str, Any]
    tables: Callable[[], set[str]]
    columns: Callable[[str], set[str]]
    sleep: Callable[[float], str]
    """A statement that takes that long."""


def _sqlite(tmp_path: Path) -> Target:
    path = tmp_path / f"db-{secrets.token_hex(3)}.sqlite"
    with closing(sqlite3.connect(path)) as conn:  # an existing, empty database
        conn.execute("VACUUM")

    def query(text: str) -> list[tuple[Any, ...]]:
        if not path.exists():
            return []
        with closing(sqlite3.connect(path)) as conn:
            return conn.execute(text).fetchall()

    return Target(
        "sqlite", {"engine": "sqlite", "path": str(path)},
        tables=lambda: {r[0] for r in query("SELECT name FROM sqlite_master WHERE type='table'")},
        columns=lambda t: {r[1] for r in query(f"PRAGMA table_info({t})")},
        sleep=lambda s: "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        f"WHERE x < {int(s * 4_000_000)}) SELECT count(*) FROM c",
    )  # fmt: skip


def _pg(server: PgServer, names: Callable[[str], str]) -> Target:
    name = names("mig")
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def query(text: str, *args: Any) -> list[tuple[Any, ...]]:
        with server.connect(name) as conn:
            return conn.execute(text, args or None).fetchall()

    return Target(
        "postgresql",
        {"engine": "postgresql", "url": server.config(name).url, "password_env": PG_PASSWORD_ENV},
        tables=lambda: {r[0] for r in query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")},
        columns=lambda t: {r[0] for r in query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", t)},
        sleep=lambda s: f"SELECT pg_sleep({s})",
    )  # fmt: skip


def _mysql(server: MySQLServer, names: Callable[[str], str]) -> Target:
    name = names("mig")
    server.execute([f"CREATE DATABASE `{name}`"])
    return Target(
        "mysql",
        {"engine": "mysql", "url": server.config(name).url, "password_env": MYSQL_PASSWORD_ENV},
        tables=lambda: {r[0] for r in server.query("SHOW TABLES", name)},
        columns=lambda t: {r[0] for r in server.query(f"SHOW COLUMNS FROM `{t}`", name)},
        sleep=lambda s: f"SELECT SLEEP({s})",
    )  # fmt: skip


@pytest.fixture
def make_target(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Target]:
    def make(engine: str) -> Target:
        if engine == "sqlite":
            return _sqlite(tmp_path)
        if engine == "postgresql":
            return _pg(
                request.getfixturevalue("pg_server"), request.getfixturevalue("pg_databases")
            )
        return _mysql(
            request.getfixturevalue("mysql_server"), request.getfixturevalue("mysql_databases")
        )

    return make


@pytest.fixture
def estate(tmp_path: Path) -> Iterator[Estate]:
    yield make_estate(tmp_path / "estate")


USERS = """-- migrate:up
CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(100));
INSERT INTO users VALUES (1, 'first'), (2, 'semi;colon'), (3, 'last');
-- migrate:down
DROP TABLE users;
"""
EMAIL = """-- migrate:up
ALTER TABLE users ADD COLUMN email VARCHAR(200);
CREATE INDEX users_email ON users (email);
-- migrate:down
DROP INDEX users_email${on_users};
ALTER TABLE users DROP COLUMN email;
"""


def _on_users(engine: str) -> str:
    return " ON users" if engine == "mysql" else ""


@pytest.mark.parametrize("engine", ENGINES)
def test_apply_status_down_and_drift(
    engine: str, estate: Estate, make_target: Callable[[str], Target]
) -> None:
    target = make_target(engine)
    estate.settings["migrations"] = {"vars": {"on_users": _on_users(engine)}}
    estate.add("app", target.entry)
    estate.migration("app", "0001_users.sql", USERS)
    email = estate.migration("app", "0002_email.sql", EMAIL)

    result = estate.run("up")
    assert result.code == 0, result.stderr
    assert {"users", "dbfleet_migrations"} <= target.tables()
    assert "email" in target.columns("users")
    status = estate.status("app")
    assert status["database"] == "app" and status["engine"] == engine
    assert status["current"] == 2 and status["pending"] == [] and status["drift"] == []
    assert status["lock"] is None
    first, last = status["applied"]
    assert (first["version"], first["name"], last["version"]) == (1, "users", 2)
    assert len(first["checksum"]) == 64 and first["duration_seconds"] >= 0
    assert first["applied_at"].startswith("20")
    # the pre-migration snapshot is in the repository, tagged with the plan
    tags = [t for s in estate.snapshots() for t in s.get("tags", [])]
    assert any(t.startswith("migrate-plan:") for t in tags), tags
    assert [r["status"] for r in estate.catalog_runs()] == ["ok"]
    assert estate.catalog_runs()[0]["actor"].startswith("cli:")

    # validate is clean, then an edit of an applied file is drift (exit 1)
    assert estate.run("validate").code == 0
    email.write_text(EMAIL.replace("VARCHAR(200)", "VARCHAR(300)"))
    result = estate.run("validate")
    assert result.code == 1 and "(0002_email.sql) changed since it was applied" in result.stdout
    assert estate.run("up").code == 1  # up refuses drift too
    email.write_text(EMAIL)

    # down to 1 removes the column and the history row; down to 0 the table
    result = estate.run("down", "app", "--to", "1")
    assert result.code == 0, result.stderr
    assert "email" not in target.columns("users")
    assert estate.status("app")["current"] == 1 and estate.status("app")["pending"] == [2]
    assert estate.run("down", "app", "--to", "0").code == 0
    assert "users" not in target.tables()
    assert estate.status("app")["applied"] == []


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_failing_step_stops_the_plan_and_leaves_its_database_unchanged(
    engine: str, estate: Estate, make_target: Callable[[str], Target]
) -> None:
    first, failing, last = (make_target(engine) for _ in range(3))
    estate.add("first", first.entry)
    estate.add("failing", failing.entry, after=["first"])
    estate.add("last", last.entry, after=["failing"])
    for name in ("first", "failing", "last"):
        estate.migration(name, "0001_users.sql", USERS)
    estate.migration(
        "failing", "0002_bad.sql",
        "-- migrate:up\nCREATE TABLE t2 (x INT);\nINSERT INTO missing_table VALUES (1);\n",
    )  # fmt: skip

    result = estate.run("up", "--json")
    assert result.code == 1
    report = result.json()
    steps = {
        (s["database"], s["version"]): s for p in report["phases"] for d in p for s in d["steps"]
    }
    assert steps[("first", 1)]["status"] == "applied"
    assert steps[("failing", 1)]["status"] == "rolled-back"
    assert steps[("failing", 2)]["status"] == "failed"
    assert "statement 2 of 2 failed" in steps[("failing", 2)]["error"]
    assert steps[("last", 1)]["status"] == "skipped"
    assert "users" in first.tables()
    assert failing.tables() <= {"dbfleet_migrations"}  # unchanged: no users, no t2
    assert estate.status("failing")["applied"] == []
    assert last.tables() == set()
    assert estate.catalog_runs()[-1]["status"] == "failed"


def test_mysql_records_the_failed_statement_and_resumes_after_a_fix(
    estate: Estate, make_target: Callable[[str], Target]
) -> None:
    target = make_target("mysql")
    estate.add("app", target.entry)
    text = (
        "-- migrate:up\nCREATE TABLE a (x INT);\nCREATE TABLE b (x INT);\n"
        "ALTER TABLE nope ADD y INT;\nCREATE TABLE c (x INT);\n"
    )
    first = "-- migrate:up\nCREATE TABLE first (x INT);\n-- migrate:down\nDROP TABLE first;\n"
    estate.migration("app", "0001_first.sql", first)
    path = estate.migration("app", "0002_abc.sql", text)
    result = estate.run("up")
    assert result.code == 1 and "statement 3 of 4 failed" in result.stderr
    assert "kept at that point" in result.stderr
    status = estate.status("app")
    # version 1 is not reverted under the half-applied version 2
    assert status["current"] == 1 and "first" in target.tables()
    assert status["failed"][0]["statements_done"] == 2 and "nope" in status["failed"][0]["error"]
    assert {"a", "b"} <= target.tables() and "c" not in target.tables()

    # changing a statement that already ran is drift, not a resume
    path.write_text(text.replace("CREATE TABLE a (x INT)", "CREATE TABLE a (x BIGINT)"))
    result = estate.run("up")
    assert result.code == 1 and "statements that ran have changed" in result.stderr
    # fixing the failed one resumes at statement 3: a and b are not created again
    path.write_text(text.replace("ALTER TABLE nope ADD y INT", "ALTER TABLE b ADD y INT"))
    result = estate.run("up")
    assert result.code == 0, result.stderr
    assert {"a", "b", "c"} <= target.tables() and "y" in target.columns("b")
    assert estate.status("app")["current"] == 2


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_dry_run_changes_nothing(
    engine: str, estate: Estate, make_target: Callable[[str], Target]
) -> None:
    target = make_target(engine)
    estate.settings["migrations"] = {"vars": {"on_users": ""}}
    estate.add("app", target.entry)
    estate.migration("app", "0001_users.sql", USERS)
    estate.migration("app", "0002_email.sql", EMAIL)
    before = target.tables()
    result = estate.run("up", "--dry-run")
    assert result.code == 0, result.stderr
    assert "INSERT INTO users VALUES (1, 'first'), (2, 'semi;colon'), (3, 'last')" in result.stdout
    assert target.tables() == before
    assert estate.snapshots() == []
    # a statement that fails is found by the dry run, and still nothing changes
    estate.migration("app", "0003_bad.sql", "-- migrate:up\nALTER TABLE nope ADD x INT;\n")
    result = estate.run("up", "--dry-run")
    assert result.code == 1 and "nope" in result.stderr, result.stderr
    assert target.tables() == before


def _slow(target: Target, seconds: float) -> str:
    return f"-- migrate:up\n{target.sleep(seconds)};\nCREATE TABLE slow (x INT);\n"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_second_up_waits_then_names_the_holder(
    engine: str, estate: Estate, make_target: Callable[[str], Target]
) -> None:
    target = make_target(engine)
    estate.add("app", target.entry)
    estate.migration("app", "0001_slow.sql", _slow(target, 8))
    first = estate.start("up")
    try:
        wait_for(lambda: estate.status("app")["lock"] is not None, 30, "the first run's lease")
        began = time.monotonic()
        second = estate.run("up", "--lock-timeout", "2")
        waited = time.monotonic() - began
        assert second.code == 1
        assert "migration lease is held by" in second.stderr and f"pid {first.pid}" in second.stderr
        assert waited >= 2
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert estate.status("app")["current"] == 1
    assert estate.status("app")["lock"] is None


@pytest.mark.parametrize("engine", ENGINES)
def test_kill_9_mid_migration_then_the_next_run_proceeds(
    engine: str, estate: Estate, make_target: Callable[[str], Target]
) -> None:
    target = make_target(engine)
    estate.add("app", target.entry)
    estate.migration("app", "0001_slow.sql", _slow(target, 4))
    first = estate.start("up", "--lease-ttl", "3")
    wait_for(lambda: estate.status("app")["lock"] is not None, 30, "the first run's lease")
    time.sleep(0.5)  # inside the slow statement
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    # no manual unlock: the lease ends with the session (PostgreSQL, MySQL) or
    # expires after its TTL (SQLite), and the next run applies the migration
    began = time.monotonic()
    result = estate.run("up", "--lock-timeout", "30", "--lease-ttl", "3")
    assert result.code == 0, result.stderr
    assert "slow" in target.tables()
    assert estate.status("app")["current"] == 1
    assert time.monotonic() - began < 30


def test_postgresql_concurrent_index_does_not_deadlock_with_a_waiting_run(
    estate: Estate, make_target: Callable[[str], Target]
) -> None:
    target = make_target("postgresql")
    estate.add("app", target.entry)
    estate.migration("app", "0001_users.sql", USERS)
    estate.migration(
        "app", "0002_index.sql",
        "-- migrate:up\nSELECT pg_sleep(3);\n"
        "CREATE INDEX CONCURRENTLY users_name ON users (name);\n"
        "-- migrate:down\nDROP INDEX CONCURRENTLY users_name;\n",
    )  # fmt: skip
    plan = estate.run("plan", "--json")
    step = plan.json()["phases"][0][0]["steps"][1]
    assert step["non_transactional"] == [1]
    first = estate.start("up")
    try:
        wait_for(lambda: estate.status("app")["lock"] is not None, 30, "the first run's lease")
        # a second run polls the lease while the first builds its index concurrently
        second = estate.run("up", "--lock-timeout", "60", timeout=90)
    finally:
        out, err = first.communicate(timeout=90)
    assert first.returncode == 0, err
    assert second.code == 0, second.stderr
    assert estate.status("app")["current"] == 2


def test_postgresql_reports_the_invalid_index_of_a_failed_concurrent_build(
    estate: Estate, make_target: Callable[[str], Target]
) -> None:
    target = make_target("postgresql")
    estate.add("app", target.entry)
    # irreversible, so that the failure's rollback keeps the table (and the index debris)
    duplicates = USERS.replace("(3, 'last')", "(3, 'first')").split("-- migrate:down")[0]
    estate.migration("app", "0001_users.sql", duplicates)
    estate.migration(
        "app", "0002_unique.sql",
        "-- migrate:up\nCREATE UNIQUE INDEX CONCURRENTLY users_name ON users (name);\n",
    )  # fmt: skip
    result = estate.run("up")
    assert result.code == 1
    assert "INVALID index public.users_name" in result.stderr
    drift = estate.status("app")["drift"]
    assert any("INVALID index public.users_name" in d for d in drift), drift
    assert estate.run("validate").code == 1


def test_the_backup_gate_refuses_a_stale_database_unless_forced(
    estate: Estate, make_target: Callable[[str], Target]
) -> None:
    target = make_target("sqlite")
    estate.add("app", {**target.entry, "rpo": "1h"})
    estate.migration("app", "0001_users.sql", USERS)
    result = estate.run("up")
    assert result.code == 1 and "older than its rpo" in result.stderr
    assert "users" not in target.tables()
    result = estate.run("up", "--force", "--json")
    assert result.code == 0, result.stderr
    assert any("forced past" in n for n in result.json()["notes"])
    runs = estate.catalog_runs()
    assert [r["status"] for r in runs] == ["failed", "ok"]
    assert "forced past" in runs[-1]["details"]


def test_one_plan_across_three_engines(
    estate: Estate, make_target: Callable[[str], Target], capsys: pytest.CaptureFixture[str]
) -> None:
    """users-pg, then the MySQL and SQLite databases in parallel, then a last
    PostgreSQL one: the phases run in order and each database is backed up."""
    targets = {
        "users-pg": make_target("postgresql"),
        "orders-my": make_target("mysql"),
        "cache-lite": make_target("sqlite"),
        "report-pg": make_target("postgresql"),
    }
    after = {"orders-my": ["users-pg"], "cache-lite": ["users-pg"],
             "report-pg": ["orders-my", "cache-lite"]}  # fmt: skip
    estate.settings["migrations"] = {"vars": {"on_users": ""}}
    for name, target in targets.items():
        estate.add(name, target.entry, after=after.get(name))
        estate.migration(name, "0001_users.sql", USERS)
        on_users = " ON users" if target.engine == "mysql" else ""
        estate.migration(name, "0002_email.sql", EMAIL.replace("${on_users}", on_users))
    plan = estate.run("plan", "--json").json()
    assert [[d["database"] for d in p] for p in plan["phases"]] == [
        ["users-pg"],
        ["cache-lite", "orders-my"],
        ["report-pg"],
    ]
    began = time.monotonic()
    result = estate.run("up", "--json")
    took_up = time.monotonic() - began
    assert result.code == 0, result.stderr
    report = result.json()
    assert all(d["snapshot"] for p in report["phases"] for d in p)
    for name, target in targets.items():
        assert "email" in target.columns("users"), name
        assert estate.status(name)["current"] == 2
    began = time.monotonic()
    for name in targets:
        assert estate.run("down", name, "--to", "0").code == 0
    took_down = time.monotonic() - began
    assert all("users" not in t.tables() for t in targets.values())
    with capsys.disabled():
        print(f"\nmigrate up, 4 databases on 3 engines, 8 steps: {took_up:.1f}s; "
              f"down of all four: {took_down:.1f}s")  # fmt: skip
