"""The MySQL/MariaDB engine against the real MariaDB test server
(scripts/test-servers.sh)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pymysql
import pytest

from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.mysql import MySQLEngine
from dbfleet.engines.mysql.dump import DumpScanner, filter_dump
from dbfleet.engines.registry import engine_for
from dbfleet.errors import EngineError, ToolMissingError, UsageError
from dbfleet.operations.common import SnapshotSource
from dbfleet.repo import BackupWriter, Repository, Snapshot, iter_stream
from tests.integration.conftest import BackupFn, _unavailable, backup_while_writing, restore_as
from tests.integration.fixtures_mysql import (
    MYSQL_PASSWORD_ENV,
    MySQLDatabase,
    MySQLServer,
)

pytestmark = pytest.mark.mysql

NewName = Callable[[str], str]
TOOLS = ("mariadb-dump", "mysqldump", "mariadb", "mysql")


def _catalog(server: MySQLServer, dbname: str) -> dict[str, Any]:
    """What a round trip must preserve, read from the server's catalogs."""
    queries = {
        "tables": "SELECT TABLE_NAME, TABLE_TYPE, ENGINE FROM information_schema.TABLES"
        " WHERE TABLE_SCHEMA = %s",
        "columns": "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT,"
        " GENERATION_EXPRESSION FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s",
        "routines": "SELECT ROUTINE_NAME, ROUTINE_TYPE, ROUTINE_DEFINITION, DEFINER"
        " FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s",
        "triggers": "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_STATEMENT, DEFINER"
        " FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
        "events": "SELECT EVENT_NAME, EVENT_DEFINITION, INTERVAL_VALUE, STATUS"
        " FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
        "views": "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS"
        " WHERE TABLE_SCHEMA = %s",
        "foreign_keys": "SELECT CONSTRAINT_NAME, TABLE_NAME, REFERENCED_TABLE_NAME"
        " FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s",
        "indexes": "SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS"
        " WHERE TABLE_SCHEMA = %s",
    }
    result = {k: sorted(server.query(q, args=(dbname,))) for k, q in queries.items()}
    # definitions mention the database by name; compare them without it
    return {
        k: [tuple(str(v).replace(dbname, "DB") for v in row) for row in rows]
        for k, rows in result.items()
    }


def _restore(repo: Repository, snapshot: Snapshot, config: Any, **options: Any) -> MySQLEngine:
    return restore_as(MySQLEngine, repo, snapshot, config, **options)


def _payloads(server: MySQLServer, dbname: str) -> list[tuple[Any, ...]]:
    return server.query("SELECT id, HEX(payload), note, data FROM orders ORDER BY id", dbname)


def _stream(repo: Repository, snapshot: Snapshot, name: str) -> bytes:
    return b"".join(iter_stream(repo, snapshot, name))


def test_round_trip_into_a_new_database(
    mysql_server: MySQLServer,
    mysql_source: MySQLDatabase,
    mysql_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    engine = engine_for(mysql_source.config)
    meta, snapshot = backup(engine)
    fingerprint = meta.fingerprint
    assert fingerprint is not None
    tables = fingerprint["tables"]
    assert set(tables) == {"customers", "orders", "nopk", "emptyt", "odd `name` (x)", "legacy"}
    assert tables["orders"]["rows"] == 302 and tables["emptyt"]["rows"] == 0
    assert tables["nopk"]["rows"] == 3  # duplicate rows count twice
    assert fingerprint["sequences"] == {"invoice_no": [2000, 0]}
    point = meta.consistency_point
    assert point and point["log_bin"] is True and point["binlog_file"].startswith("mariadb-bin.")
    assert point["binlog_position"] > 0 and point["gtid"]
    assert meta.tool == "mariadb-dump" and meta.tool_version and meta.server_version
    assert [s.name for s in snapshot.streams] == ["dump", "catalog"]

    # The same rows written as dbfleet dumps them (one INSERT per row), as
    # extended INSERTs on one line (MySQL) or one row per line (MariaDB 10.11)
    # give the same fingerprint.
    joined = b"".join(filter_dump(iter_stream(repo, snapshot, "dump")))
    assert joined.count(b"INSERT INTO `orders`") == 1
    for variant in (
        joined.replace(b"\n,(", b",("),
        joined.replace(b"\n,(", b",\n(").replace(b" VALUES (", b" VALUES\n("),
    ):
        scanner = DumpScanner()
        scanner.feed(variant)
        scanner.finish()
        assert scanner.fingerprint() == fingerprint

    name = mysql_databases("rt-it's")  # quoting matters everywhere
    target = _restore(repo, snapshot, engine.target(name))
    assert compare_fingerprints(fingerprint, target.fingerprint()) == []
    source_catalog = _catalog(mysql_server, mysql_source.name)
    assert _catalog(mysql_server, name) == source_catalog
    for kind in ("routines", "triggers", "events", "views", "foreign_keys"):
        assert source_catalog[kind], f"the source has no {kind}: the test proves nothing"
    assert _payloads(mysql_server, name) == _payloads(mysql_server, mysql_source.name)
    all_bytes = mysql_server.query("SELECT payload FROM orders WHERE note = 'all bytes'", name)
    assert all_bytes == [(bytes(range(256)),)]
    # the copy uses its own sequence, not the source's
    mysql_server.execute(["INSERT INTO orders (customer_id) VALUES (1)"], name)
    assert mysql_server.query("SELECT NEXTVAL(invoice_no)", mysql_source.name) == [(1302,)]
    assert mysql_server.query("SELECT twice(21), COUNT(*) FROM order_totals", name) == [(42, 3)]


def test_fingerprint_is_taken_in_the_dumps_snapshot(
    mysql_server: MySQLServer,
    mysql_source: MySQLDatabase,
    mysql_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    mysql_server.execute(  # a bigger dump: a wider window
        [
            "CREATE TABLE bulk (id INT PRIMARY KEY, v CHAR(32))",
            "INSERT INTO bulk SELECT seq, MD5(seq) FROM seq_1_to_200000",
        ],
        mysql_source.name,
    )

    @contextmanager
    def session() -> Iterator[Callable[[], None]]:
        with mysql_server.connect(mysql_source.name) as conn, conn.cursor() as cur:

            def write() -> None:
                cur.execute("INSERT INTO orders (customer_id, amount) VALUES (1, 1)")
                cur.execute("UPDATE customers SET kind = IF(kind = 'a', 'b', 'a') WHERE id = 1")
                cur.execute("UPDATE orders SET amount = amount + 1 WHERE id = 1")

            yield write

    meta, snapshot = backup_while_writing(backup, engine_for(mysql_source.config), session)
    assert meta.fingerprint is not None
    live = engine_for(mysql_source.config).fingerprint()
    assert compare_fingerprints(meta.fingerprint, live) != []  # the source moved on
    target = _restore(repo, snapshot, engine_for(mysql_source.config).target(mysql_databases("s")))
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == []
    # rows and the sequence (the trigger fills note; the default takes invoices) agree
    rows = mysql_server.query("SELECT COUNT(*), MAX(invoice) FROM orders", target.location.dbname)
    assert rows[0][0] == meta.fingerprint["tables"]["orders"]["rows"]


def test_backup_of_a_missing_database_fails_and_records_nothing(
    mysql_server: MySQLServer, mysql_databases: NewName, repo: Repository, backup: BackupFn
) -> None:
    engine = engine_for(mysql_server.config(mysql_databases("missing")))
    with pytest.raises(EngineError, match="Unknown database") as failure:
        backup(engine)
    assert "check the database name" in str(failure.value)
    assert repo.list_snapshots() == []


def test_wrong_password_is_reported_without_the_password(
    mysql_source: MySQLDatabase, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "not-the-password-7f3a"
    monkeypatch.setenv("DBFLEET_TEST_WRONG_PW", wrong)
    engine = engine_for(mysql_source.config.with_changes(password_env="DBFLEET_TEST_WRONG_PW"))
    with pytest.raises(EngineError) as failure, BackupWriter(repo) as writer:
        engine.backup(writer)
    message = str(failure.value)
    assert wrong not in message and "Access denied" in message
    assert "$DBFLEET_TEST_WRONG_PW" in message  # says where to look
    assert "\n" not in message
    health = engine.health()
    assert not health.ok and health.error and wrong not in health.error
    with pytest.raises(EngineError) as failure:
        engine.fingerprint()
    assert wrong not in str(failure.value)
    assert repo.list_snapshots() == []


def test_unreachable_server_and_missing_tools(
    mysql_source: MySQLDatabase, repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = mysql_source.config.url
    assert url is not None
    server_port = urlsplit(url).port
    closed = engine_for(
        mysql_source.config.with_changes(url=url.replace(f":{server_port}", f":{port}"))
    )
    health = closed.health()
    assert not health.ok and health.error and "Can't connect" in health.error
    assert "check that the server is running" in health.error

    monkeypatch.setenv("PATH", str(tmp_path))  # no client tools anywhere
    engine = engine_for(mysql_source.config)
    with (
        pytest.raises(ToolMissingError, match="mariadb-client") as failure,
        BackupWriter(repo) as writer,
    ):
        engine.backup(writer)
    assert "mariadb-dump" in str(failure.value) and "mysqldump" in str(failure.value)
    assert repo.list_snapshots() == []


def test_a_dump_that_loses_its_connection_fails(
    mysql_server: MySQLServer, mysql_source: MySQLDatabase, repo: Repository, backup: BackupFn
) -> None:
    mysql_server.execute(
        [
            "CREATE TABLE big (id INT PRIMARY KEY, v CHAR(200))",
            "INSERT INTO big SELECT seq, REPEAT(MD5(seq), 6) FROM seq_1_to_300000",
        ],
        mysql_source.name,
    )
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 20
        while not killed and time.monotonic() < deadline:
            for row in mysql_server.query("SHOW FULL PROCESSLIST"):
                if row[3] == mysql_source.name and "SQL_NO_CACHE" in str(row[7]):
                    mysql_server.execute([f"KILL {row[0]}"])
                    killed.append(row[0])
                    break
            time.sleep(0.002)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        with pytest.raises(EngineError, match="mariadb-dump exited with status") as failure:
            backup(engine_for(mysql_source.config))
    finally:
        thread.join()
    assert killed, "the dump's connection was never seen"
    assert "Lost connection" in str(failure.value) or "2013" in str(failure.value)
    assert repo.list_snapshots() == []


def test_restore_of_one_table(
    mysql_server: MySQLServer,
    mysql_source: MySQLDatabase,
    mysql_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    engine = engine_for(mysql_source.config)
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    tables = ("orders",)
    target = _restore(repo, snapshot, engine.target(mysql_databases("one")), tables=tables)
    restored = target.fingerprint()
    assert set(restored["tables"]) == {"orders"}
    assert compare_fingerprints(meta.fingerprint, restored, tables) == []
    catalog = _catalog(mysql_server, target.location.dbname)
    assert [t[0] for t in catalog["tables"]] == ["invoice_no", "orders"]  # + its sequence
    assert [t[0] for t in catalog["triggers"]] == ["orders_note"]
    assert catalog["routines"] == [] and catalog["events"] == [] and catalog["views"] == []

    # Into the source itself: clean replaces the table, other tables stay.
    mysql_server.execute(["DELETE FROM orders WHERE id > 20"], mysql_source.name)
    _restore(repo, snapshot, mysql_source.config, tables=tables, clean=True)
    assert compare_fingerprints(meta.fingerprint, engine.fingerprint(), tables) == []
    assert compare_fingerprints(meta.fingerprint, engine.fingerprint()) == []
    # ... and without clean it refuses, changing nothing
    with pytest.raises(EngineError, match="already has objects of the backup: table orders"):
        _restore(repo, snapshot, mysql_source.config, tables=("orders", "nopk"))
    with pytest.raises(UsageError, match="nope"):
        _restore(repo, snapshot, mysql_source.config, tables=("nope",))
    # a referenced table: foreign keys of other tables keep pointing at it
    mysql_server.execute(["UPDATE customers SET name = UPPER(name)"], mysql_source.name)
    _restore(repo, snapshot, mysql_source.config, tables=("customers",), clean=True)
    assert compare_fingerprints(meta.fingerprint, engine.fingerprint()) == []
    assert _catalog(mysql_server, mysql_source.name)["foreign_keys"] == [
        ("orders_ibfk_1", "orders", "customers")
    ]


def test_restore_over_an_existing_database(
    mysql_server: MySQLServer,
    mysql_source: MySQLDatabase,
    mysql_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    engine = engine_for(mysql_source.config)
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    target = _restore(repo, snapshot, engine.target(mysql_databases("over")))
    name = target.location.dbname
    mysql_server.execute(
        [
            "DELETE FROM orders WHERE id % 2 = 0",
            "CREATE TABLE extra (kept INT)",
            "DROP EVENT nightly",
        ],
        name,
    )
    changed = target.fingerprint()
    with pytest.raises(EngineError, match="already has objects of the backup") as failure:
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    assert "--clean" in str(failure.value)
    assert target.fingerprint() == changed  # checked up front: nothing changed

    target.restore(SnapshotSource(repo, snapshot), RestoreOptions(clean=True))
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == [
        "extra: present after restore but not in the backup"  # left alone
    ]
    assert (
        _catalog(mysql_server, name)["events"]
        == _catalog(mysql_server, mysql_source.name)["events"]
    )


def test_a_failed_restore_is_undone(
    mysql_server: MySQLServer,
    mysql_source: MySQLDatabase,
    mysql_databases: NewName,
    repo: Repository,
    backup: BackupFn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = engine_for(mysql_source.config)
    meta, snapshot = backup(engine)

    # Into an existing database: a trigger name the catalog check cannot
    # foresee makes the replay fail half way; what it created is dropped.
    name = mysql_databases("undo")
    mysql_server.execute([f"CREATE DATABASE `{name}`"])
    mysql_server.execute(
        ["CREATE TABLE other (a INT)", "CREATE TRIGGER orders_note BEFORE INSERT ON other"
         " FOR EACH ROW SET NEW.a = 1"],
        name,
    )  # fmt: skip
    with pytest.raises(EngineError, match="already exists"):
        _restore(repo, snapshot, engine.target(name))
    assert [r[0] for r in mysql_server.query("SHOW TABLES", name)] == ["other"]

    # Into a new database, as an account without SUPER or SET USER: every
    # failed attempt drops the database it created.
    user, password = f"dbfleet_it_lim_{secrets.token_hex(3)}", "limited-pw"
    monkeypatch.setenv("DBFLEET_TEST_LIMITED_PW", password)
    mysql_server.execute([
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
        f"GRANT ALL PRIVILEGES ON `dbfleet\\_it\\_%`.* TO '{user}'@'%'",
    ])  # fmt: skip
    limited = mysql_server.config(
        mysql_databases("lim"), user=user, password_env="DBFLEET_TEST_LIMITED_PW"
    )
    exists = "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s"
    new_name = (limited.url or "").rsplit("/", 1)[1]
    try:
        # With the binary log on, creating functions needs SUPER (or a setting).
        with pytest.raises(EngineError, match="log_bin_trust_function_creators"):
            _restore(repo, snapshot, limited)
        assert mysql_server.query(exists, args=(new_name,)) == []
        mysql_server.execute(["SET GLOBAL log_bin_trust_function_creators = 1"])
        # Definers kept: the account may not name another one.
        with pytest.raises(EngineError, match="SUPER|SET USER") as failure:
            _restore(repo, snapshot, limited.with_changes(options={"no_definer": False}))
        assert "no_definer" in str(failure.value)
        assert mysql_server.query(exists, args=(new_name,)) == []
        # By default the definers are left out: the account owns the objects.
        target = _restore(repo, snapshot, limited)
        assert meta.fingerprint is not None
        assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == []
        definers = {r[3] for r in _catalog(mysql_server, target.location.dbname)["routines"]}
        assert definers == {f"{user}@%"}
    finally:
        mysql_server.execute(
            [f"DROP USER IF EXISTS '{user}'@'%'", "SET GLOBAL log_bin_trust_function_creators = 0"]
        )


def test_globals_stream(
    mysql_server: MySQLServer,
    mysql_source: MySQLDatabase,
    mysql_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    tag = secrets.token_hex(3)
    user, role, password = f"dbfleet_it_u_{tag}", f"dbfleet_it_r_{tag}", 'gl\'obal "pw"'
    db = mysql_source.name
    setup = [
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password.replace(chr(39), chr(39) * 2)}'",
        f"GRANT SELECT, INSERT ON `{db}`.* TO '{user}'@'%'",
        f"CREATE ROLE {role}",
        f"GRANT SELECT ON `{db}`.`orders` TO {role}",
        f"GRANT {role} TO '{user}'@'%'",
        f"SET DEFAULT ROLE {role} FOR '{user}'@'%'",
    ]
    try:
        mysql_server.execute(setup)
        engine = engine_for(mysql_source.config.with_changes(globals=True))
        meta, snapshot = backup(engine)
        assert [s.name for s in snapshot.streams] == ["globals", "dump", "catalog"]
        text = _stream(repo, snapshot, "globals").decode()
        assert f"CREATE USER IF NOT EXISTS `{user}`@`%` IDENTIFIED BY PASSWORD '*" in text
        assert f"CREATE ROLE IF NOT EXISTS `{role}`;" in text
        assert "`root`@`localhost`" not in text and "mariadb.sys" not in text
        assert all("IDENTIFIED" not in line for line in text.splitlines() if "GRANT" in line)
        grants_before = sorted(mysql_server.query(f"SHOW GRANTS FOR '{user}'@'%'"))

        # the account is gone; a restore with globals brings it back, password included
        mysql_server.execute([f"DROP USER '{user}'@'%'", f"DROP ROLE {role}"])
        target = _restore(
            repo, snapshot, engine.target(mysql_databases("gl")), include_globals=True
        )
        assert sorted(mysql_server.query(f"SHOW GRANTS FOR '{user}'@'%'")) == grants_before
        pymysql.connect(
            host=mysql_server.host, port=mysql_server.port, user=user, password=password,
            database=db,
        ).close()  # fmt: skip
        assert meta.fingerprint is not None
        assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == []
        # again, over existing accounts: nothing to do, no error (no ADMIN OPTION needed)
        _restore(repo, snapshot, engine.target(mysql_databases("gl2")), include_globals=True)
    finally:
        mysql_server.execute([f"DROP USER IF EXISTS '{user}'@'%'", f"DROP ROLE IF EXISTS {role}"])


def test_health(mysql_server: MySQLServer, mysql_source: MySQLDatabase) -> None:
    health = engine_for(mysql_source.config).health()
    assert health.ok, health.error
    assert health.version == mysql_server.query("SELECT VERSION()")[0][0]
    assert health.size_bytes and health.size_bytes > 50_000
    details = health.details
    assert details["flavor"] == "mariadb" and details["log_bin"] is True
    assert details["threads_connected"] >= 1 and details["uptime_seconds"] > 0
    assert details["max_connections"] >= details["threads_connected"]
    assert 0 <= details["buffer_pool_hit_ratio"] <= 1
    assert details["replication"] == {"role": "none"}
    assert details["gtid"]


@contextmanager
def _watch_tools(secret: bytes) -> Iterator[dict[str, Any]]:
    """Poll every process's argv (and the option file of each tool) while the block runs."""
    seen: dict[str, Any] = {"leaks": [], "tools": set(), "first_args": set(), "modes": set()}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        argv = f.read().split(b"\0")
                except OSError:
                    continue
                if any(secret in a for a in argv):
                    seen["leaks"].append(b" ".join(argv).decode(errors="replace"))
                tool = os.path.basename(argv[0].decode(errors="replace"))
                if tool in TOOLS and len(argv) > 1 and argv[1] != b"--version":
                    seen["tools"].add(tool)
                    first = argv[1].decode()
                    seen["first_args"].add(first.partition("=")[0])
                    path = first.partition("=")[2]
                    with contextlib.suppress(OSError):
                        seen["modes"].add(
                            (stat.S_IMODE(os.stat(path).st_mode),
                             stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode))
                        )  # fmt: skip

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def test_password_never_appears_in_a_command_line(
    mysql_server: MySQLServer,
    mysql_source: MySQLDatabase,
    mysql_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    mysql_server.execute(  # a dump long enough to be seen
        [
            "CREATE TABLE bulk (id INT PRIMARY KEY, v CHAR(32))",
            "INSERT INTO bulk SELECT seq, MD5(seq) FROM seq_1_to_100000",
        ],
        mysql_source.name,
    )
    password = os.environ[MYSQL_PASSWORD_ENV].encode()
    engine = engine_for(mysql_source.config)
    with _watch_tools(password) as seen:
        meta, snapshot = backup(engine)
        _restore(repo, snapshot, engine.target(mysql_databases("argv")))
        _restore(repo, snapshot, engine.target(mysql_databases("argv1")), tables=("bulk",))
    assert seen["leaks"] == []
    assert seen["tools"] >= {"mariadb-dump", "mariadb"}, "the poller never saw the tools"
    assert seen["first_args"] == {"--defaults-extra-file"}
    assert seen["modes"] and seen["modes"] <= {(0o600, 0o700)}


def test_awkward_password_reaches_the_tools(
    mysql_server: MySQLServer,
    mysql_source: MySQLDatabase,
    backup: BackupFn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The option file quotes what MySQL option files would otherwise eat."""
    user, password = f"dbfleet_it_q_{secrets.token_hex(3)}", " p\"a's\\s #x\t= "
    monkeypatch.setenv("DBFLEET_TEST_ODD_PW", password)
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    mysql_server.execute([
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{escaped}'",
        f"GRANT ALL PRIVILEGES ON `{mysql_source.name}`.* TO '{user}'@'%'",
        f"GRANT SELECT ON mysql.proc TO '{user}'@'%'",  # routines of other definers
    ])  # fmt: skip
    try:
        config = mysql_server.config(
            mysql_source.name, user=user, password_env="DBFLEET_TEST_ODD_PW"
        )
        meta, _ = backup(engine_for(config))
        assert meta.fingerprint and meta.fingerprint["tables"]["orders"]["rows"] == 302
        assert engine_for(config).fingerprint() == meta.fingerprint
    finally:
        mysql_server.execute([f"DROP USER IF EXISTS '{user}'@'%'"])


def test_restore_to_a_url_over_the_socket(
    mysql_server: MySQLServer,
    mysql_source: MySQLDatabase,
    mysql_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    """Another location given by URL (here the same server over its unix socket)."""
    socket_path = os.environ.get("DBFLEET_TEST_MYSQL_SOCKET")
    if not socket_path:
        _unavailable("MariaDB test server's socket not configured (DBFLEET_TEST_MYSQL_SOCKET)")
    meta, snapshot = backup(engine_for(mysql_source.config))
    name = mysql_databases("sock")
    config = mysql_source.config.with_changes(
        url=f"mysql://dbfleet@localhost/{name}?socket={socket_path}"
    )
    target = _restore(repo, snapshot, config)
    assert meta.fingerprint is not None
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == []
    assert target.health().ok


def test_scratch_target_and_drop(mysql_server: MySQLServer, mysql_source: MySQLDatabase) -> None:
    engine = engine_for(mysql_source.config)
    scratch = engine_for(engine.scratch("verify_" + "x" * 80))
    assert isinstance(scratch, MySQLEngine)
    name = scratch.location.dbname
    assert name.startswith(f"{mysql_source.name}_dbfleet_verify_") and len(name) == 64
    assert scratch.config.password_env == mysql_source.config.password_env
    mysql_server.execute([f"CREATE DATABASE `{name}`"])
    scratch.drop()
    exists = "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s"
    assert mysql_server.query(exists, args=(name,)) == []
    scratch.drop()  # dropping what is gone is fine
    for system in ("mysql", "information_schema", "performance_schema", "sys"):
        with pytest.raises(UsageError, match="system database"):
            engine_for(engine.target(system)).drop()
