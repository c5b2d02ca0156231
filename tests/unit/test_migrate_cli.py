"""``dbfleet migrate`` in-process on SQLite: new, plan, baseline, and the
errors a user meets (cycle, unsupported engine, Python migrations)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import yaml
from tests.unit.clikit import PASSPHRASE_ENV, CliResult, assert_no_leak, run_cli


def estate(tmp_path: Path, databases: dict[str, Any], **top: Any) -> Path:
    config = tmp_path / "dbfleet.yaml"
    document = {
        "repositories": {"main": {"url": str(tmp_path / "repo"), "passphrase_env": PASSPHRASE_ENV}},
        "databases": databases,
        **top,
    }
    config.write_text(yaml.safe_dump(document))
    return config


def sqlite_db(tmp_path: Path, name: str, **extra: Any) -> dict[str, Any]:
    path = tmp_path / f"{name}.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("VACUUM")
    return {"engine": "sqlite", "path": str(path), "migrations": {}, **extra}


def migrate(config: Path, *args: str) -> CliResult:
    result = run_cli("migrate", *args, config=config)
    assert_no_leak(result)
    return result


def test_new_numbers_files_and_writes_sections(tmp_path: Path) -> None:
    config = estate(tmp_path, {"app": sqlite_db(tmp_path, "app")})
    first = migrate(config, "new", "app", "create users")
    assert first.code == 0, first.output
    assert first.stdout.strip().endswith("migrations/app/0001_create_users.sql")
    second = migrate(config, "new", "app", "add_email")
    assert second.stdout.strip().endswith("0002_add_email.sql")
    text = Path(second.stdout.strip()).read_text()
    assert "-- migrate:up" in text and "-- migrate:down" in text and "-- migrate:verify" in text
    python = migrate(config, "new", "app", "backfill", "--python")
    assert python.stdout.strip().endswith("0003_backfill.py")
    bad = migrate(config, "new", "app", "no/slashes")
    assert bad.code == 2 and "migration name" in bad.stderr


def test_plan_json_phases_and_warnings(tmp_path: Path) -> None:
    config = estate(
        tmp_path,
        {"a": sqlite_db(tmp_path, "a"), "b": sqlite_db(tmp_path, "b", migrations={"after": ["a"]})},
    )
    (tmp_path / "migrations" / "a").mkdir(parents=True)
    (tmp_path / "migrations" / "b").mkdir(parents=True)
    (tmp_path / "migrations/a/0001_t.sql").write_text("-- migrate:up\nCREATE TABLE t (x);\n")
    (tmp_path / "migrations/b/0001_drop.sql").write_text("-- migrate:up\nDROP TABLE old;\n")
    result = migrate(config, "plan", "--json")
    assert result.code == 0, result.output
    plan = json.loads(result.stdout)
    assert [[d["database"] for d in phase] for phase in plan["phases"]] == [["a"], ["b"]]
    assert plan["phases"][0][0]["versions"] == [1]
    step = plan["phases"][1][0]["steps"][0]
    assert step["irreversible"] is True and "drops a table" in step["warnings"][0]
    strict = migrate(config, "plan", "--strict")
    assert strict.code == 1 and "lint warning" in strict.stderr


def test_a_cycle_exits_2_naming_it(tmp_path: Path) -> None:
    config = estate(
        tmp_path,
        {
            "a": sqlite_db(tmp_path, "a", migrations={"after": ["b"]}),
            "b": sqlite_db(tmp_path, "b", migrations={"after": ["a"]}),
        },
    )
    result = migrate(config, "plan")
    assert result.code == 2 and "a cycle: " in result.stderr and "a -> b" in result.stderr


def test_unsupported_engine_and_python_migrations_say_not_yet(tmp_path: Path) -> None:
    redis = {"engine": "redis", "url": "redis://127.0.0.1:1/0", "migrations": {}}
    config = estate(tmp_path, {"cache": redis})
    result = migrate(config, "status")
    assert result.code == 2 and "migrations are unsupported for redis" in result.stderr
    config = estate(tmp_path, {"app": sqlite_db(tmp_path, "app")})
    (tmp_path / "migrations" / "app").mkdir(parents=True)
    (tmp_path / "migrations/app/0001_fill.py").write_text("def up(ctx):\n    pass\n")
    result = migrate(config, "plan")
    assert result.code == 2 and "Python migrations are not supported yet" in result.stderr


def test_baseline_adopts_an_existing_database(tmp_path: Path) -> None:
    config = estate(tmp_path, {"app": sqlite_db(tmp_path, "app")})
    (tmp_path / "migrations" / "app").mkdir(parents=True)
    for version in (1, 2, 3):
        (tmp_path / f"migrations/app/000{version}_v.sql").write_text(
            f"-- migrate:up\nCREATE TABLE t{version} (x);\n"
        )
    assert migrate(config, "baseline", "app", "2").code == 0
    status = json.loads(migrate(config, "status", "--json").stdout)[0]
    assert status["current"] == 2 and status["pending"] == [3]
    assert status["applied"][0]["status"] == "baseline"
    again = migrate(config, "baseline", "app", "3")
    assert again.code == 2 and "has a migration history already" in again.stderr
