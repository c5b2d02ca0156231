"""What the job catalog says about each database's backups and drills, read
in a handful of aggregate queries (a year of daily jobs for a fleet is
~100k rows: the work is SQLite's, nothing is loaded row by row).

Read-only: the catalog is opened without creating or upgrading it, and a
missing catalog is an empty one (nothing was recorded yet).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dbfleet.errors import OperationError

FAILURES = ("failed", "timeout", "aborted")
"""Statuses that count as a failed attempt (``skipped`` is no attempt)."""
KINDS = ("backup", "drill", "verify", "copy", "forget", "prune", "restore")


def _ts(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text).timestamp()


@dataclass
class KindFacts:
    """One (kind, target)'s history."""

    last_success: float | None = None
    last_failure: float | None = None
    last_attempt: float | None = None
    last_ok: bool | None = None
    """Whether the newest finished attempt succeeded."""
    runs: dict[str, int] = field(default_factory=dict)
    """``success``, ``failure``, ``skipped`` -> count."""
    running: int = 0
    last_success_details: dict[str, Any] | None = None
    last_success_duration: float | None = None


@dataclass
class CatalogFacts:
    facts: dict[tuple[str, str], KindFacts] = field(default_factory=dict)
    """``(kind, target)`` -> facts."""
    last_tick: float | None = None
    jobs: dict[str, int] = field(default_factory=dict)
    """``queued``/``running`` -> count of runs in that state."""
    drill_rto: dict[str, float] = field(default_factory=dict)
    """target -> the RTO its newest drill that measured one measured."""

    def get(self, kind: str, target: str) -> KindFacts | None:
        return self.facts.get((kind, target))


def _connect(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute("SELECT 1 FROM runs LIMIT 1")  # a catalog at all (schema 1 or 2 both have runs)
    except sqlite3.Error as exc:
        raise OperationError(f"cannot read job catalog {path}: {exc}") from None
    return db


def read_catalog(path: Path) -> CatalogFacts:
    """The facts of every (kind, target) in the catalog at ``path``.
    Raises :class:`OperationError` when it exists but cannot be read."""
    db = _connect(path)
    out = CatalogFacts()
    if db is None:
        return out
    try:
        with closing(db):
            _read(db, out)
    except sqlite3.Error as exc:
        raise OperationError(f"cannot read job catalog {path}: {exc}") from None
    return out


def _facts(out: CatalogFacts, kind: str, target: str) -> KindFacts:
    return out.facts.setdefault((kind, target), KindFacts())


def _read(db: sqlite3.Connection, out: CatalogFacts) -> None:
    fail = ",".join(f"'{s}'" for s in FAILURES)
    rows = db.execute(
        "SELECT kind, target, "
        "max(CASE WHEN status = 'ok' THEN finished_at END), "
        f"max(CASE WHEN status IN ({fail}) THEN finished_at END), "
        f"max(CASE WHEN status = 'ok' OR status IN ({fail}) THEN finished_at END), "
        "sum(status = 'ok'), "
        f"sum(status IN ({fail})), "
        "sum(status = 'skipped'), "
        "sum(status IN ('queued', 'running')) "
        "FROM runs GROUP BY kind, target"
    )
    for kind, target, ok_at, fail_at, attempt_at, oks, fails, skips, active in rows:
        f = _facts(out, kind, target)
        f.last_success, f.last_failure, f.last_attempt = _ts(ok_at), _ts(fail_at), _ts(attempt_at)
        f.runs = {"success": int(oks or 0), "failure": int(fails or 0), "skipped": int(skips or 0)}
        f.running = int(active or 0)
    newest_attempt = db.execute(
        "SELECT kind, target, status FROM runs WHERE id IN (SELECT max(id) FROM runs "
        f"WHERE status = 'ok' OR status IN ({fail}) GROUP BY kind, target)"
    )
    for kind, target, status in newest_attempt:
        _facts(out, kind, target).last_ok = status == "ok"
    newest_ok = db.execute(
        "SELECT kind, target, duration_seconds, details FROM runs WHERE id IN "
        "(SELECT max(id) FROM runs WHERE status = 'ok' AND kind IN ('backup', 'drill') "
        "GROUP BY kind, target)"
    )
    for kind, target, duration, details in newest_ok:
        f = _facts(out, kind, target)
        f.last_success_duration = duration
        f.last_success_details = json.loads(details) if details else None
    _drill_rto(db, out)
    for status, count in db.execute(
        "SELECT status, count(*) FROM runs WHERE status IN ('queued', 'running') GROUP BY status"
    ):
        out.jobs[status] = int(count)
    tick = db.execute("SELECT value FROM meta WHERE key = 'last_tick'").fetchone()
    out.last_tick = _ts(tick[0]) if tick else None


def _drill_rto(db: sqlite3.Connection, out: CatalogFacts) -> None:
    """The newest measured RTO per drilled target: the newest drill run
    (passed or failed) whose drills measured one; a server entry's RTO is
    its slowest member's (they are restored one after another, but each
    member is a database someone waits for)."""
    rows = db.execute(
        "SELECT target, details FROM runs WHERE kind = 'drill' AND status IN ('ok', 'failed') "
        "AND details LIKE '%\"rto_seconds\": %' ORDER BY id DESC"
    )
    for target, details in rows:
        if target in out.drill_rto:
            continue
        drills = (json.loads(details) or {}).get("drills") or []
        measured = [float(d["rto_seconds"]) for d in drills if d.get("rto_seconds") is not None]
        if measured:
            out.drill_rto[target] = max(measured)
