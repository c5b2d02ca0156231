"""SQLite health sample: the file, read through a read-only connection.

Readings: the size (database file plus its ``-wal`` file, what a backup
reads), and in ``extra`` the page size, page count and free pages
(``freelist_count``: space a ``VACUUM`` would return) and the journal mode.
``connections`` is ``None``: SQLite has no server and does not know its
readers. Everything else (cache, locks, replication) is ``None`` too.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.health import take_sample
from dbfleet.engines.base import HealthSample
from dbfleet.errors import EngineError


class SQLiteHealthSampler:
    """:class:`~dbfleet.engines.base.HealthSampler` for a SQLite entry."""

    def __init__(self, database: str, config: DatabaseConfig) -> None:
        self.database = database
        self.config = config

    def sample(self, timeout: float) -> HealthSample:
        return take_sample(self.database, "sqlite", self.config, timeout, self._collect)

    def _collect(self, sample: HealthSample, timeout: float) -> None:
        if self.config.path is None:
            raise EngineError("sqlite database needs a 'path'")
        path = Path(self.config.path).expanduser()
        if not path.is_file():
            raise EngineError(f"SQLite database {path} does not exist")
        wal = path.with_name(path.name + "-wal")
        try:
            # busy timeout bounds the wait for a writer's lock
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)) as c:
                page_size = c.execute("PRAGMA page_size").fetchone()[0]
                pages = c.execute("PRAGMA page_count").fetchone()[0]
                free = c.execute("PRAGMA freelist_count").fetchone()[0]
                journal = c.execute("PRAGMA journal_mode").fetchone()[0]
        except sqlite3.Error as exc:
            raise EngineError(f"cannot read SQLite database {path}: {exc}") from None
        sample.version = sqlite3.sqlite_version
        sample.size_bytes = float(path.stat().st_size + (wal.stat().st_size if wal.exists() else 0))
        sample.extra.update(
            page_size=page_size, page_count=pages, freelist_pages=free, journal_mode=journal
        )
