"""Run ``dbfleet`` in-process (its real entry point, ``dbfleet.cli.main.run``)
and check what a user would see: the exit code, one ``dbfleet: error:``
line, no traceback, no secret. In-process keeps hundreds of runs fast; the
subprocess path is covered by test_cli.py."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dbfleet.config import load_inventory
from dbfleet.operations.backup import backup_many
from dbfleet.operations.common import Repositories
from dbfleet.operations.demo import create_sample_database
from dbfleet.operations.repository import init_repository

FAST_KDF = {"n": 2**10, "r": 8, "p": 1}
PASSPHRASE = "clikit-Passphrase-4e1d77-never-printed"
PASSPHRASE_ENV = "DBFLEET_CLIKIT_PW"
SECRET = "S3cr3tPw-9d2b"
"""A password the tests type into URLs: it must never be printed."""


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_cli(*args: str | Path, config: Path | None = None, **env: str) -> CliResult:
    """``dbfleet [--config FILE] ARGS`` in this process."""
    from dbfleet.cli.main import run

    argv = (["--config", str(config)] if config is not None else []) + [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with (
        environment({PASSPHRASE_ENV: PASSPHRASE, **env}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            run(argv)
        except SystemExit as exc:
            code = exc.code
    return CliResult(code if isinstance(code, int) else 1, out.getvalue(), err.getvalue())


def assert_no_leak(result: CliResult) -> None:
    for secret in (PASSPHRASE, SECRET):
        assert secret not in result.output, result.output
    assert "Traceback" not in result.output, result.stderr
    assert "internal error" not in result.output, result.stderr


def error_line(result: CliResult, code: int = 2) -> str:
    """The one error line of a failed command (and no traceback, no secret)."""
    assert_no_leak(result)
    assert result.code == code, (result.code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dbfleet: error: "), result.stderr
    return lines[0]


class Estate:
    """notes.db, dbfleet.yaml and an initialised file:// repository with one
    backup of notes, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.database = root / "notes.db"
        self.config = root / "dbfleet.yaml"
        create_sample_database(self.database, notes=300)
        self.write({"notes": {"engine": "sqlite", "path": str(self.database)}})
        with environment({PASSPHRASE_ENV: PASSPHRASE}):
            init_repository(load_inventory(self.config), "local", kdf=FAST_KDF)
        self.backup("notes")

    def document(self, databases: dict[str, Any]) -> dict[str, Any]:
        return {
            "repositories": {
                "local": {"url": f"file://{self.root / 'repo'}", "passphrase_env": PASSPHRASE_ENV}
            },
            "databases": databases,
        }

    def write(self, databases: dict[str, Any], path: Path | None = None) -> Path:
        path = path or self.config
        path.write_text(yaml.safe_dump(self.document(databases), sort_keys=False))
        return path

    def backup(self, *names: str) -> None:
        with environment({PASSPHRASE_ENV: PASSPHRASE}):
            results = backup_many(Repositories(load_inventory(self.config)), list(names))
        assert all(r.ok for r in results), [r.error for r in results]

    def run(self, *args: str | Path, **env: str) -> CliResult:
        return run_cli(*args, config=self.config, **env)


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows}
