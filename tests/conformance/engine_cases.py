"""Engine cases for the conformance suite: one per engine, each a real server
(or file) with sample data. Adding an engine means adding a case here."""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from dbfleet.config import DatabaseConfig
from dbfleet.operations.demo import create_sample_database


@dataclass
class EngineCase:
    """A populated source database and what the suite needs to know about it."""

    engine: str
    source: DatabaseConfig
    table: str
    """A table that subset restore can restore alone."""
    mutate: Callable[[], None]
    """Change some rows (used to check that a later backup sees the change)."""
    broken: DatabaseConfig
    """A config whose backup must fail (missing database or file)."""


def sqlite_case(request: pytest.FixtureRequest) -> Iterator[EngineCase]:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    path = tmp_path / "source.db"
    create_sample_database(path, notes=3000)

    def mutate() -> None:
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("UPDATE notes SET score = score + 1 WHERE id <= 10")

    yield EngineCase(
        engine="sqlite",
        source=DatabaseConfig(engine="sqlite", path=path),
        table="notes",
        mutate=mutate,
        broken=DatabaseConfig(engine="sqlite", path=tmp_path / "missing.db"),
    )


def _discover() -> dict[str, Callable[[pytest.FixtureRequest], Iterator[EngineCase]]]:
    """SQLite here, and every ``tests/conformance/cases_<engine>.py`` module
    (each defines ``ENGINE`` and ``case(request)``)."""
    cases: dict[str, Callable[[pytest.FixtureRequest], Iterator[EngineCase]]] = {
        "sqlite": sqlite_case
    }
    for path in sorted(Path(__file__).parent.glob("cases_*.py")):
        module = importlib.import_module(f"tests.conformance.{path.stem}")
        cases[module.ENGINE] = module.case
    return cases


CASES = _discover()


@pytest.fixture(params=sorted(CASES))
def engine_case(request: pytest.FixtureRequest) -> Iterator[EngineCase]:
    yield from CASES[request.param](request)
