"""Multipart uploads whose abort failed, remembered on this host until an
abort gets through.

A pack upload that fails is aborted; when the server itself is gone (killed
mid-backup, the network down) the abort fails too, and the uploaded parts
stay. AWS S3 lists such uploads, but MinIO stops listing them once it
restarts (it still answers for the exact object name, and drops them only
after its ``stale_uploads_expiry``, 24 hours by default). The writer knows
the object name and upload id, so it writes them here; ``repo check``,
``repo unlock`` and ``prune`` on this host then find the upload and abort it
as soon as the server answers. Best effort: a journal that cannot be written
changes nothing else (and a process killed outright writes nothing; for
those the bucket listing and its age rule remain).

One small JSON file per upload under ``<cache>/s3-abandoned-uploads/<digest
of endpoint and bucket>/``; no secrets in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AbandonedUpload:
    key: str
    """The full object key (bucket prefix included)."""
    upload_id: str
    recorded: float


class AbortJournal:
    def __init__(self, root: Path, endpoint: str | None, bucket: str) -> None:
        where = hashlib.sha256(f"{endpoint or 'aws'}|{bucket}".encode()).hexdigest()[:16]
        self.directory = root / where

    def _path(self, upload_id: str) -> Path:
        return self.directory / f"{hashlib.sha256(upload_id.encode()).hexdigest()[:32]}.json"

    def add(self, key: str, upload_id: str) -> None:
        entry = {"key": key, "upload_id": upload_id, "recorded": time.time()}
        with contextlib.suppress(OSError):
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(entry, fh)
                os.replace(tmp, self._path(upload_id))
            except OSError:
                os.unlink(tmp)
                raise

    def entries(self) -> list[AbandonedUpload]:
        found = []
        with contextlib.suppress(OSError):
            for path in sorted(self.directory.glob("*.json")):
                try:
                    doc = json.loads(path.read_text())
                    found.append(
                        AbandonedUpload(
                            str(doc["key"]), str(doc["upload_id"]), float(doc["recorded"])
                        )
                    )
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # removed meanwhile or damaged: nothing to act on
        return found

    def remove(self, upload_id: str) -> None:
        with contextlib.suppress(OSError):
            self._path(upload_id).unlink(missing_ok=True)
