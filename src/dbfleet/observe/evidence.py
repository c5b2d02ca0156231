"""Drill evidence: what each drill restored, where, and what it proved.

One :class:`DrillEvidence` per drilled snapshot, read from the job catalog
(kind ``drill``; the run's ``details.drills`` are the
:class:`dbfleet.operations.drill.DrillResult` objects). A drill run that
ended before any drill started (timed out, aborted, no snapshot) is one row
with the run's own status and error, so a missing drill is never hidden.

Exports (auditors ask for proof that backups are tested): :func:`to_csv`
and :func:`to_json` turn rows of evidence or compliance into text with a
fixed column order (:data:`DRILL_COLUMNS`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dbfleet.catalog import Catalog, Run
from dbfleet.observe.snapshots import belongs
from dbfleet.operations.drill import KIND


@dataclass
class DrillEvidence:
    """``fingerprint`` is ``match`` (every table compared equal), ``mismatch``
    or ``not compared`` (the drill did not get that far: see ``reason``)."""

    run_id: int
    database: str
    started_at: str | None
    result: str
    snapshot: str | None = None
    snapshot_time: str | None = None
    restored_to: str | None = None
    fingerprint: str = "not compared"
    tables_compared: int = 0
    restored_bytes: int = 0
    restore_seconds: float | None = None
    fingerprint_seconds: float | None = None
    rto_seconds: float | None = None
    rto_objective_seconds: float | None = None
    within_objective: bool | None = None
    duration_seconds: float | None = None
    trigger: str | None = None
    actor: str | None = None
    reason: str | None = None
    differences: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DRILL_COLUMNS = [f for f in DrillEvidence.__dataclass_fields__ if f != "differences"]


def _fingerprint(item: dict[str, Any]) -> str:
    if item.get("differences"):
        return "mismatch"
    if item.get("rto_seconds") is not None and item.get("result") in ("pass", "rto_exceeded"):
        return "match"
    return "not compared"


def evidence_of(run: Run) -> list[DrillEvidence]:
    """The evidence one drill run holds (one row per drilled snapshot)."""
    items = (run.details or {}).get("drills") or []
    if not items:
        return [
            DrillEvidence(
                run_id=run.id,
                database=run.target,
                started_at=run.started_at,
                result="pass" if run.status == "ok" else run.status,
                snapshot=run.snapshot,
                duration_seconds=run.duration_seconds,
                trigger=run.trigger,
                actor=run.actor,
                reason=run.error,
            )
        ]
    return [
        DrillEvidence(
            run_id=run.id,
            database=str(item["database"]),
            started_at=item.get("started_at") or run.started_at,
            result=str(item.get("result", "failed")),
            snapshot=item.get("snapshot"),
            snapshot_time=item.get("snapshot_time"),
            restored_to=item.get("scratch"),
            fingerprint=_fingerprint(item),
            tables_compared=int(item.get("tables_compared") or 0),
            restored_bytes=int(item.get("bytes") or 0),
            restore_seconds=item.get("restore_seconds"),
            fingerprint_seconds=item.get("fingerprint_seconds"),
            rto_seconds=item.get("rto_seconds"),
            rto_objective_seconds=item.get("rto_objective_seconds"),
            within_objective=item.get("within_objective"),
            duration_seconds=item.get("total_seconds"),
            trigger=run.trigger,
            actor=run.actor,
            reason=item.get("reason"),
            differences=[str(d) for d in item.get("differences") or []],
        )
        for item in items
    ]


def drill_evidence(
    catalog: Catalog | None, database: str | None = None, *, limit: int | None = None
) -> list[DrillEvidence]:
    """Every finished drill's evidence, newest first (of ``database`` and its
    members when given). Running and queued drills are not evidence yet."""
    if catalog is None:
        return []
    rows: list[DrillEvidence] = []
    for run in catalog.runs(kind=KIND, database=database, limit=None):
        if run.status in ("queued", "running"):
            continue
        rows.extend(
            e for e in evidence_of(run) if database is None or belongs(e.database, database)
        )
        if limit is not None and len(rows) >= limit:
            return rows[:limit]
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """RFC 4180 CSV with a header line; ``None`` is an empty cell, booleans
    ``true``/``false``, lists and objects JSON. A cell that starts with
    ``=``, ``+``, ``-`` or ``@`` is prefixed with ``'`` so a spreadsheet does
    not run it as a formula (CSV injection): database names and error texts
    come from outside."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for column in columns:
            text = _cell(row.get(column))
            is_number = isinstance(row.get(column), int | float)
            if text[:1] in ("=", "+", "-", "@") and not is_number:
                text = "'" + text
            cells.append(text)
        writer.writerow(cells)
    return out.getvalue()


def to_json(rows: Sequence[dict[str, Any]], *, generated_at: str) -> str:
    """``{"generated_at": ..., "rows": [...]}``, indented, keys in row order."""
    return json.dumps({"generated_at": generated_at, "rows": list(rows)}, indent=2) + "\n"
