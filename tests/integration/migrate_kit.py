"""An estate for ``dbfleet migrate`` tests: an inventory file in a temporary
directory with a file repository, migration files next to it, and the CLI
run as a real process (concurrency and ``kill -9`` need processes)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dbfleet.config import parse_inventory
from dbfleet.operations.repository import init_repository
from tests.integration.conftest import FAST_KDF

REPO_PW_ENV = "DBFLEET_MIGRATE_TEST_PW"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Estate:
    root: Path
    databases: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "dbfleet.yaml"

    def write(self) -> None:
        document = {
            "repositories": {
                "main": {"url": str(self.root / "repo"), "passphrase_env": REPO_PW_ENV}
            },
            "databases": self.databases,
            **self.settings,
        }
        self.config.write_text(yaml.safe_dump(document))

    def add(self, name: str, entry: dict[str, Any], after: list[str] | None = None) -> None:
        self.databases[name] = {**entry, "migrations": {"after": after or []}}
        self.write()

    def migration(self, database: str, filename: str, text: str) -> Path:
        path = self.root / "migrations" / database / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def env(self) -> dict[str, str]:
        return {**os.environ, REPO_PW_ENV: "migrate-test-pw", "PYTHONPATH": _pythonpath()}

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "dbfleet", "--config", str(self.config), "migrate", *args],
            env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def run(self, *args: str, timeout: float = 300) -> Result:
        process = self.start(*args)
        out, err = process.communicate(timeout=timeout)
        assert "Traceback" not in err, err
        return Result(process.returncode, out, err)

    def status(self, database: str) -> dict[str, Any]:
        result = self.run("status", database, "--json")
        assert result.code == 0, result.stderr
        rows: list[dict[str, Any]] = result.json()
        return rows[0]

    def snapshots(self) -> list[dict[str, Any]]:
        out = subprocess.run(
            [sys.executable, "-m", "dbfleet", "--config", str(self.config), "snapshots", "--json"],
            env=self.env(), capture_output=True, text=True, check=True,
        )  # fmt: skip
        found: list[dict[str, Any]] = json.loads(out.stdout)
        return found

    def catalog_runs(self) -> list[dict[str, Any]]:
        path = self.root / "dbfleet.catalog.db"
        with closing(sqlite3.connect(path)) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute("SELECT * FROM runs WHERE kind = 'migrate' ORDER BY id").fetchall()
        return [dict(r) for r in rows]


def _pythonpath() -> str:
    src = str(Path(__file__).resolve().parents[2] / "src")
    rest = os.environ.get("PYTHONPATH")
    return f"{src}:{rest}" if rest else src


def make_estate(root: Path) -> Estate:
    root.mkdir(parents=True, exist_ok=True)
    estate = Estate(root)
    estate.write()
    os.environ[REPO_PW_ENV] = "migrate-test-pw"
    repository = {"url": str(root / "repo"), "passphrase_env": REPO_PW_ENV}
    init_repository(parse_inventory({"repositories": {"main": repository}}), "main", kdf=FAST_KDF)
    return estate


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
