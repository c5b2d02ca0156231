"""``migrate plan`` lint: destructive statements on every engine, squawk for PostgreSQL."""

from __future__ import annotations

import pytest

from dbfleet.migrate import lint


@pytest.mark.parametrize("engine", ["postgresql", "mysql", "sqlite"])
@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("DROP TABLE users", "drops a table"),
        ("TRUNCATE TABLE users", "truncates"),
        ("DELETE FROM users", "deletes every row"),
        ("ALTER TABLE users DROP COLUMN email", "drops a column"),
    ],
)
def test_destructive_statements_are_warned(engine: str, statement: str, reason: str) -> None:
    found = lint.destructive(statement, engine)
    assert found is not None and reason in found


@pytest.mark.parametrize(
    ("statement", "engine"),
    [
        ("ALTER TABLE users ALTER COLUMN id TYPE bigint", "postgresql"),
        ("ALTER TABLE users MODIFY id BIGINT", "mysql"),
    ],
)
def test_type_changes_are_warned(statement: str, engine: str) -> None:
    assert "type" in (lint.destructive(statement, engine) or "")


@pytest.mark.parametrize(
    "statement",
    ["CREATE TABLE t (x int)", "DELETE FROM users WHERE id = 1", "DROP INDEX users_email",
     "ALTER TABLE users ADD COLUMN email text", "INSERT INTO t VALUES ('DROP TABLE x')"],
)  # fmt: skip
def test_safe_statements_are_not_warned(statement: str) -> None:
    assert lint.destructive(statement, "postgresql") is None


def test_squawk_runs_offline_and_names_its_rules() -> None:
    if lint.squawk_binary() is None:
        pytest.fail("squawk-cli is a test dependency (pip install -e '.[test]')")
    found = lint.squawk("CREATE INDEX i ON t (a);", assume_in_transaction=True)
    assert any(w.startswith("require-concurrent-index-creation:") for w in found), found
    assert lint.squawk("SELECT 1;", assume_in_transaction=True) == []
