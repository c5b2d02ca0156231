"""The MySQL "world" sample database (from Debian's mariadb-test-data; see
tests/samples/PROVENANCE.md) against the real MariaDB test server.

The sample's three tables (239 countries, 4079 cities, 984 languages;
utf8mb3 with a binary collation, FLOAT(M,D) columns, names with accents and
apostrophes) are loaded with the ``mariadb`` client, and given a view, a
function, a procedure and a trigger of our own over them (the sample has
none). Then backup, verify, ``dbfleet restore`` (the command line) into
another database and ``--table City`` (with its trigger) into a third; the
copies are compared with the source by the ``mariadb`` client itself: every
row as the client prints it, ``CHECKSUM TABLE``, and the catalog.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from dbfleet.config import load_inventory
from dbfleet.operations.backup import backup_database
from dbfleet.operations.common import Repositories
from dbfleet.operations.repository import init_repository
from dbfleet.operations.restore import restore_snapshot, verify_snapshot
from tests.integration.conftest import FAST_KDF
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


def _contents(server: MySQLServer, dbname: str, tables: list[str]) -> list[str]:
    """Each table's rows as the client prints them, and its checksum (one
    client run; CHECKSUM TABLE names the database, which is cut off)."""
    script = "".join(f"SELECT * FROM {t} ORDER BY {ORDER[t]}; CHECKSUM TABLE {t} EXTENDED;"
                     for t in tables)  # fmt: skip
    return [line.removeprefix(f"{dbname}.") for line in _client(server, dbname, "-e", script)
            .splitlines()]  # fmt: skip


CATALOG = [
    "SELECT TABLE_NAME, TABLE_TYPE, TABLE_COLLATION FROM information_schema.TABLES"
    " WHERE TABLE_SCHEMA = @db",
    "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, COLLATION_NAME, COLUMN_DEFAULT"
    " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = @db",
    "SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME, NON_UNIQUE FROM information_schema.STATISTICS"
    " WHERE TABLE_SCHEMA = @db",
    "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = @db",
    "SELECT ROUTINE_NAME, ROUTINE_TYPE, ROUTINE_DEFINITION FROM information_schema.ROUTINES"
    " WHERE ROUTINE_SCHEMA = @db",
    "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_STATEMENT FROM information_schema.TRIGGERS"
    " WHERE TRIGGER_SCHEMA = @db",
]


def _catalog(server: MySQLServer, dbname: str) -> list[str]:
    """Tables, columns, indexes, views, routines and triggers (one client run)."""
    script = f"SET @db = DATABASE(); {'; '.join(q + ' ORDER BY 1, 2' for q in CATALOG)};"
    text = _client(server, dbname, "-e", script)
    return sorted(text.replace(f"`{dbname}`", "`DB`").splitlines())


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
    repos = Repositories(load_inventory(config))
    init_repository(repos.inventory, "r", kdf=FAST_KDF)  # a fast key for the test
    backup = backup_database(repos, "world")
    assert backup.ok
    verified = verify_snapshot(repos, "world:latest")
    assert verified.ok and verified.tables_compared == 3, verified.differences
    assert "lossy_columns" not in repos.locate("world:latest")[1].options  # FLOAT(M,D) is exact
    copy = mysql_databases("world copy")
    _dbfleet(config, "restore", "world:latest", "--target", copy)  # the command line, once
    city = mysql_databases("world city")
    restore_snapshot(repos, "world:latest", target=city, tables=("City",))

    assert _contents(mysql_server, copy, tables) == _contents(mysql_server, source, tables)
    assert _catalog(mysql_server, copy) == _catalog(mysql_server, source)
    assert _contents(mysql_server, city, ["City"]) == _contents(mysql_server, source, ["City"])
    assert _client(mysql_server, city, "-e", "SHOW TABLES").split() == ["City"]
    assert _client(mysql_server, city, "-e", "SHOW TRIGGERS").startswith("city_name\t")
    # the copy works: its routines and view answer as the source's do
    for query in ("SELECT speakers('Dutch')", "CALL cities_of('NLD')", "SELECT * FROM big_cities"):
        answer = _client(mysql_server, source, "-e", query)
        assert answer and _client(mysql_server, copy, "-e", query) == answer
