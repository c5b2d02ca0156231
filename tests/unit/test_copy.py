"""copy (3-2-1): snapshots to a second repository without re-uploading what it
has, and the copy_to fan-out of backup."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import yaml
from test_cli import dbfleet

from dbfleet.operations.demo import create_sample_database


def _estate(tmp_path: Path, copy_to: list[str] | None = None) -> tuple[Path, Path]:
    database = tmp_path / "notes.db"
    # ~9.5 MB: several chunks whatever the repository's random gear table, so the
    # changed chunk is a small part of the second snapshot in every run
    create_sample_database(database, notes=12000)
    entry: dict[str, object] = {"engine": "sqlite", "path": str(database), "repository": "main"}
    if copy_to:
        entry["copy_to"] = copy_to
    config = tmp_path / "dbfleet.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "repositories": {
                    "main": {"url": f"file://{tmp_path / 'main'}"},
                    "offsite": {"url": f"file://{tmp_path / 'offsite'}"},
                },
                "databases": {"notes": entry},
            }
        )
    )
    for repo in ("main", "offsite"):
        assert dbfleet("repo", "init", repo, config=config).returncode == 0
    return config, database


def _change(database: Path) -> None:
    with closing(sqlite3.connect(database)) as conn, conn:
        conn.execute("UPDATE notes SET score = score + 1 WHERE id BETWEEN 100 AND 140")


def test_copy_uploads_only_new_chunks(tmp_path: Path) -> None:
    config, database = _estate(tmp_path)
    assert dbfleet("backup", "notes", config=config).returncode == 0
    first = dbfleet("copy", "--from", "main", "--to", "offsite", "--json", config=config)
    assert first.returncode == 0, first.stderr
    (one,) = json.loads(first.stdout)
    assert one["copied"] and one["added_bytes"] > 0

    _change(database)
    assert dbfleet("backup", "notes", config=config).returncode == 0
    second = dbfleet("copy", "--from", "main", "--to", "offsite", "--json", config=config)
    results = json.loads(second.stdout)
    assert [r["copied"] for r in results] == [False, True]  # the first is skipped
    assert results[1]["added_bytes"] < one["added_bytes"] / 2

    listed = json.loads(dbfleet("snapshots", "--repo", "offsite", "--json", config=config).stdout)
    assert len(listed) == 2 and all(s["origin"] for s in listed)
    copied_id = results[1]["snapshot"]
    restored = tmp_path / "from-offsite.db"
    proc = dbfleet("restore", copied_id, "--to", restored, config=config)
    assert proc.returncode == 0, proc.stderr
    verify = dbfleet("verify", copied_id, config=config)
    assert verify.returncode == 0, verify.stderr
    check = dbfleet("repo", "check", "offsite", "--read-data", config=config)
    assert check.returncode == 0, check.stderr


def test_backup_fans_out_to_copy_to(tmp_path: Path) -> None:
    config, _ = _estate(tmp_path, copy_to=["offsite"])
    proc = dbfleet("backup", "notes", "--json", config=config)
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["ok"] and result["copies"][0]["ok"] and result["copies"][0]["copied"]
    offsite = json.loads(dbfleet("snapshots", "--repo", "offsite", "--json", config=config).stdout)
    assert len(offsite) == 1 and offsite[0]["origin"]["snapshot"] == result["snapshot"]


def test_copy_to_an_unknown_repository_is_a_config_error(tmp_path: Path) -> None:
    config, _ = _estate(tmp_path, copy_to=["offsite"])
    document = yaml.safe_load(config.read_text())
    document["databases"]["notes"]["copy_to"] = ["nowhere"]
    config.write_text(yaml.safe_dump(document))
    proc = dbfleet("config", "check", config=config)
    assert proc.returncode == 2
    assert "databases.notes.copy_to.0" in proc.stderr


def test_freshness_judges_each_copy_to_repository(tmp_path: Path) -> None:
    config, _ = _estate(tmp_path)
    assert dbfleet("backup", "notes", config=config).returncode == 0
    document = yaml.safe_load(config.read_text())
    document["databases"]["notes"].update({"rpo": "1h", "copy_to": ["offsite"]})
    config.write_text(yaml.safe_dump(document))

    behind = dbfleet("freshness", "--json", config=config)
    assert behind.returncode == 1, behind.stderr  # the primary is fresh, its copy is not
    (item,) = json.loads(behind.stdout)
    assert item["state"] == "stale" and item["stale_copies"] == ["offsite"]
    assert item["copies"]["offsite"]["state"] == "stale"
    assert item["copies"]["offsite"]["latest_snapshot"] is None

    assert dbfleet("copy", "--from", "main", "--to", "offsite", config=config).returncode == 0
    caught_up = dbfleet("freshness", "--json", config=config)
    assert caught_up.returncode == 0, caught_up.stdout + caught_up.stderr
    (item,) = json.loads(caught_up.stdout)
    assert item["state"] == "fresh" and item["stale_copies"] == []
    assert item["copies"]["offsite"]["state"] == "fresh"
