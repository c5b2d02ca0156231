"""The PostgreSQL engine against the real test server (scripts/test-servers.sh)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.postgresql import PostgreSQLEngine
from dbfleet.engines.registry import engine_for
from dbfleet.errors import EngineError, UsageError
from dbfleet.operations.common import SnapshotSource
from dbfleet.repo import BackupWriter, Repository, Snapshot, iter_stream
from tests.integration.conftest import (
    PG_PASSWORD_ENV,
    BackupFn,
    PgDatabase,
    PgServer,
    backup_while_writing,
    restore_as,
)

pytestmark = pytest.mark.postgres

NewName = Callable[[str], str]


def _catalog(server: PgServer, dbname: str) -> dict[str, Any]:
    """What a round trip must preserve, read from the catalogs."""
    queries = {
        "schemas": "SELECT nspname FROM pg_namespace WHERE nspname = 'sales'",
        "policies": "SELECT polname, polrelid::regclass::text FROM pg_policy",
        "rls": "SELECT relname FROM pg_class WHERE relrowsecurity",
        "triggers": "SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal",
        "matviews": "SELECT schemaname, matviewname, ispopulated FROM pg_matviews",
        "large_objects": "SELECT oid::bigint, md5(lo_get(oid)) FROM pg_largeobject_metadata",
        "extensions": "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'",
        "partitions": "SELECT inhrelid::regclass::text, inhparent::regclass::text FROM pg_inherits"
        " JOIN pg_class c ON c.oid = inhrelid WHERE c.relkind = 'r'",
        "sequences": "SELECT schemaname, sequencename, last_value FROM pg_sequences",
        "indexes": "SELECT indexname FROM pg_indexes WHERE schemaname = 'sales'",
        "foreign_keys": "SELECT conname, conrelid::regclass::text FROM pg_constraint"
        " WHERE contype = 'f'",
        "comments": "SELECT description FROM pg_description d JOIN pg_class c ON c.oid = d.objoid"
        " WHERE c.relname = 'orders'",
    }
    with server.connect(dbname) as conn:
        return {k: sorted(conn.execute(q).fetchall()) for k, q in queries.items()}


def _restore(repo: Repository, snapshot: Snapshot, config: Any, **options: Any) -> PostgreSQLEngine:
    return restore_as(PostgreSQLEngine, repo, snapshot, config, **options)


def test_round_trip_into_a_new_database(
    pg_server: PgServer,
    pg_source: PgDatabase,
    pg_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    engine = engine_for(pg_source.config)
    meta, snapshot = backup(engine)
    fingerprint = meta.fingerprint
    assert fingerprint is not None
    assert {
        "sales.orders",
        "sales.customers",
        "sales.events_2023",
        "sales.events_2024",
        "sales.events",
        "public.notes",
    } <= set(fingerprint["tables"])
    assert fingerprint["tables"]["sales.orders"]["rows"] == 300
    assert fingerprint["tables"]["sales.events"]["rows"] == 200
    assert fingerprint["sequences"]["sales.invoice_no"] == [5001, True]
    assert fingerprint["large_objects"]["count"] == 1
    assert meta.consistency_point and "/" in meta.consistency_point["lsn"]
    assert meta.tool == "pg_dump" and meta.tool_version and meta.server_version
    assert [s.name for s in snapshot.streams] == ["dump"]

    # A name pg_dump would take for a connection string unless dbfleet quotes it.
    target = _restore(repo, snapshot, engine.target(pg_databases("rt=it's")))
    assert compare_fingerprints(fingerprint, target.fingerprint()) == []
    source_catalog = _catalog(pg_server, pg_source.name)
    assert _catalog(pg_server, target.location.dbname) == source_catalog
    for kind in (
        "policies",
        "rls",
        "triggers",
        "matviews",
        "large_objects",
        "partitions",
        "sequences",
        "schemas",
        "comments",
    ):
        assert source_catalog[kind], f"the source has no {kind}: the test proves nothing"
    if pg_source.extension:
        assert (pg_source.extension,) in source_catalog["extensions"]
    with pg_server.connect(target.location.dbname) as conn:
        row = conn.execute("SELECT count(*), sum(orders) FROM sales.order_totals").fetchone()
    assert row == (3, 300)  # the materialized view was refreshed from the restored rows


def test_fingerprint_is_taken_in_the_dumps_snapshot(
    pg_server: PgServer,
    pg_source: PgDatabase,
    pg_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    with pg_server.connect(pg_source.name) as conn:  # a bigger dump: a wider window
        conn.execute(
            "CREATE TABLE public.bulk AS SELECT g AS id, md5(g::text) AS v"
            " FROM generate_series(1, 100000) AS g"
        )

    @contextmanager
    def session() -> Iterator[Callable[[], None]]:
        with pg_server.connect(pg_source.name) as conn:

            def write() -> None:
                conn.execute("INSERT INTO sales.orders (customer_id, amount) VALUES (1, 1)")
                conn.execute("UPDATE public.notes SET body = body || '.' WHERE id = 1")

            yield write

    meta, snapshot = backup_while_writing(backup, engine_for(pg_source.config), session)
    assert meta.fingerprint is not None
    live = engine_for(pg_source.config).fingerprint()
    assert compare_fingerprints(meta.fingerprint, live) != []  # the source moved on
    target = _restore(repo, snapshot, engine_for(pg_source.config).target(pg_databases("snap")))
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == []


def test_backup_of_a_missing_database_fails_and_records_nothing(
    pg_server: PgServer, pg_databases: NewName, repo: Repository, backup: BackupFn
) -> None:
    engine = engine_for(pg_server.config(pg_databases("missing")))
    with pytest.raises(EngineError, match="does not exist"):
        backup(engine)
    assert repo.list_snapshots() == []


def test_backup_without_read_permission_fails_and_records_nothing(
    pg_server: PgServer, pg_databases: NewName, repo: Repository, backup: BackupFn
) -> None:
    name = pg_databases("revoked")
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with pg_server.connect(name) as conn:
        conn.execute("CREATE TABLE public.secret (id int); INSERT INTO public.secret VALUES (1)")
        conn.execute("REVOKE ALL ON public.secret FROM PUBLIC")
    engine = engine_for(pg_server.config(name, user=pg_server.app_user))
    with pytest.raises(EngineError, match="permission denied"):
        backup(engine)
    assert repo.list_snapshots() == []


def test_wrong_password_is_reported_without_the_password(
    pg_source: PgDatabase, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "not-the-password-7f3a"
    monkeypatch.setenv("DBFLEET_TEST_WRONG_PW", wrong)
    engine = engine_for(pg_source.config.with_changes(password_env="DBFLEET_TEST_WRONG_PW"))
    with pytest.raises(EngineError) as failure, BackupWriter(repo) as writer:
        engine.backup(writer)
    message = str(failure.value)
    assert wrong not in message
    assert "password authentication failed" in message
    assert "$DBFLEET_TEST_WRONG_PW" in message  # says where to look
    assert "\n" not in message
    health = engine.health()
    assert not health.ok and health.error and wrong not in health.error
    with pytest.raises(EngineError) as failure:
        engine.fingerprint()
    assert wrong not in str(failure.value)
    assert repo.list_snapshots() == []


def test_restore_of_one_table(
    pg_server: PgServer,
    pg_source: PgDatabase,
    pg_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    engine = engine_for(pg_source.config)
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    tables = ("sales.orders",)
    target = _restore(repo, snapshot, engine.target(pg_databases("one")), tables=tables)
    restored = target.fingerprint()
    assert set(restored["tables"]) == {"sales.orders"}
    assert compare_fingerprints(meta.fingerprint, restored, tables) == []
    catalog = _catalog(pg_server, target.location.dbname)
    assert catalog["policies"] == [("orders_non_negative", "sales.orders")]
    assert catalog["triggers"] == [("orders_default_note", "sales.orders")]
    assert ("orders_placed_idx",) in catalog["indexes"] and ("orders_pkey",) in catalog["indexes"]
    assert catalog["matviews"] == [] and catalog["large_objects"] == []
    assert ("sales", "orders_id_seq", 300) in catalog["sequences"]

    # Into the source itself: clean replaces a partitioned table and its partitions.
    with pg_server.connect(pg_source.name) as conn:
        conn.execute("DELETE FROM sales.events WHERE id > 20")
    tables = ("sales.events",)
    _restore(repo, snapshot, pg_source.config, tables=tables, clean=True)
    after = engine.fingerprint()
    assert compare_fingerprints(meta.fingerprint, after, tables) == []
    assert after["tables"]["sales.events_2024"] == meta.fingerprint["tables"]["sales.events_2024"]

    # One partition alone, into its existing parent: it is attached again.
    with pg_server.connect(pg_source.name) as conn:
        conn.execute("TRUNCATE sales.events_2023")
    _restore(repo, snapshot, pg_source.config, tables=("sales.events_2023",), clean=True)
    assert compare_fingerprints(meta.fingerprint, engine.fingerprint(), ("sales.events",)) == []
    with pg_server.connect(pg_source.name) as conn:
        attached = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhrelid = 'sales.events_2023'::regclass"
            " OR inhrelid = 'sales.events_2023_pkey'::regclass"
        ).fetchone()
    assert attached == (2,)  # the table and its primary key index

    # A table other tables reference: their foreign keys are dropped and re-added.
    with pg_server.connect(pg_source.name) as conn:
        conn.execute("UPDATE sales.customers SET name = upper(name)")
    _restore(repo, snapshot, pg_source.config, tables=("sales.customers",), clean=True)
    assert compare_fingerprints(meta.fingerprint, engine.fingerprint()) == []
    assert _catalog(pg_server, pg_source.name)["foreign_keys"] == [
        ("orders_customer_id_fkey", "sales.orders")
    ]
    with pytest.raises(UsageError, match="sales.nope"):
        _restore(repo, snapshot, pg_source.config, tables=("sales.nope",))


def test_restore_of_a_table_at_the_start_of_the_dump(
    pg_server: PgServer, pg_databases: NewName, repo: Repository, backup: BackupFn
) -> None:
    # pg_restore -L stops reading once it has restored what the list names
    # (and exits 0): the rest of the dump, here table z's rows, is not read.
    name = pg_databases("early")
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with pg_server.connect(name) as conn:
        conn.execute(
            "CREATE TABLE a AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g"
        )
        conn.execute(
            "CREATE TABLE z AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g"
        )
    engine = engine_for(pg_server.config(name))
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    for table in ("public.a", "public.z"):
        target = _restore(repo, snapshot, engine.target(pg_databases("early")), tables=(table,))
        restored = target.fingerprint()
        assert set(restored["tables"]) == {table}
        assert compare_fingerprints(meta.fingerprint, restored, (table,)) == []


def test_restore_over_an_existing_database(
    pg_server: PgServer,
    pg_source: PgDatabase,
    pg_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    engine = engine_for(pg_source.config)
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    target = _restore(repo, snapshot, engine.target(pg_databases("over")))
    with pg_server.connect(target.location.dbname) as conn:
        conn.execute("DELETE FROM sales.orders WHERE id % 2 = 0")
        conn.execute("CREATE TABLE public.extra AS SELECT 1 AS kept")
    changed = target.fingerprint()

    with pytest.raises(EngineError, match="already exists"):
        target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    assert target.fingerprint() == changed  # single transaction: nothing changed

    target.restore(SnapshotSource(repo, snapshot), RestoreOptions(clean=True))
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == [
        "public.extra: present after restore but not in the backup"  # left alone
    ]
    assert _catalog(pg_server, target.location.dbname) == _catalog(pg_server, pg_source.name)


def _stream_text(repo: Repository, snapshot: Snapshot, name: str) -> str:
    return b"".join(iter_stream(repo, snapshot, name)).decode()


def test_globals_stream(
    pg_server: PgServer,
    pg_source: PgDatabase,
    pg_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    superuser = engine_for(pg_source.config.with_changes(globals=True))
    meta, snapshot = backup(superuser)
    assert [s.name for s in snapshot.streams] == ["globals", "dump"]
    text = _stream_text(repo, snapshot, "globals")
    assert "CREATE ROLE app;" in text and "SCRAM-SHA-256$" in text
    assert meta.options["no_role_passwords"] is False

    # Restoring with the globals: the roles exist already, which is not an error.
    target = _restore(
        repo, snapshot, superuser.target(pg_databases("withglobals")), include_globals=True
    )
    assert meta.fingerprint is not None
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == []

    # A role that is not a superuser cannot read password hashes.
    name = pg_databases("appowned")
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER {pg_server.app_user}')
    with pg_server.connect(name) as conn:
        conn.execute(f"SET ROLE {pg_server.app_user}")
        conn.execute("CREATE TABLE public.items AS SELECT g AS id FROM generate_series(1, 10) g")
    app = engine_for(pg_server.config(name, user=pg_server.app_user, globals=True))
    meta, snapshot = backup(app)
    text = _stream_text(repo, snapshot, "globals")
    assert "CREATE ROLE app;" in text and "CREATE ROLE dbfleet;" in text
    assert "PASSWORD" not in text and "SCRAM-SHA-256" not in text
    assert meta.options["no_role_passwords"] is True
    assert meta.fingerprint and meta.fingerprint["tables"]["public.items"]["rows"] == 10

    # ... and restores as itself into a database it owns (it may not create one):
    # ownership goes to the restoring role (--no-owner).
    copy = pg_databases("appcopy")
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{copy}" OWNER {pg_server.app_user}')
    restored = _restore(repo, snapshot, app.target(copy))
    assert compare_fingerprints(meta.fingerprint, restored.fingerprint()) == []


def test_forced_row_level_security_fails_the_backup_loudly(
    pg_server: PgServer, pg_databases: NewName, repo: Repository, backup: BackupFn
) -> None:
    """FORCE ROW LEVEL SECURITY hides rows even from the owner: pg_dump refuses
    (a silent partial dump would be worse), and a fingerprint says it saw less."""
    name = pg_databases("forcerls")
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER {pg_server.app_user}')
    with pg_server.connect(name) as conn:
        conn.execute(f"SET ROLE {pg_server.app_user}")
        conn.execute("CREATE TABLE public.tenants AS SELECT g AS id FROM generate_series(1, 10) g")
        conn.execute("ALTER TABLE public.tenants ENABLE ROW LEVEL SECURITY")
        conn.execute("ALTER TABLE public.tenants FORCE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY small ON public.tenants USING (id <= 4)")
    engine = engine_for(pg_server.config(name, user=pg_server.app_user))
    entry = engine.fingerprint()["tables"]["public.tenants"]
    assert entry["rows"] == 4 and entry["row_security"] == "applied"
    with pytest.raises(EngineError, match="row-level security"):
        backup(engine)
    assert repo.list_snapshots() == []
    superuser = engine_for(pg_server.config(name)).fingerprint()["tables"]["public.tenants"]
    assert superuser["rows"] == 10 and "row_security" not in superuser


def test_health(pg_server: PgServer, pg_source: PgDatabase) -> None:
    health = engine_for(pg_source.config).health()
    assert health.ok, health.error
    with pg_server.connect() as conn:
        row = conn.execute("SHOW server_version").fetchone()
    assert row is not None and health.version == row[0]
    assert health.size_bytes and health.size_bytes > 1_000_000
    assert health.details["connections"] >= 1
    assert health.details["max_connections"] >= health.details["connections"]
    assert "cache_hit_ratio" in health.details
    assert health.details["in_recovery"] is False


@contextmanager
def _watch_command_lines(secret: bytes) -> Iterator[dict[str, Any]]:
    """Poll every process's argv while the block runs."""
    seen: dict[str, Any] = {"leaks": [], "tools": set()}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        argv = f.read()
                except OSError:
                    continue
                if secret in argv:
                    seen["leaks"].append(argv.replace(b"\0", b" ").decode(errors="replace"))
                tool = os.path.basename(argv.split(b"\0", 1)[0].decode(errors="replace"))
                if tool in ("pg_dump", "pg_dumpall", "pg_restore", "psql"):
                    seen["tools"].add(tool)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def test_password_never_appears_in_a_command_line(
    pg_server: PgServer,
    pg_source: PgDatabase,
    pg_databases: NewName,
    repo: Repository,
    backup: BackupFn,
) -> None:
    password = os.environ[PG_PASSWORD_ENV].encode()
    engine = engine_for(pg_source.config.with_changes(globals=True))
    with _watch_command_lines(password) as seen:
        meta, snapshot = backup(engine)
        _restore(repo, snapshot, engine.target(pg_databases("argv")), include_globals=True)
        _restore(repo, snapshot, engine.target(pg_databases("argv1")), tables=("public.notes",))
    assert seen["leaks"] == []
    assert seen["tools"] & {"pg_dump", "pg_restore"}, "the poller never saw a tool running"


def test_scratch_target_and_drop(pg_server: PgServer, pg_source: PgDatabase) -> None:
    engine = engine_for(pg_source.config)
    scratch = engine_for(engine.scratch("verify_" + "x" * 80))
    assert isinstance(scratch, PostgreSQLEngine)
    name = scratch.location.dbname
    assert name.startswith(f"{pg_source.name}_dbfleet_verify_") and len(name.encode()) == 63
    assert scratch.config.password_env == pg_source.config.password_env
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    scratch.drop()
    with pg_server.connect() as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None
        )
    scratch.drop()  # dropping what is gone is fine
    with pytest.raises(UsageError, match="system database"):
        engine_for(engine.target("postgres")).drop()
