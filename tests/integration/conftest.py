"""Integration fixtures: real servers started by ``scripts/test-servers.sh``.

Per engine there is a session fixture describing the server (``pg_server``)
and function fixtures that create fresh, uniquely named databases and drop
them afterwards (``pg_databases``, ``pg_source``). Connection settings come
from the environment, else from the env file the script writes. Locally a
missing server skips the tests with a hint; under CI (``CI`` set) it fails,
because CI always starts the servers.

Engine-neutral fixtures: ``repo`` (a repository in memory) and ``backup``
(back an engine up into it and commit a snapshot).
"""

from __future__ import annotations

import os
import secrets
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from dbfleet.config import DatabaseConfig, parse_inventory
from dbfleet.engines.base import BackupMeta, Engine, RestoreOptions
from dbfleet.engines.registry import engine_for
from dbfleet.operations.common import Repositories, SnapshotSource
from dbfleet.operations.repository import init_repository
from dbfleet.repo import BackupWriter, Repository, Snapshot
from dbfleet.storage import MemoryStorage

STATE = Path(os.environ.get("DBFLEET_TEST_STATE", "/tmp/dbfleet-test-servers"))
FAST_KDF = {"n": 2**10, "r": 8, "p": 1}


def _load_env_file() -> None:
    """Export the variables of the script's env file that are not set yet."""
    path = STATE / "env.sh"
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            os.environ.setdefault(name, value)


class DatabaseNames:
    """Unique ``dbfleet_it_<label>_<hex>`` database names for one test, and
    their cleanup: call it for a name; :meth:`drop` removes the names handed
    out and, with ``leftover``, databases named ``<name><leftover>...``
    (scratch copies, server-entry members) that the test left behind."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, label: str = "db") -> str:
        name = f"dbfleet_it_{label}_{secrets.token_hex(4)}"
        self.names.append(name)
        return name

    def drop(
        self,
        drop: Callable[[str], None],
        existing: Iterable[str] | None = None,
        leftover: str | None = None,
    ) -> None:
        """``existing``: the server's databases (default: just the names)."""
        for db in self.names if existing is None else existing:
            if any(db == n or (leftover and db.startswith(n + leftover)) for n in self.names):
                drop(db)


def _unavailable(what: str, hint: str = "run scripts/test-servers.sh start") -> None:
    """Skip locally when a test server is missing; fail under CI, which always
    starts every server (a skip there would hide missing work)."""
    message = f"{what}: {hint}" if hint else what
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must run every test)")
    pytest.skip(message)


# -- engine-neutral ----------------------------------------------------------


@pytest.fixture
def repo() -> Repository:
    return Repository.init(MemoryStorage(), "integration", FAST_KDF)


BackupFn = Callable[[Engine], tuple[BackupMeta, Snapshot]]
EngineT = TypeVar("EngineT")


@pytest.fixture
def backup(repo: Repository) -> BackupFn:
    """Back ``engine`` up into ``repo``; returns the engine's meta and the snapshot."""

    def run(engine: Engine) -> tuple[BackupMeta, Snapshot]:
        started = datetime.now(UTC)
        with BackupWriter(repo) as writer:
            meta = engine.backup(writer)
            snapshot = writer.commit(
                Snapshot(
                    database="integration",
                    engine=engine.name,
                    hostname=socket.gethostname(),
                    started=started,
                    finished=datetime.now(UTC),
                    server_version=meta.server_version,
                    tool=meta.tool,
                    tool_version=meta.tool_version,
                    fingerprint=meta.fingerprint,
                    consistency_point=meta.consistency_point,
                    options=meta.options,
                )
            )
        return meta, snapshot

    return run


def restore_as(
    kind: type[EngineT],
    repo: Repository,
    snapshot: Snapshot,
    config: DatabaseConfig,
    **options: Any,
) -> EngineT:
    """Restore ``snapshot`` into ``config`` with an engine that must be a
    ``kind``; returns the engine (to fingerprint or inspect the target)."""
    engine = engine_for(config)
    assert isinstance(engine, kind)
    engine.restore(SnapshotSource(repo, snapshot), RestoreOptions(**options))
    return engine


WriteSession = Callable[[], AbstractContextManager[Callable[[], None]]]


def backup_while_writing(
    backup: BackupFn, engine: Engine, session: WriteSession
) -> tuple[BackupMeta, Snapshot]:
    """Back ``engine`` up while another thread keeps writing: ``session()``
    opens a connection and yields one write, called in a loop until the end.
    Asserts that writes happened while the backup ran and went on after it
    (so a consistency check that follows has something to catch)."""
    stop = threading.Event()
    done = [0]

    def writer() -> None:
        with session() as write:
            while not stop.is_set():
                write()
                done[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 10
        while done[0] < count:
            assert thread.is_alive() and time.monotonic() < deadline, "the writer stopped"
            time.sleep(0.005)

    try:
        wait_for(5)
        before = done[0]
        result = backup(engine)
        during = done[0] - before
        wait_for(before + during + 5)  # and it goes on after the backup
    finally:
        stop.set()
        thread.join()
    assert during > 0, "the writer made no change while the backup ran"
    return result


# -- PostgreSQL --------------------------------------------------------------

PG_PASSWORD_ENV = "DBFLEET_TEST_PG_PASSWORD"
PG_APP_PASSWORD_ENV = "DBFLEET_TEST_PG_APP_PASSWORD"


@dataclass
class PgServer:
    """The PostgreSQL test server: a superuser URL and the non-superuser ``app``."""

    url: str
    app_user: str = "app"

    def config(self, dbname: str, *, user: str | None = None, **changes: Any) -> DatabaseConfig:
        base = self.url.rsplit("/", 1)[0]
        dbname = quote(dbname, safe="")
        if user is not None:
            scheme, _, rest = base.partition("://")
            base = f"{scheme}://{user}@{rest.rpartition('@')[2]}"
        password_env = PG_APP_PASSWORD_ENV if user == self.app_user else PG_PASSWORD_ENV
        return DatabaseConfig(
            engine="postgresql",
            url=f"{base}/{dbname}",
            password_env=password_env,
            **changes,
        )

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.url, dbname=dbname, password=os.environ[PG_PASSWORD_ENV], autocommit=True
        )

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    if not os.environ.get("DBFLEET_TEST_PG_URL"):
        _load_env_file()
    url = os.environ.get("DBFLEET_TEST_PG_URL")
    if not url or not os.environ.get(PG_PASSWORD_ENV):
        _unavailable("PostgreSQL test server not configured (DBFLEET_TEST_PG_URL)")
    assert url is not None
    os.environ.setdefault(PG_APP_PASSWORD_ENV, "app-test-pw")  # the script's test-only default
    server = PgServer(url)
    try:
        server.connect().close()
    except psycopg.OperationalError as exc:
        _unavailable(f"PostgreSQL test server at {url} unreachable ({str(exc).strip()})")
    return server


@pytest.fixture
def pg_databases(pg_server: PgServer) -> Iterator[Callable[[str], str]]:
    """Hands out unique database names; drops every one of them afterwards."""
    names = DatabaseNames()
    yield names
    names.drop(pg_server.drop_database)


@dataclass
class PgDatabase:
    name: str
    config: DatabaseConfig
    extension: str | None
    """The contrib extension installed in it (``None`` if none is available)."""


RICH_SCHEMA = """
CREATE SCHEMA sales;
CREATE TABLE sales.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    tags {tag_type}
);
CREATE SEQUENCE sales.invoice_no START 1000;
CREATE TABLE sales.orders (
    id serial PRIMARY KEY,
    customer_id bigint REFERENCES sales.customers (id),
    note text,
    amount numeric(12, 2),
    data jsonb,
    payload bytea,
    placed_at timestamptz DEFAULT now(),
    ratio double precision,
    invoice bigint DEFAULT nextval('sales.invoice_no')
);
CREATE INDEX orders_placed_idx ON sales.orders (placed_at);
COMMENT ON TABLE sales.orders IS 'orders, with a trigger and a policy';
CREATE FUNCTION sales.default_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.note := coalesce(NEW.note, 'order ' || NEW.id); RETURN NEW; END $$;
CREATE TRIGGER orders_default_note BEFORE INSERT ON sales.orders
    FOR EACH ROW EXECUTE FUNCTION sales.default_note();
ALTER TABLE sales.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY orders_non_negative ON sales.orders USING (amount >= 0);
CREATE TABLE sales.events (
    id bigint, at date NOT NULL, kind text, PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE sales.events_2023 PARTITION OF sales.events
    FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE sales.events_2024 PARTITION OF sales.events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE INDEX events_kind_idx ON sales.events (kind);
CREATE MATERIALIZED VIEW sales.order_totals AS
    SELECT customer_id, sum(amount) AS total, count(*) AS orders
    FROM sales.orders GROUP BY customer_id;

INSERT INTO sales.customers (name, tags)
    VALUES ('ada', {tag_a}), ('grace', NULL), ('linus', {tag_b});
INSERT INTO sales.orders (customer_id, amount, data, payload, placed_at, ratio)
SELECT 1 + i % 3, i * 1.25, jsonb_build_object('i', i, 'even', i % 2 = 0),
       decode(md5(i::text), 'hex'), timestamptz '2024-01-01 00:00+02' + i * interval '1 hour',
       i / 7.0
FROM generate_series(1, 300) AS i;
INSERT INTO sales.events SELECT i, date '2023-10-01' + i, 'kind ' || i % 5
FROM generate_series(1, 200) AS i;
SELECT setval('sales.invoice_no', 5000);
SELECT nextval('sales.invoice_no');
REFRESH MATERIALIZED VIEW sales.order_totals;
SELECT lo_from_bytea(0, '\\x00010203fffe'::bytea);
CREATE TABLE public.notes (id int PRIMARY KEY, body text);
INSERT INTO public.notes SELECT i, repeat('note ', i % 10) FROM generate_series(1, 50) AS i;
"""


def create_rich_database(server: PgServer, name: str, owner: str | None = None) -> str | None:
    """Create ``name`` with the rich schema; returns the extension it installed."""
    with server.connect() as conn:
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            create += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        conn.execute(create)
    with server.connect(name) as conn:
        available = {
            n for (n,) in conn.execute("SELECT name FROM pg_available_extensions").fetchall()
        }
        extension = next((e for e in ("hstore", "pgcrypto") if e in available), None)
        if extension:
            conn.execute(sql.SQL("CREATE EXTENSION {}").format(sql.Identifier(extension)))
        if extension == "hstore":
            tag_type, tag_a, tag_b = "hstore", "'vip=>yes, region=>eu'", "'region=>us'"
        else:
            tag_type, tag_a, tag_b = "text[]", "'{vip,eu}'", "'{us}'"
        schema = RICH_SCHEMA.format(tag_type=tag_type, tag_a=tag_a, tag_b=tag_b)
        with conn.cursor() as cur:
            cur.execute(schema.encode())  # several statements: simple query protocol
    return extension


@pytest.fixture
def pg_source(pg_server: PgServer, pg_databases: Callable[[str], str]) -> PgDatabase:
    """A fresh database with a rich schema (see ``RICH_SCHEMA``)."""
    name = pg_databases("src")
    extension = create_rich_database(pg_server, name)
    return PgDatabase(name, pg_server.config(name), extension)


PgEstate = Callable[..., Repositories]


@pytest.fixture
def pg_estate(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> PgEstate:
    """An inventory of ``{entry: database}`` on the test server with a fresh
    in-memory repository, for the operations the CLI runs (backup_many,
    verify_snapshot, restore_snapshot). Keyword arguments are added to every
    entry (e.g. ``scratch="name"``)."""
    monkeypatch.setenv("DBFLEET_TEST_REPO_PW", "pg-estate-test")

    def make(entries: dict[str, str], **settings: Any) -> Repositories:
        databases = {
            entry: {"engine": "postgresql", "url": pg_server.config(dbname).url,
                    "password_env": PG_PASSWORD_ENV, **settings}
            for entry, dbname in entries.items()
        }  # fmt: skip
        inventory = parse_inventory(
            {
                "repositories": {
                    "mem": {
                        "url": f"memory://pg-estate-{secrets.token_hex(4)}",
                        "passphrase_env": "DBFLEET_TEST_REPO_PW",
                    }
                },
                "databases": databases,
            }
        )
        init_repository(inventory, "mem", kdf=FAST_KDF)
        return Repositories(inventory)

    return make
