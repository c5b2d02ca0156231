"""Migration files: section parsing, checksums, placeholders, discovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbfleet.engines._shared.sql_migrations import split_sql
from dbfleet.errors import ConfigError, UsageError
from dbfleet.migrate.files import checksum, discover, parse_sections, read_file, render

SQL = "-- migrate:up\nCREATE TABLE a (x int);\n-- migrate:down\nDROP TABLE a;\n"


def test_sql_sections_first_middle_last() -> None:
    text = "-- a comment before\n\n" + SQL + "-- migrate:verify\nSELECT 1;"
    sections = parse_sections(text, ".sql", "f.sql")
    assert sections == {"up": "CREATE TABLE a (x int);", "down": "DROP TABLE a;",
                        "verify": "SELECT 1;"}  # fmt: skip


def test_cypher_and_redis_markers() -> None:
    cypher = "// migrate:up\nCREATE CONSTRAINT c FOR (n:R) REQUIRE n.id IS UNIQUE;\n"
    assert parse_sections(cypher, ".cypher", "g.cypher") == {
        "up": "CREATE CONSTRAINT c FOR (n:R) REQUIRE n.id IS UNIQUE;"
    }
    redis = "# migrate:up\nSET cache:version 2\n# migrate:down\nSET cache:version 1\n"
    assert parse_sections(redis, ".redis", "s.redis")["down"] == "SET cache:version 1"


def test_no_down_is_irreversible(tmp_path: Path) -> None:
    path = tmp_path / "0007_only_up.sql"
    path.write_text("-- migrate:up\nSELECT 1;\n")
    item = read_file("db", path)
    assert (item.version, item.name, item.reversible) == (7, "only_up", False)
    path.write_text(SQL)
    assert read_file("db", path).reversible is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CREATE TABLE a (x int);\n-- migrate:up\n", "text before the first"),
        ("-- migrate:down\nDROP TABLE a;\n", "no '-- migrate:up' section"),
        ("-- migrate:up\n-- migrate:up\n", "appears twice"),
        ("-- migrate:sideways\n", "unknown section 'sideways'"),
    ],
)
def test_bad_sections_name_the_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_sections(text, ".sql", "bad.sql")


def test_json_sections() -> None:
    doc = {"up": [{"createIndexes": "profiles"}], "down": [{"dropIndexes": "profiles"}]}
    sections = parse_sections(json.dumps(doc), ".json", "c.json")
    assert json.loads(sections["up"]) == doc["up"] and "verify" not in sections
    with pytest.raises(ConfigError, match="must be a list"):
        parse_sections('{"up": {"x": 1}}', ".json", "c.json")
    with pytest.raises(ConfigError, match="unknown key"):
        parse_sections('{"up": [], "sideways": []}', ".json", "c.json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        parse_sections("{", ".json", "c.json")


def test_python_functions() -> None:
    text = "def up(ctx):\n    pass\n\n\ndef verify(ctx):\n    pass\n"
    assert set(parse_sections(text, ".py", "m.py")) == {"up", "verify"}
    with pytest.raises(ConfigError, match=r"defines up\(ctx\)"):
        parse_sections("def down(ctx):\n    pass\n", ".py", "m.py")


def test_checksum_ignores_line_ends_and_bom_but_not_content() -> None:
    lf = SQL.encode()
    crlf = SQL.replace("\n", "\r\n").encode()
    bom = b"\xef\xbb\xbf" + lf
    assert checksum(lf) == checksum(crlf) == checksum(bom)
    assert checksum(lf) != checksum(lf.replace(b"int", b"bigint"))
    assert len(checksum(lf)) == 64


def test_checksum_covers_the_raw_file_not_the_placeholder_values(tmp_path: Path) -> None:
    path = tmp_path / "0001_t.sql"
    path.write_text("-- migrate:up\nCREATE TABLE ${schema}.t (x int);\n")
    before = read_file("db", path).checksum
    # rendering with any values leaves the checksum alone
    assert render(read_file("db", path).sections["up"], {"schema": "a"}, "f") != render(
        read_file("db", path).sections["up"], {"schema": "b"}, "f"
    )
    assert read_file("db", path).checksum == before


def test_placeholders_keep_dollar_quotes_and_parameters() -> None:
    text = "CREATE FUNCTION ${schema}.f() RETURNS int AS $$ SELECT $1 + ${n} $$ LANGUAGE sql;"
    assert render(text, {"schema": "app", "n": 2}, "f") == (
        "CREATE FUNCTION app.f() RETURNS int AS $$ SELECT $1 + 2 $$ LANGUAGE sql;"
    )
    assert render("${flag}", {"flag": True}, "f") == "true"
    with pytest.raises(UsageError, match=r"unknown placeholder \$\{missing\}.*defines: n"):
        render("${missing}", {"n": 1}, "f.sql")


def test_discovery_orders_by_number_not_text(tmp_path: Path) -> None:
    for name in ("10_ten.sql", "2_two.sql", "0001_one.sql", "20260101120000_stamp.sql"):
        (tmp_path / name).write_text("-- migrate:up\nSELECT 1;\n")
    (tmp_path / "README.md").write_text("notes")
    versions = [f.version for f in discover("db", tmp_path)]
    assert versions == [1, 2, 10, 20260101120000]
    assert discover("db", tmp_path / "missing") == []


def test_discovery_refuses_duplicates_and_bad_names(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("-- migrate:up\nSELECT 1;\n")
    (tmp_path / "1_b.sql").write_text("-- migrate:up\nSELECT 1;\n")
    with pytest.raises(ConfigError, match="version 1 is used twice"):
        discover("db", tmp_path)
    (tmp_path / "1_b.sql").unlink()
    (tmp_path / "create_users.sql").write_text("-- migrate:up\nSELECT 1;\n")
    with pytest.raises(ConfigError, match="not a migration file name"):
        discover("db", tmp_path)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "0001_latin.sql"
    path.write_bytes(b"-- migrate:up\nSELECT '\xe9';\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_file("db", path)


@pytest.mark.parametrize("dialect", ["mysql", "sqlite", "postgres"])
def test_split_respects_strings_and_comments(dialect: str) -> None:
    text = "INSERT INTO t VALUES ('a;b');\n-- only; a comment\nSELECT 1 /* ; */;\n\n;SELECT 2"
    assert split_sql(text, dialect) == [
        "INSERT INTO t VALUES ('a;b')",
        "-- only; a comment\nSELECT 1 /* ; */",
        "SELECT 2",
    ]
    assert split_sql("-- nothing here\n", dialect) == []
