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

``mysql_binlog_server`` is a private ``mariadbd`` for the point-in-time
tests, which flush, purge and read its binary log (on the shared server that
log would be large and written to by every other test), and
``mysql_binlog_repos`` an inventory entry ``shop`` on it.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pymysql
import pytest

from dbfleet.config import DatabaseConfig, Inventory, parse_inventory
from dbfleet.operations.common import Repositories
from dbfleet.operations.repository import init_repository
from tests.integration.conftest import FAST_KDF, DatabaseNames, _load_env_file, _unavailable

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


# -- a private server for the binlog (point-in-time) tests --------------------

MARIADBD = "/usr/sbin/mariadbd"
ADMIN_PASSWORD_ENV = "DBFLEET_TEST_PITR_MYSQL_PASSWORD"
REPO_PASSWORD_ENV = "DBFLEET_TEST_PITR_REPO_PW"


@dataclass
class BinlogServer:
    """A private ``mariadbd`` with its binary log in ``binlog_dir`` (admin
    account ``pitr``), for the tests that flush, purge and read binlogs."""

    port: int
    binlog_dir: Path
    password: str

    @property
    def url(self) -> str:
        return f"mysql://pitr@127.0.0.1:{self.port}"

    def connect(self, dbname: str | None = None) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="pitr", password=self.password,
            database=dbname, autocommit=True,
        )  # fmt: skip

    def execute(self, sql: str, dbname: str | None = None, args: Any = None) -> list[Any]:
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def rows(self, dbname: str, table: str = "orders") -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.execute(f"SELECT * FROM `{table}` ORDER BY 1", dbname)]

    def now(self) -> float:
        """The server's clock (binlog events carry its time, in whole seconds)."""
        return float(self.execute("SELECT UNIX_TIMESTAMP(NOW(6))")[0][0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def mysql_binlog_server() -> Iterator[BinlogServer]:
    """Started once, on first use: its binlog is not shared with the other tests."""
    install = shutil.which("mariadb-install-db")
    if not os.access(MARIADBD, os.X_OK) or not install or not shutil.which("mariadb-binlog"):
        _unavailable("MariaDB server binaries missing (mariadb-server, mariadb-client)")
    assert install is not None
    base = Path(tempfile.mkdtemp(prefix="dbfleet-pitr-mysql-"))
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "mysql", "--"] if as_root else []
    os_user = "mysql" if as_root else getpass.getuser()
    (base / "binlog").mkdir()
    port = _free_port()
    (base / "my.cnf").write_text(
        f"[mariadbd]\ndatadir={base}/data\nsocket={base}/sock\npid-file={base}/pid\n"
        f"bind-address=127.0.0.1\nport={port}\nskip-name-resolve\nlog-error={base}/err.log\n"
        f"server-id=7\nlog-bin={base}/binlog/mb\nbinlog-format=ROW\ngtid-strict-mode=ON\n"
        "innodb-buffer-pool-size=64M\ninnodb-log-file-size=16M\nperformance-schema=OFF\n"
        "innodb-flush-log-at-trx-commit=2\nsync-binlog=0\n"
        + (f"user={os_user}\n" if as_root else "")
    )
    if as_root:
        shutil.chown(base, "mysql", "mysql")
        shutil.chown(base / "binlog", "mysql", "mysql")
    cnf = f"--defaults-file={base}/my.cnf"
    root_sql = ["mariadb", "--no-defaults", f"--socket={base}/sock", "-u", getpass.getuser()]
    proc = None
    try:
        owner = [f"--user={os_user}"] if as_root else [f"--auth-root-socket-user={os_user}"]
        subprocess.run([install, cnf, "--skip-test-db", "--auth-root-authentication-method=socket",
                        *owner], check=True, capture_output=True)  # fmt: skip
        proc = subprocess.Popen([*run_as, MARIADBD, cnf], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
        password = secrets.token_hex(8)
        grant = (f"CREATE USER pitr@'%' IDENTIFIED BY '{password}';"
                 "GRANT ALL ON *.* TO pitr@'%' WITH GRANT OPTION;")  # fmt: skip
        for _ in range(120):
            done = subprocess.run(root_sql, input=grant.encode(), capture_output=True)
            if done.returncode == 0:
                break
            if proc.poll() is not None:
                pytest.fail(f"mariadbd exited: {(base / 'err.log').read_text()[-2000:]}")
            time.sleep(0.25)
        else:
            pytest.fail("mariadbd did not accept connections within 30 s")
        os.environ[ADMIN_PASSWORD_ENV] = password
        yield BinlogServer(port, base / "binlog", password)
    finally:
        os.environ.pop(ADMIN_PASSWORD_ENV, None)
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def binlog_inventory(server: BinlogServer, dbname: str, repo_url: str) -> Inventory:
    return parse_inventory({
        "repositories": {"r": {"url": repo_url, "passphrase_env": REPO_PASSWORD_ENV},
                         "off": {"url": f"{repo_url}-off", "passphrase_env": REPO_PASSWORD_ENV}},
        "databases": {"shop": {"engine": "mysql", "url": f"{server.url}/{dbname}",
                               "password_env": ADMIN_PASSWORD_ENV, "repository": "r",
                               "copy_to": ["off"]}},
    })  # fmt: skip


@pytest.fixture
def mysql_binlog_repos(
    mysql_binlog_server: BinlogServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Repositories]:
    """Entry ``shop`` (table ``orders``) on the private server, with
    repositories ``r`` and its ``copy_to`` ``off`` in memory; the entry's
    databases (``shop_<hex>...``) are dropped afterwards."""
    server = mysql_binlog_server
    monkeypatch.setenv(REPO_PASSWORD_ENV, "pitr-test")
    dbname = f"shop_{secrets.token_hex(3)}"
    server.execute(f"CREATE DATABASE {dbname}")
    server.execute("CREATE TABLE orders (id INT PRIMARY KEY, label VARCHAR(20), qty INT)", dbname)
    inventory = binlog_inventory(server, dbname, f"memory://pitr-{dbname}")
    init_repository(inventory, "r", kdf=FAST_KDF)
    init_repository(inventory, "off", kdf=FAST_KDF)
    yield Repositories(inventory)
    for (name,) in server.execute("SHOW DATABASES LIKE %s", args=(f"{dbname}%",)):
        server.execute(f"DROP DATABASE `{name}`")


def binlog_dbname(repos: Repositories) -> str:
    return str(repos.inventory.databases["shop"].url).rsplit("/", 1)[1]
