"""The MySQL "world" sample database (from Debian's mariadb-test-data; see
tests/samples/PROVENANCE.md) through the command line, against the real
MariaDB test server.

The sample's three tables (239 countries, 4079 cities, 984 languages;
utf8mb3 with a binary collation, FLOAT(M,D) columns, names with accents and
apostrophes) are loaded with the ``mariadb`` client, and given a view, a
function, a procedure and a trigger of our own over them (the sample has
none). Then ``dbfleet backup``, ``dbfleet verify``, ``dbfleet restore`` into
another database and ``--table City`` (with its trigger) into a third; the
copies are compared with the source by the ``mariadb`` client itself: every
row as the client prints it, ``CHECKSUM TABLE``, and the catalog.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.integration.fixtures_mysql import MYSQL_PASSWORD_ENV, MySQLServer

pytestmark = pytest.mark.mysql

SAMPLE = Path(__file__).parent / "mysql"
ROWS = {"City": 4079, "Country": 239, "CountryLanguage": 984}
ORDER = {"City": "ID", "Country": "Code", "CountryLanguage": "Country, Language"}
OURS = [  # the sample has no views or stored programs: these are ours
    "CREATE VIEW big_cities AS SELECT c.Name AS city, k.Name AS country, c.Population"
    " FROM City c JOIN Country k ON k.Code = c.Country WHERE c.Population > 5000000",
    "CREATE FUNCTION speakers(lang CHAR(30)) RETURNS BIGINT READS SQL DATA RETURN"
    " (SELECT ROUND(SUM(k.Population * l.Percentage / 100)) FROM CountryLanguage l"
    " JOIN Country k ON k.Code = l.Country WHERE l.Language = lang)",
    "CREATE PROCEDURE cities_of(IN code CHAR(3)) SELECT Name FROM City WHERE Country = code"
    " ORDER BY Name",
    "CREATE TRIGGER city_name BEFORE INSERT ON City FOR EACH ROW"
    " SET NEW.Name = TRIM(NEW.Name)",
]
REPO_PASSWORD_ENV = "DBFLEET_TEST_SAMPLE_REPO_PW"


def _client(server: MySQLServer, dbname: str, *args: str, stdin: bytes = b"") -> str:
    """The ``mariadb`` client (password through the environment, not argv)."""
    proc = subprocess.run(
        ["mariadb", "--no-defaults", "-h", server.host, "-P", str(server.port), "-u",
         urlsplit(server.url).username or "", "--default-character-set=utf8mb4",
         "--batch", "--raw", "--skip-column-names", *args, dbname],
        input=stdin, capture_output=True, timeout=120, check=False,
        env={**os.environ, "MYSQL_PWD": os.environ[MYSQL_PASSWORD_ENV]},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


def _dbfleet(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dbfleet", "--config", str(config), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    return proc


def _load(server: MySQLServer, dbname: str) -> None:
    server.execute([f"CREATE DATABASE `{dbname}` CHARACTER SET utf8mb4"])
    for name in ("world_schema_utf8.sql", "world.sql"):
        _client(server, dbname, stdin=(SAMPLE / name).read_bytes())
    _client(server, dbname, stdin=";\n".join(OURS).encode() + b";\n")


def _contents(server: MySQLServer, dbname: str, tables: list[str]) -> dict[str, str]:
    """Each table's rows as the client prints them, and its checksum."""
    out = {}
    for table in tables:
        rows = f"SELECT * FROM {table} ORDER BY {ORDER[table]}"
        out[table] = _client(server, dbname, "-e", rows)
        checksum = _client(server, dbname, "-e", f"CHECKSUM TABLE {table} EXTENDED")
        out[f"{table} checksum"] = checksum.split("\t")[-1]
    return out


def _catalog(server: MySQLServer, dbname: str) -> list[str]:
    queries = [
        "SELECT TABLE_NAME, TABLE_TYPE, TABLE_COLLATION FROM information_schema.TABLES",
        "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, COLLATION_NAME, COLUMN_DEFAULT"
        " FROM information_schema.COLUMNS",
        "SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME, NON_UNIQUE"
        " FROM information_schema.STATISTICS",
        "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS",
        "SELECT ROUTINE_NAME, ROUTINE_TYPE, ROUTINE_DEFINITION FROM information_schema.ROUTINES",
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_STATEMENT"
        " FROM information_schema.TRIGGERS",
    ]
    where = {"ROUTINES": "ROUTINE_SCHEMA", "TRIGGERS": "TRIGGER_SCHEMA"}
    lines = []
    for query in queries:
        column = where.get(query.rsplit(".", 1)[1], "TABLE_SCHEMA")
        where_db = f"{query} WHERE {column} = '{dbname}' ORDER BY 1, 2"
        text = _client(server, "mysql", "-e", where_db)
        lines += sorted(text.replace(f"`{dbname}`", "`DB`").splitlines())
    return lines


def test_world_round_trip(
    mysql_server: MySQLServer,
    mysql_databases: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = mysql_databases("world")
    _load(mysql_server, source)
    tables = sorted(ROWS)
    counts = {t: int(_client(mysql_server, source, "-e", f"SELECT COUNT(*) FROM {t}"))
              for t in tables}  # fmt: skip
    assert counts == ROWS

    config = tmp_path / "dbfleet.yaml"
    config.write_text(yaml.safe_dump({
        "repositories": {"r": {"url": f"file://{tmp_path / 'repo'}",
                               "passphrase_env": REPO_PASSWORD_ENV}},
        "databases": {"world": {"engine": "mysql", "url": str(mysql_server.config(source).url),
                                "password_env": MYSQL_PASSWORD_ENV}},
    }))  # fmt: skip
    monkeypatch.setenv(REPO_PASSWORD_ENV, "sample")
    _dbfleet(config, "repo", "init", "r")
    backup = json.loads(_dbfleet(config, "backup", "world", "--json").stdout)
    assert backup
    verified = json.loads(_dbfleet(config, "verify", "world:latest", "--json").stdout)
    assert verified["ok"] and verified["tables_compared"] == 3, verified
    copy = mysql_databases("world copy")
    _dbfleet(config, "restore", "world:latest", "--target", copy)
    city = mysql_databases("world city")
    _dbfleet(config, "restore", "world:latest", "--target", city, "--table", "City")

    assert _contents(mysql_server, copy, tables) == _contents(mysql_server, source, tables)
    assert _catalog(mysql_server, copy) == _catalog(mysql_server, source)
    assert _contents(mysql_server, city, ["City"]) == _contents(mysql_server, source, ["City"])
    assert _client(mysql_server, city, "-e", "SHOW TABLES").split() == ["City"]
    assert _client(mysql_server, city, "-e", "SHOW TRIGGERS").startswith("city_name\t")
    # the copy works: its routines and view answer as the source's do
    for query in ("SELECT speakers('Dutch')", "CALL cities_of('NLD')", "SELECT * FROM big_cities"):
        answer = _client(mysql_server, source, "-e", query)
        assert answer and _client(mysql_server, copy, "-e", query) == answer
