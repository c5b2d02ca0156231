"""MySQL/MariaDB fixtures: the MariaDB test server of ``scripts/test-servers.sh``
(registered as a pytest plugin by ``tests/conftest.py``).

``mysql_server`` describes the server (an admin account with every privilege
and the unprivileged ``app``); ``mysql_databases`` hands out unique database
names and drops them afterwards; ``mysql_source`` is a fresh database with
the rich schema of :data:`RICH_SCHEMA`: every column type that a dump must
keep intact (binary, JSON, BIT, ENUM/SET, generated columns, utf8mb4, awkward
strings), a sequence used as a default, a foreign key, a table without a
primary key, a MyISAM table, a view, a trigger, a procedure, a function and
an event.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import pymysql
import pytest

from dbfleet.config import DatabaseConfig
from tests.integration.conftest import DatabaseNames, _load_env_file, _unavailable

MYSQL_PASSWORD_ENV = "DBFLEET_TEST_MYSQL_PASSWORD"
MYSQL_APP_PASSWORD_ENV = "DBFLEET_TEST_MYSQL_APP_PASSWORD"


@dataclass
class MySQLServer:
    """The test server: ``url`` is the admin account's (database ``mysql``)."""

    url: str
    app_user: str = "app"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 3306

    def config(
        self,
        dbname: str,
        *,
        user: str | None = None,
        password_env: str | None = None,
        **changes: Any,
    ) -> DatabaseConfig:
        parts = urlsplit(self.url)
        netloc = parts.netloc if user is None else f"{quote(user, safe='')}@{self.host}:{self.port}"
        if password_env is None:
            password_env = MYSQL_APP_PASSWORD_ENV if user == self.app_user else MYSQL_PASSWORD_ENV
        return DatabaseConfig(
            engine="mysql",
            url=f"mysql://{netloc}/{quote(dbname, safe='')}",
            password_env=password_env,
            **changes,
        )

    def connect(self, dbname: str | None = None) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=urlsplit(self.url).username,
            password=os.environ[MYSQL_PASSWORD_ENV],
            database=dbname,
            charset="utf8mb4",
            autocommit=True,
        )

    def execute(self, statements: list[str], dbname: str | None = None) -> None:
        with self.connect(dbname) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def query(self, sql: str, dbname: str | None = None, args: Any = None) -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def drop_database(self, name: str) -> None:
        self.execute([f"DROP DATABASE IF EXISTS `{name.replace('`', '``')}`"])


@pytest.fixture(scope="session")
def mysql_server() -> MySQLServer:
    if not os.environ.get("DBFLEET_TEST_MYSQL_URL"):
        _load_env_file()
    url = os.environ.get("DBFLEET_TEST_MYSQL_URL")
    if not url or not os.environ.get(MYSQL_PASSWORD_ENV):
        _unavailable("MariaDB test server not configured (DBFLEET_TEST_MYSQL_URL)")
    assert url is not None
    os.environ.setdefault(MYSQL_APP_PASSWORD_ENV, "app-test-pw")  # the script's test-only value
    server = MySQLServer(url)
    try:
        server.connect().close()
    except pymysql.Error as exc:
        _unavailable(f"MariaDB test server at {url} unreachable ({exc.args[-1]})")
    return server


@pytest.fixture
def mysql_databases(mysql_server: MySQLServer) -> Iterator[Callable[[str], str]]:
    """Hands out unique database names; drops every one of them afterwards."""
    names = DatabaseNames()
    yield names
    names.drop(mysql_server.drop_database)


RICH_SCHEMA = [
    "CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL,"
    " tags SET('vip','eu','us'), kind ENUM('a','b')) ENGINE=InnoDB",
    "CREATE SEQUENCE invoice_no START WITH 1000",
    "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT, note TEXT,"
    " amount DECIMAL(12,2), data JSON, payload BLOB, placed_at TIMESTAMP NULL, ratio DOUBLE,"
    " f FLOAT, flags BIT(5), total DECIMAL(14,2) AS (amount * 2) VIRTUAL,"
    " invoice BIGINT DEFAULT NEXTVAL(invoice_no), KEY placed (placed_at),"
    " FOREIGN KEY (customer_id) REFERENCES customers (id)) ENGINE=InnoDB",
    "CREATE TABLE nopk (a INT, b VARCHAR(10))",
    "CREATE TABLE emptyt (a INT)",
    "CREATE TABLE `odd ``name`` (x)` (id INT PRIMARY KEY, v VARCHAR(20))",
    "CREATE TABLE legacy (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=MyISAM",
    "CREATE VIEW order_totals AS SELECT customer_id, SUM(amount) AS total, COUNT(*) AS orders"
    " FROM orders GROUP BY customer_id",
    "CREATE TRIGGER orders_note BEFORE INSERT ON orders FOR EACH ROW"
    " SET NEW.note = COALESCE(NEW.note, CONCAT('order for ', NEW.customer_id))",
    "CREATE PROCEDURE bump(IN n INT) BEGIN UPDATE orders SET amount = amount + n; END",
    "CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
    "CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DO DELETE FROM nopk WHERE a < 0",
    "INSERT INTO customers (name, tags, kind) VALUES ('ada', 'vip,eu', 'a'),"
    " ('gr''ace),(', NULL, 'b'), ('li\\\\nus \U0001f600 \"q\"', 'us', NULL)",
    "INSERT INTO orders (customer_id, note, amount, data, payload, placed_at, ratio, f, flags)"
    " WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 300)"
    " SELECT 1 + n % 3, IF(n % 7 = 0, NULL, CONCAT('it''s (', n, '),(x)\\nline;\\r\\n\\t', n)),"
    " n * 1.25, JSON_OBJECT('i', n, 'even', n % 2 = 0), UNHEX(CONCAT(MD5(n), '00FF27225C')),"
    " TIMESTAMP '2024-01-01 00:00:00' + INTERVAL n HOUR, n / 7, n / 3, n % 32 FROM seq",
    # every byte value once, and an empty binary string
    "INSERT INTO orders (customer_id, note, payload) WITH RECURSIVE b (n, h) AS ("
    " SELECT 0, CAST('' AS CHAR(600)) UNION ALL SELECT n + 1, CONCAT(h, LPAD(HEX(n), 2, '0'))"
    " FROM b WHERE n < 256) SELECT 1, 'all bytes', UNHEX(h) FROM b WHERE n = 256",
    "INSERT INTO orders (customer_id, note, payload, ratio, f) VALUES (2, '', '', -1e300, 3.4e38)",
    "INSERT INTO nopk VALUES (1, 'x'), (1, 'x'), (NULL, NULL)",
    "INSERT INTO `odd ``name`` (x)` VALUES (1, 'odd'), (2, '`')",
    "INSERT INTO legacy VALUES (1, 'myisam'), (2, 'rows')",
]


def create_rich_database(server: MySQLServer, name: str) -> None:
    quoted = "`" + name.replace("`", "``") + "`"
    server.execute([f"CREATE DATABASE {quoted} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"])
    server.execute(RICH_SCHEMA, name)


@dataclass
class MySQLDatabase:
    name: str
    config: DatabaseConfig


@pytest.fixture
def mysql_source(mysql_server: MySQLServer, mysql_databases: Callable[[str], str]) -> MySQLDatabase:
    """A fresh database with the rich schema (see ``RICH_SCHEMA``)."""
    name = mysql_databases("src")
    create_rich_database(mysql_server, name)
    return MySQLDatabase(name, mysql_server.config(name))
