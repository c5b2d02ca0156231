"""The Chinook sample database (a digital media store: artists, albums,
tracks, customers, employees, invoices, playlists; see PROVENANCE.md), as
its tables' rows, for the sample tests of several engines."""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "sqlite" / "chinook.json.gz"


@cache
def chinook() -> dict[str, dict[str, Any]]:
    """``{table: {"columns": [...], "rows": [[...], ...]}}`` in Chinook's
    own table and column names (Chinook_Sqlite.sql)."""
    with gzip.open(DATA) as data:
        tables: dict[str, dict[str, Any]] = json.load(data)
    return tables


def records(table: str) -> list[dict[str, Any]]:
    """The rows of ``table`` as column -> value mappings."""
    data = chinook()[table]
    return [dict(zip(data["columns"], row, strict=True)) for row in data["rows"]]
