"""The plan's DAG: phases, subsets, cycles; the inventory's migration keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dbfleet.config import Inventory, parse_inventory
from dbfleet.errors import EXIT_USAGE, ConfigError
from dbfleet.migrate.plan import migrations_directory, participants, phases


def inventory(after: dict[str, list[str]], **top: Any) -> Inventory:
    databases = {
        name: {"engine": "sqlite", "path": f"/tmp/{name}.db", "migrations": {"after": deps}}
        for name, deps in after.items()
    }
    return parse_inventory(
        {"repositories": {"r": {"url": "/tmp/r"}}, "databases": databases, **top}
    )


SEED = {
    "users-pg": [], "calc-pg": ["users-pg"], "content": ["calc-pg"], "graph": ["calc-pg"],
    "vectors": ["calc-pg"], "sessions": ["content", "graph"],
}  # fmt: skip


def test_phases_follow_the_after_edges() -> None:
    inv = inventory(SEED)
    assert phases(inv, list(SEED)) == [
        ["users-pg"],
        ["calc-pg"],
        ["content", "graph", "vectors"],
        ["sessions"],
    ]


def test_independent_databases_share_the_first_phase() -> None:
    inv = inventory({"a": [], "b": [], "c": ["a"]})
    assert phases(inv, ["c", "b", "a"]) == [["a", "b"], ["c"]]


def test_a_subset_keeps_the_order_among_its_members() -> None:
    inv = inventory(SEED)
    assert phases(inv, ["sessions", "users-pg"]) == [["sessions", "users-pg"]]
    assert phases(inv, ["sessions", "graph", "users-pg"]) == [["graph", "users-pg"], ["sessions"]]


def test_a_cycle_is_a_config_error_naming_it() -> None:
    with pytest.raises(
        ConfigError, match="a cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"
    ) as exc:
        inventory({"a": ["c"], "b": ["a"], "c": ["b"]})
    assert exc.value.exit_code == EXIT_USAGE


def test_unknown_and_self_references_are_config_errors() -> None:
    with pytest.raises(
        ConfigError, match=r"databases.a.migrations.after.0: no database named 'zz'"
    ):
        inventory({"a": ["zz"]})
    with pytest.raises(ConfigError, match="names itself"):
        inventory({"a": ["a"]})


def test_checks_are_parsed_and_their_databases_checked() -> None:
    equal = [
        {"database": "a", "query": "SELECT count(*) FROM t"},
        {"database": "b", "query": {"count": "t", "filter": {}}},
    ]
    checks: dict[str, Any] = {"match": {"equal": equal}}
    inv = inventory({"a": [], "b": []}, checks=checks)
    assert inv.checks["match"].equal[1].query == {"count": "t", "filter": {}}
    checks["match"]["equal"][1]["database"] = "nope"
    with pytest.raises(ConfigError, match="checks.match.equal.1.database: no database named"):
        inventory({"a": [], "b": []}, checks=checks)


def test_vars_names_are_checked() -> None:
    with pytest.raises(ConfigError, match="placeholder names"):
        inventory({"a": []}, migrations={"vars": {"bad-name": 1}})


def test_directory_and_participants(tmp_path: Path) -> None:
    inv = parse_inventory(
        {
            "repositories": {"r": {"url": "/tmp/r"}},
            "databases": {
                "with-key": {"engine": "sqlite", "path": "/tmp/a.db", "migrations": {}},
                "with-dir": {"engine": "sqlite", "path": "/tmp/b.db"},
                "neither": {"engine": "sqlite", "path": "/tmp/c.db"},
            },
            "migrations": {"directory": "schema"},
        },
        tmp_path / "dbfleet.yaml",
    )
    assert migrations_directory(inv) == tmp_path / "schema"
    (tmp_path / "schema" / "with-dir").mkdir(parents=True)
    assert participants(inv) == ["with-key", "with-dir"]
    assert participants(inv, ["neither"]) == ["neither"]
