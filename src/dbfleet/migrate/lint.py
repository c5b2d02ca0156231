"""Warnings ``migrate plan`` prints for each step.

- Destructive statements on every SQL engine (sqlglot): ``DROP`` (of
  anything but an index), ``TRUNCATE``, ``DELETE`` without ``WHERE``, and
  column type changes (``ALTER ... TYPE`` / ``MODIFY`` / ``CHANGE``).
- PostgreSQL: squawk (``squawk-cli``), run offline as a subprocess on each
  migration's ``up`` section: unsafe locks, missing ``CONCURRENTLY``, adding
  a required column, missing ``lock_timeout``. When squawk is not installed
  ``plan`` says so once instead of silently linting less.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import sqlglot
from sqlglot import expressions as exp
from sqlglot.errors import SqlglotError

DIALECTS = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "sqlite": "sqlite",
    "clickhouse": "clickhouse",
}
_TYPE_CHANGE = re.compile(
    r"\bALTER\s+TABLE\b.*\b(ALTER\s+(COLUMN\s+)?\S+\s+(SET\s+DATA\s+)?TYPE|MODIFY|CHANGE)\b",
    re.IGNORECASE | re.DOTALL,
)


def destructive(statement: str, engine: str) -> str | None:
    """Why ``statement`` destroys data, or ``None``."""
    if _TYPE_CHANGE.search(statement):
        return "changes a column's type (may rewrite or truncate data)"
    try:
        parsed = sqlglot.parse_one(statement, read=DIALECTS.get(engine))
    except SqlglotError:
        parsed = None
    words = statement.split(None, 2)
    head = " ".join(words[:2]).upper()
    if isinstance(parsed, exp.Drop) or head.startswith("DROP "):
        kind = str(parsed.args.get("kind") or "") if isinstance(parsed, exp.Drop) else words[1]
        if kind.upper() != "INDEX":
            return f"drops a {kind.lower() or 'object'}"
    if head.startswith("TRUNCATE") or isinstance(parsed, exp.TruncateTable):
        return "truncates a table"
    if isinstance(parsed, exp.Delete) and not parsed.args.get("where"):
        return "deletes every row (no WHERE)"
    if isinstance(parsed, exp.Alter):
        for action in parsed.args.get("actions") or []:
            if isinstance(action, exp.Drop):
                return "drops a column or constraint"
    return None


def squawk_binary() -> str | None:
    """The squawk executable: next to this Python (a venv's bin), else on PATH."""
    beside = Path(sys.executable).with_name("squawk")
    return str(beside) if beside.is_file() else shutil.which("squawk")


def squawk(sql: str, *, assume_in_transaction: bool) -> list[str]:
    """squawk's warnings for ``sql`` (``rule: message``); raises ``OSError``
    or ``ValueError`` when squawk cannot run."""
    binary = squawk_binary()
    if binary is None:
        raise OSError("squawk is not installed (pip install squawk-cli)")
    args = [binary, "--reporter", "json"]
    if assume_in_transaction:
        args.append("--assume-in-transaction")
    done = subprocess.run(args, input=sql, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise ValueError(f"squawk failed: {done.stderr.strip()[:200] or done.returncode}")
    return [f"{v['rule_name']}: {v['message']}" for v in json.loads(done.stdout)]
