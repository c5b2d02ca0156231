"""The inventory: the README example validates; every problem is reported with
its path in the document and exit code 2."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbfleet.config import load_inventory, parse_inventory
from dbfleet.errors import EXIT_USAGE, ConfigError, UsageError

README_EXAMPLE = """\
repositories:
  local:
    url: file:///var/backups/dbfleet      # later also s3://bucket/prefix
    passphrase_env: DBFLEET_PASSPHRASE
databases:
  app-pg:
    engine: postgresql
    url: postgresql://app@127.0.0.1:5432/app
    password_env: APP_PG_PASSWORD
    repository: local
  notes:
    engine: sqlite
    path: /srv/notes/notes.db
    repository: local
"""


def example() -> dict[str, Any]:
    document = yaml.safe_load(README_EXAMPLE)
    assert isinstance(document, dict)
    return document


def problems_of(document: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_inventory(document)
    assert info.value.exit_code == EXIT_USAGE == 2
    assert info.value.problems, "a ConfigError must list its problems"
    for problem in info.value.problems:
        assert problem in str(info.value)
    return info.value.problems


def test_readme_example_validates(tmp_path: Path) -> None:
    path = tmp_path / "dbfleet.yaml"
    path.write_text(README_EXAMPLE)
    inventory = load_inventory(path)
    assert inventory.source == path
    assert inventory.repository("local").url == "file:///var/backups/dbfleet"
    assert inventory.repository("local").passphrase_env == "DBFLEET_PASSPHRASE"
    pg = inventory.database("app-pg")
    assert pg.engine == "postgresql"
    assert pg.url == "postgresql://app@127.0.0.1:5432/app"
    assert pg.password_env == "APP_PG_PASSWORD"
    assert pg.repository == "local"
    notes = inventory.database("notes")
    assert notes.engine == "sqlite"
    assert notes.path == Path("/srv/notes/notes.db")
    assert notes.repository == "local"


def test_config_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "elsewhere.yaml"
    path.write_text(README_EXAMPLE)
    monkeypatch.setenv("DBFLEET_CONFIG", str(path))
    assert set(load_inventory().databases) == {"app-pg", "notes"}


def test_single_repository_is_the_default() -> None:
    document = example()
    del document["databases"]["notes"]["repository"]
    assert parse_inventory(document).database("notes").repository == "local"


def test_engine_aliases() -> None:
    document = example()
    document["databases"]["app-pg"]["engine"] = "postgres"
    document["databases"]["notes"]["engine"] = "sqlite3"
    inventory = parse_inventory(document)
    assert inventory.database("app-pg").engine == "postgresql"
    assert inventory.database("notes").engine == "sqlite"


def test_empty_inventory_is_valid() -> None:
    inventory = parse_inventory(None)
    assert inventory.databases == {} and inventory.repositories == {}


def test_unknown_key() -> None:
    document = example()
    document["databases"]["notes"]["pth"] = "/typo"
    document["repositories"]["local"]["passphrase"] = "inline secret"
    problems = problems_of(document)
    assert any(p.startswith("databases.notes.pth: unknown key") for p in problems)
    assert any(p.startswith("repositories.local.passphrase: unknown key") for p in problems)


def test_unknown_top_level_key() -> None:
    document = example()
    document["databses"] = {}
    assert any(p.startswith("databses: unknown key") for p in problems_of(document))


def test_missing_url_for_postgresql() -> None:
    document = example()
    del document["databases"]["app-pg"]["url"]
    (problem,) = problems_of(document)
    assert problem.startswith("databases.app-pg.url:"), problem
    assert "postgresql" in problem


def test_missing_path_for_sqlite() -> None:
    document = example()
    del document["databases"]["notes"]["path"]
    (problem,) = problems_of(document)
    assert problem.startswith("databases.notes.path:"), problem


def test_password_in_url_is_rejected() -> None:
    document = example()
    document["databases"]["app-pg"]["url"] = "postgresql://app:hunter2@127.0.0.1/app"
    (problem,) = problems_of(document)
    assert problem.startswith("databases.app-pg.url:"), problem
    assert "password" in problem
    with pytest.raises(ConfigError) as info:
        parse_inventory(document)
    assert "hunter2" not in str(info.value)


def test_unknown_engine() -> None:
    document = example()
    document["databases"]["notes"]["engine"] = "oracle"
    (problem,) = problems_of(document)
    assert problem.startswith("databases.notes.engine: unknown engine 'oracle'")
    assert "sqlite" in problem  # lists the known engines


def test_reference_to_undefined_repository() -> None:
    document = example()
    document["databases"]["notes"]["repository"] = "offsite"
    (problem,) = problems_of(document)
    assert problem.startswith("databases.notes.repository: no repository named 'offsite'")
    assert "local" in problem


def test_repository_required_with_several() -> None:
    document = example()
    document["repositories"]["offsite"] = {"url": "file:///mnt/offsite"}
    del document["databases"]["notes"]["repository"]
    (problem,) = problems_of(document)
    assert problem.startswith("databases.notes.repository:")


def test_several_problems_are_all_reported() -> None:
    document = example()
    document["databases"]["notes"]["engine"] = "oracle"
    document["databases"]["app-pg"]["repository"] = "nowhere"
    problems = problems_of(document)
    assert len(problems) == 2
    assert {p.split(":")[0] for p in problems} == {
        "databases.notes.engine",
        "databases.app-pg.repository",
    }


def test_wrong_types() -> None:
    document = example()
    document["databases"]["notes"]["tags"] = "not-a-list"
    (problem,) = problems_of(document)
    assert problem.startswith("databases.notes.tags:")


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        parse_inventory(["a", "list"])
    assert info.value.exit_code == EXIT_USAGE


def test_yaml_syntax_error_has_line_number(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            repositories:
              local:
                url: file:///x
            databases:
              notes:
                engine: sqlite
                path: [unclosed
            """
        )
    )
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert info.value.exit_code == EXIT_USAGE
    message = str(info.value)
    assert str(path) in message
    assert "YAML syntax error" in message
    assert "line 8" in message or "line 7" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found") as info:
        load_inventory(tmp_path / "nope.yaml")
    assert info.value.exit_code == EXIT_USAGE


def test_unknown_names_are_usage_errors() -> None:
    inventory = parse_inventory(example())
    with pytest.raises(UsageError, match="app-pg, notes"):
        inventory.database("nope")
    with pytest.raises(UsageError, match="local"):
        inventory.repository("nope")
