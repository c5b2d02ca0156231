"""One scheduled job, in its own process::

    python -m dbfleet.schedule.worker --config FILE KIND TARGET

``dbfleet serve`` starts one of these per job, so that a job can be stopped
at any moment (timeout, shutdown) without touching the scheduler, and a
crash or leak in one job cannot take the scheduler down.

It calls the same operation functions as the CLI commands and prints one
JSON object on its last stdout line: ``ok``, ``bytes``, ``snapshot``,
``error``, ``error_type``, ``aborted``, ``details``. Exit status 0 when ok,
1 when the job failed, 143 when it was stopped by SIGTERM.

On SIGTERM (or SIGINT) the job raises :class:`Aborted` wherever it is, and
everything unwinds as for any error: the dump tool is killed, the backup is
not committed (a snapshot is published only at commit, so there is no
partial snapshot; packs already uploaded stay unreferenced until ``prune``),
the repository lock is released and temporary files are removed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from dbfleet.config import Inventory
from dbfleet.engines.base import ArchiveCopy
from dbfleet.errors import DbfleetError, UsageError
from dbfleet.operations.backup import backup_many
from dbfleet.operations.common import Repositories
from dbfleet.operations.copy import copy_snapshots, copy_wal_archives
from dbfleet.operations.drill import drill_job
from dbfleet.operations.restore import verify_snapshot
from dbfleet.operations.retention import forget, prune_repository
from dbfleet.schedule.config import JOB_KINDS, Scheduling

EXIT_ABORTED = 128 + signal.SIGTERM


class Aborted(BaseException):
    """The job was told to stop (SIGTERM/SIGINT). A BaseException, so that no
    ``except Exception`` on the way up mistakes it for a failure to handle."""


@dataclass
class JobResult:
    ok: bool
    bytes: int = 0
    snapshot: str | None = None
    error: str | None = None
    error_type: str | None = None
    aborted: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "bytes": self.bytes,
            "snapshot": self.snapshot,
            "error": self.error,
            "error_type": self.error_type,
            "aborted": self.aborted,
            "details": self.details,
        }


def _backup(repos: Repositories, scheduling: Scheduling, target: str) -> JobResult:
    results = backup_many(repos, [target])
    failed = [r for r in results if not r.ok]
    several = len(results) > 1
    return JobResult(
        ok=not failed,
        bytes=sum(r.added_bytes for r in results),
        snapshot=results[0].snapshot if len(results) == 1 else None,
        error="; ".join(f"{r.database}: {r.error}" if several else str(r.error) for r in failed)
        or None,
        error_type=failed[0].error_type if failed else None,
        details={"results": [r.as_dict() for r in results]},
    )


def _verify(repos: Repositories, scheduling: Scheduling, target: str) -> JobResult:
    inventory = repos.inventory
    db = inventory.database(target)
    if db.all_databases:
        members = sorted(
            {
                s.database
                for s in repos.for_database(target).list_snapshots()
                if s.database.startswith(f"{target}/")
            }
        )
    else:
        members = [target]
    rto = scheduling.database(target).rto
    restored = [0]

    def count(n: int) -> None:
        restored[0] += n

    errors: list[str] = []
    error_type = None
    verified = []
    for member in members:
        try:
            result = verify_snapshot(repos, f"{member}:latest", on_bytes=count)
        except DbfleetError as exc:
            errors.append(f"{member}: {exc}" if db.all_databases else str(exc))
            error_type = error_type or type(exc).__name__
            continue
        verified.append(result.as_dict())
        prefix = f"{member}: " if db.all_databases else ""
        if not result.ok:
            shown = "; ".join(result.differences[:3])
            errors.append(f"{prefix}restored data differs from the backup: {shown}")
            error_type = error_type or "FingerprintMismatchError"
        elif rto is not None and result.restore_seconds > rto.total_seconds():
            errors.append(
                f"{prefix}restore took {result.restore_seconds:.1f}s, over the RTO of "
                f"{rto.total_seconds():g}s"
            )
            error_type = error_type or "RTOExceeded"
    if not members:
        errors.append(f"no snapshots of {target} to verify")
        error_type = "SnapshotNotFoundError"
    return JobResult(
        ok=not errors,
        bytes=restored[0],
        snapshot=verified[0]["snapshot"] if len(verified) == 1 else None,
        error="; ".join(errors) or None,
        error_type=error_type,
        details={"verified": verified, "rto_seconds": rto.total_seconds() if rto else None},
    )


def _drill(repos: Repositories, scheduling: Scheduling, target: str) -> JobResult:
    """A restore drill (docs/drills.md); the RTO objective is the database's ``rto``."""
    return JobResult(**drill_job(repos, target))


def _forget(repos: Repositories, scheduling: Scheduling, target: str) -> JobResult:
    db = repos.inventory.database(target)
    assert db.repository is not None
    groups = forget(repos, repositories=[db.repository, *db.copy_to], databases=[target])
    summary = [
        {
            "repository": g.repository,
            "database": g.database,
            "policy": g.policy,
            "kept": sum(1 for d in g.decisions if d.keep),
            "removed": [d.snapshot.id for d in g.decisions if not d.keep],
        }
        for g in groups
    ]
    return JobResult(ok=True, details={"groups": summary})


def _copy(repos: Repositories, scheduling: Scheduling, target: str) -> JobResult:
    db = repos.inventory.database(target)
    assert db.repository is not None
    if not db.copy_to:
        raise UsageError(f"{target} has no copy_to repositories")
    results = []
    wal: list[ArchiveCopy] = []
    for destination in db.copy_to:
        results += copy_snapshots(
            repos, source=db.repository, destination=destination, databases=[target]
        )
        wal += copy_wal_archives(
            repos, source=db.repository, destination=destination, databases=[target]
        )
    return JobResult(
        ok=True,
        bytes=sum(r.added_bytes for r in results) + sum(w.added_bytes for w in wal),
        details={
            "copied": sum(1 for r in results if r.copied),
            "wal_files_copied": sum(w.copied_files for w in wal),
            "already_there": sum(1 for r in results if not r.copied),
            "destinations": list(db.copy_to),
        },
    )


def _prune(repos: Repositories, scheduling: Scheduling, target: str) -> JobResult:
    stats = prune_repository(repos, target)
    return JobResult(
        ok=True,
        bytes=max(stats.bytes_deleted - stats.bytes_written, 0),
        details=stats.as_dict(),
    )


RUNNERS: dict[str, Callable[[Repositories, Scheduling, str], JobResult]] = {
    "backup": _backup,
    "verify": _verify,
    "drill": _drill,
    "forget": _forget,
    "copy": _copy,
    "prune": _prune,
}


def run_job(inventory: Inventory, scheduling: Scheduling, kind: str, target: str) -> JobResult:
    """Run one job in this process; failures become a result, never an exception
    (except :class:`Aborted`)."""
    try:
        if kind not in RUNNERS:
            raise UsageError(f"unknown job kind {kind!r} (known: {', '.join(JOB_KINDS)})")
        if kind == "prune":
            inventory.repository(target)
        else:
            inventory.database(target)
        return RUNNERS[kind](Repositories(inventory), scheduling, target)
    except DbfleetError as exc:
        return JobResult(ok=False, error=str(exc), error_type=type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - a bug must still produce a result
        traceback.print_exc(file=sys.stderr)
        return JobResult(
            ok=False, error=f"unexpected {type(exc).__name__}: {exc}", error_type=type(exc).__name__
        )


def _abort(signum: int, frame: FrameType | None) -> None:
    raise Aborted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dbfleet.schedule.worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("kind", choices=JOB_KINDS)
    parser.add_argument("target")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _abort)
    signal.signal(signal.SIGINT, _abort)
    try:
        from dbfleet.schedule.inventory import load

        try:
            inventory, scheduling = load(args.config)
        except DbfleetError as exc:
            result = JobResult(ok=False, error=str(exc), error_type=type(exc).__name__)
        else:
            result = run_job(inventory, scheduling, args.kind, args.target)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # done: report what happened
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except Aborted as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        result = JobResult(
            ok=False, aborted=True, error=f"stopped by {exc} before it finished",
            error_type="Aborted",
        )  # fmt: skip
    sys.stdout.write(json.dumps(result.as_dict(), default=str) + "\n")
    sys.stdout.flush()
    if result.aborted:
        return EXIT_ABORTED
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
