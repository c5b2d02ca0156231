"""``dbfleet serve`` with ``health:`` against the real PostgreSQL test
server: samples land in the catalog, and a ``free_ratio`` alert is notified
once when the database grows past it and once when it shrinks back, to a
real local webhook receiver (``serve --once`` runs one health round)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from dbfleet.catalog import Catalog
from tests.integration.conftest import PG_PASSWORD_ENV, PgServer
from tests.unit.test_notify import Receiver, receiver

__all__ = ["receiver"]


def _serve_once(config: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dbfleet", "--config", str(config), "serve", "--once"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
        env=os.environ | {"DBFLEET_PASSPHRASE": "health-test-passphrase"},
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert os.environ[PG_PASSWORD_ENV] not in proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stderr
    return proc


def _size(server: PgServer, name: str) -> int:
    with server.connect(name) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None
        return int(row[0])


def test_serve_samples_into_the_catalog_and_alerts_once_each_way(
    tmp_path: Path, pg_server: PgServer, pg_databases: Any, receiver: Receiver
) -> None:
    name = pg_databases("health")
    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    empty = _size(pg_server, name)
    config = pg_server.config(name)
    document = {
        "repositories": {"main": {"url": f"file://{tmp_path}/repo"}},
        "databases": {
            "pg": {"engine": "postgresql", "url": config.url, "password_env": config.password_env,
                   "capacity_bytes": int(empty * 1.5)},
        },
        "health": {"interval": "30s", "timeout": "5s", "alerts": {"free_ratio": 0.2}},
        "notifications": [{"type": "webhook", "url": receiver.url + "/hook",
                           "events": ["health_alert", "health_cleared"]}],
    }  # fmt: skip
    inventory = tmp_path / "dbfleet.yaml"
    inventory.write_text(yaml.safe_dump(document))

    _serve_once(inventory)  # free ~1/3: no alert
    with pg_server.connect(name) as conn:  # grow by more than half of the empty size
        conn.execute("CREATE TABLE filler AS SELECT repeat('x', 1000) AS t"
                     f" FROM generate_series(1, {empty // 700})")  # fmt: skip
    assert 1 - _size(pg_server, name) / (empty * 1.5) < 0.2
    _serve_once(inventory)
    _serve_once(inventory)  # still crossed: not notified again
    with pg_server.connect(name) as conn:
        conn.execute("DROP TABLE filler")
    _serve_once(inventory)

    events = [(r.body["event"], r.body["database"]) for r in receiver.requests]
    assert events == [("health_alert", "pg"), ("health_cleared", "pg")]
    assert receiver.requests[0].body["health"]["threshold"] == 0.2
    with Catalog(tmp_path / "dbfleet.catalog.db") as catalog:
        history = catalog.health_history("pg")
        assert len(history) == 4 and all(s.up for s in history)
        assert all(s.engine == "postgresql" and (s.connections or 0) >= 1 for s in history)
        sizes = [s.size_bytes or 0 for s in history]
        assert sizes[1] > sizes[0] * 1.3 and sizes[3] < sizes[2]
        alert = catalog.alert("health:free_ratio:pg")
        assert alert is not None and alert.state == "ok"
