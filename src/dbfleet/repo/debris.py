"""Debris of killed writers: unfinished writes that ``list`` never shows.

A process killed mid-write leaves a temporary file (local disk:
``.<name>.<random>.dbfleet-tmp``) or an incomplete multipart upload (S3; also
when the network died and the abort could not reach the server). Neither is
ever read: they only cost space. ``repo check`` reports them; ``prune`` and
``repo unlock`` remove the stale ones.

Stale means given up by its writer (an S3 abort that failed, see
:mod:`dbfleet.storage.s3_journal`), or untouched for :data:`DEBRIS_GRACE` (one hour): twice the time
after which an unrefreshed lock is stale, and far longer than one object's
write takes (a 16 MiB pack at 40 kbit/s). The age rule is needed because
not every writer holds a repository lock (``wal-push`` does not) and S3
cannot say whether an upload's writer lives; on local disk the writer also
holds an ``flock`` on its temporary file, so a live writer's file is never
removed whatever its age. On S3 the age is measured against the upload's
initiation time by the server's clock: a client clock more than an hour off
could abort a live upload, which fails that write (its backup fails and
records nothing); it cannot damage stored data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from dbfleet.errors import StorageError
from dbfleet.storage.base import Storage, UnfinishedWrite, UnfinishedWrites

DEBRIS_GRACE = 3600.0
"""Seconds after which an unfinished write counts as left by a dead process."""


@dataclass
class DebrisScan:
    stale: list[UnfinishedWrite] = field(default_factory=list)
    recent: list[UnfinishedWrite] = field(default_factory=list)
    """Younger than the grace period: maybe a write in progress; left alone."""
    error: str | None = None
    """Why the backend could not be asked (e.g. no permission to list uploads)."""


@dataclass
class DebrisRemoval:
    removed: list[UnfinishedWrite] = field(default_factory=list)
    in_use: list[UnfinishedWrite] = field(default_factory=list)
    """Stale by age but still held by a live writer (local disk): kept."""
    failures: list[str] = field(default_factory=list)


def scan_unfinished(
    storage: Storage, *, grace: float | None = None, now: float | None = None
) -> DebrisScan:
    """Sort the unfinished writes into stale (older than ``grace``, default
    :data:`DEBRIS_GRACE`) and recent ones."""
    grace = DEBRIS_GRACE if grace is None else grace
    scan = DebrisScan()
    if not isinstance(storage, UnfinishedWrites):
        return scan  # a backend whose writes leave no debris (memory)
    now = time.time() if now is None else now
    try:
        writes = storage.unfinished_writes()
    except StorageError as exc:
        scan.error = str(exc)
        return scan
    for write in sorted(writes, key=lambda w: (w.started, w.name)):
        stale = write.abandoned or now - write.started > grace
        (scan.stale if stale else scan.recent).append(write)
    return scan


def remove_stale_unfinished(storage: Storage, *, grace: float | None = None) -> DebrisRemoval:
    """Remove the unfinished writes older than ``grace``. Never raises for a
    single write that cannot be removed: it is listed in ``failures``."""
    result = DebrisRemoval()
    scan = scan_unfinished(storage, grace=grace)
    if scan.error:
        result.failures.append(f"cannot list unfinished writes: {scan.error}")
    if not isinstance(storage, UnfinishedWrites):
        return result
    for write in scan.stale:
        try:
            if storage.remove_unfinished(write):
                result.removed.append(write)
            else:
                result.in_use.append(write)
        except StorageError as exc:
            result.failures.append(f"cannot remove the unfinished write of {write.name}: {exc}")
    return result


def describe_unfinished(writes: list[UnfinishedWrite], now: float | None = None) -> str:
    """``data/ab/ab12cd34.. (2h ago), ...`` for the first few."""
    now = time.time() if now is None else now
    shown = ", ".join(f"{w.name} ({_age(now - w.started)} ago)" for w in writes[:5])
    return shown + (f" and {len(writes) - 5} more" if len(writes) > 5 else "")


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
