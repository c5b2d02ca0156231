"""A snapshot fingerprinted by an older dbfleet (an older fingerprint format)
is not a mismatch when it differs from what this dbfleet computes: verify and
drill say "not comparable" (exit 1) instead of raising a false alarm (exit 3).
Equal fingerprints prove the restore whatever their formats, and a real
difference within one format is still a mismatch.

The older dbfleet is played by rewriting the SQLite engine's fingerprint
while the backup runs: the data, the repository and the restore are real."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from clikit import Estate

import dbfleet.engines.sqlite as sqlite_engine
from dbfleet.engines.fingerprints import compare_fingerprints, fingerprint_format, incomparable


def _backup_with(
    estate: Estate, monkeypatch: pytest.MonkeyPatch, change: Callable[[dict[str, Any]], None]
) -> None:
    """Back up notes with a fingerprint that ``change`` rewrites (the SQLite
    engine fingerprints the copy it stores with ``_fingerprint``)."""
    original = sqlite_engine._fingerprint

    def older(conn: sqlite3.Connection, tables: tuple[str, ...]) -> dict[str, Any]:
        fingerprint = original(conn, tables)
        change(fingerprint)
        return fingerprint

    with monkeypatch.context() as patch:
        patch.setattr(sqlite_engine, "_fingerprint", older)
        estate.backup("notes")


def _first_table(fingerprint: dict[str, Any]) -> dict[str, Any]:
    name = sorted(fingerprint["tables"])[0]
    table: dict[str, Any] = fingerprint["tables"][name]
    return table


def _older_format_and_other_hash(fingerprint: dict[str, Any]) -> None:
    fingerprint["format"] = 0
    _first_table(fingerprint)["rows"] += 1


def _older_format_same_data(fingerprint: dict[str, Any]) -> None:
    fingerprint["format"] = 0


def _same_format_other_hash(fingerprint: dict[str, Any]) -> None:
    _first_table(fingerprint)["rows"] += 1


@pytest.fixture
def estate(tmp_path: Path) -> Estate:
    return Estate(tmp_path / "estate")


def test_older_format_that_differs_is_not_comparable(
    estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    _backup_with(estate, monkeypatch, _older_format_and_other_hash)
    result = estate.run("verify", "notes:latest", "--json")
    assert result.code == 1, result.stderr
    body = json.loads(result.stdout)
    assert body["ok"] is False and body["differences"]
    assert "format 0" in body["incomparable"] and "take a new backup" in body["incomparable"]
    plain = estate.run("verify", "notes:latest")
    assert plain.code == 1 and "NOT COMPARABLE" in plain.stderr and "MISMATCH" not in plain.stderr
    drill = estate.run("drill", "notes", "--json")
    assert drill.code == 1, drill.stderr
    (row,) = json.loads(drill.stdout)
    assert row["result"] == "incomparable" and "format 0" in row["reason"]


def test_older_format_with_equal_data_still_proves_the_restore(
    estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    _backup_with(estate, monkeypatch, _older_format_same_data)
    result = estate.run("verify", "notes:latest", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


def test_same_format_difference_is_a_mismatch(
    estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    _backup_with(estate, monkeypatch, _same_format_other_hash)
    result = estate.run("verify", "notes:latest", "--json")
    assert result.code == 3, result.stderr
    body = json.loads(result.stdout)
    assert body["incomparable"] == "" and body["differences"]
    drill = estate.run("drill", "notes", "--json")
    assert drill.code == 3
    assert json.loads(drill.stdout)[0]["result"] == "mismatch"


def test_format_rules() -> None:
    old = {"tables": {"t": {"rows": 1}}}
    new = {"tables": {"t": {"rows": 2}}, "format": 2}
    assert fingerprint_format(old) == 1 and fingerprint_format(new) == 2
    differences = compare_fingerprints(old, new)
    assert differences == ["t: rows 1 != 2"]  # the format key itself is no difference
    assert "format 1" in incomparable(old, new, differences)
    assert incomparable(old, new, []) == ""
    assert incomparable(new, new | {"tables": {}}, ["x"]) == ""


def _format_1(fingerprint: dict[str, Any]) -> None:
    """What dbfleet wrote before SQLite fingerprints had schemas."""
    fingerprint.pop("format")
    fingerprint.pop("schema")
    for table in fingerprint["tables"].values():
        table.pop("schema")


def test_a_format_1_sqlite_snapshot_verifies_on_what_it_has(
    estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    _backup_with(estate, monkeypatch, _format_1)
    result = estate.run("verify", "notes:latest", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["differences"] == []


def test_sqlite_fingerprint_sees_schema_and_header_changes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);"
            "CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER);"
            "CREATE TABLE c (x);"
            "CREATE INDEX b_a ON b (a_id);"
            "CREATE VIEW av AS SELECT v FROM a;"
            "INSERT INTO a (v) VALUES ('x'), ('y'); INSERT INTO b (a_id) VALUES (1);"
        )
    conn.close()
    engine = sqlite_engine.SQLiteEngine(sqlite_engine.DatabaseConfig(engine="sqlite", path=path))
    before = engine.fingerprint()
    assert before["format"] == 2 and set(before["tables"]) == {"a", "b", "c"}

    def changed(sql: str) -> list[str]:
        with closing(sqlite3.connect(path)) as c:
            c.executescript(sql)
        return compare_fingerprints(before, engine.fingerprint())

    assert changed("DROP INDEX b_a") == [
        f"b: schema {before['tables']['b']['schema']} != "
        f"{engine.fingerprint()['tables']['b']['schema']}"
    ]
    assert changed("CREATE INDEX b_a ON b (a_id)") == []  # the same text again: equal
    assert [d.split(":")[0] for d in changed("PRAGMA user_version = 7")] == ["schema"]
    assert changed("PRAGMA user_version = 0") == []
    assert [d.split(":")[0] for d in changed("DROP VIEW av")] == ["schema"]
