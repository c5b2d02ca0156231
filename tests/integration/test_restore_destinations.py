"""``restore --to`` and ``--target`` for a server engine, against the real
PostgreSQL test server (issue #17, items 9 and 11): a URL with a password is
refused and masked (and nothing is created on the server), a path where a
URL belongs is refused, target names that climb are refused, and the
documented way (``--to URL --password-env VAR``) restores."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.integration.conftest import PG_PASSWORD_ENV, PgServer
from tests.unit.clikit import (
    FAST_KDF,
    PASSPHRASE,
    PASSPHRASE_ENV,
    SECRET,
    environment,
    error_line,
    run_cli,
)


def _exists(server: PgServer, name: str) -> bool:
    with server.connect() as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def test_server_destinations(
    pg_server: PgServer, pg_databases: Callable[[str], str], tmp_path: Path
) -> None:
    from dbfleet.config import load_inventory
    from dbfleet.operations.repository import init_repository

    source, restored, refused = pg_databases("dest"), pg_databases("to"), pg_databases("no")
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{source}"')
    with pg_server.connect(source) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO orders SELECT i, 'n' || i FROM generate_series(1, 50) i")
    config = tmp_path / "dbfleet.yaml"
    url = pg_server.config(source).url
    assert url is not None
    repository = {"url": f"file://{tmp_path / 'repo'}", "passphrase_env": PASSPHRASE_ENV}
    database = {"engine": "postgresql", "url": url, "password_env": PG_PASSWORD_ENV}
    config.write_text(
        yaml.safe_dump({"repositories": {"local": repository}, "databases": {"pg": database}})
    )
    with environment({PASSPHRASE_ENV: PASSPHRASE}):
        init_repository(load_inventory(config), "local", kdf=FAST_KDF)
    assert run_cli("backup", "pg", config=config).code == 0

    base = url.rsplit("/", 1)[0]
    scheme, _, rest = base.partition("://")
    user, _, host = rest.rpartition("@")
    with_password = f"{scheme}://{user}:{SECRET}@{host}"
    line = error_line(run_cli("restore", "pg:latest", "--to", f"{with_password}/{refused}",
                              config=config))  # fmt: skip
    assert ":***@" in line and "--password-env" in line
    assert not _exists(pg_server, refused)

    line = error_line(run_cli("restore", "pg:latest", "--to", tmp_path / "x.db", config=config))
    assert "is not a URL, but postgresql restores to a server" in line
    assert list(tmp_path.glob("x.db*")) == []
    for name in ("../x", f"{refused}\n", ""):
        error_line(run_cli("restore", "pg:latest", "--target", name, config=config))
    line = error_line(
        run_cli("restore", "pg:latest", "--to", f"{base}/{refused}", "--password-env",
                "DBFLEET_TEST_NO_SUCH_VARIABLE", config=config)
    )  # fmt: skip
    assert "that environment variable is empty" in line
    assert not _exists(pg_server, refused)

    done = run_cli("restore", "pg:latest", "--to", f"{base}/{restored}", "--password-env",
                   PG_PASSWORD_ENV, config=config)  # fmt: skip
    assert done.code == 0, done.stderr
    assert os.environ[PG_PASSWORD_ENV] not in done.output
    with pg_server.connect(restored) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (50,)
