"""Snapshot manifests: small encrypted JSON documents under ``snapshots/``.

A snapshot names the database it came from and the streams the engine wrote
(a PostgreSQL backup has a ``dump`` stream and, when asked, a ``globals``
stream). A stream's chunk list lives in *tree* blobs inside packs, so a
manifest stays small however large the database is.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from dbfleet.repo.crypto import ID_SIZE

SNAPSHOT_VERSION = 1
TREE_ENTRY = struct.Struct("<32sI")
TREE_MAX_ENTRIES = 65536  # 2.3 MiB per tree blob


class StreamRef(BaseModel):
    name: str
    size: int
    chunks: int
    trees: list[str]
    media_type: str = "application/octet-stream"


class Snapshot(BaseModel):
    version: int = SNAPSHOT_VERSION
    id: str = Field(default="", exclude=True)
    database: str
    engine: str
    hostname: str
    started: datetime
    finished: datetime
    server_version: str | None = None
    tool: str | None = None
    tool_version: str | None = None
    size: int = 0
    stored_size: int = 0
    added_bytes: int = 0
    fingerprint: dict[str, Any] | None = None
    consistency_point: dict[str, Any] | None = None
    streams: list[StreamRef] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    origin: dict[str, str] | None = None
    """For a copy: ``{"repository": <source repository id>, "snapshot": <id>}``."""

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def stream(self, name: str) -> StreamRef | None:
        return next((s for s in self.streams if s.name == name), None)

    def summary(self) -> dict[str, Any]:
        """The documented ``snapshots --json`` object."""
        return {
            "id": self.id,
            "short_id": self.short_id,
            "database": self.database,
            "engine": self.engine,
            "time": self.finished.isoformat(),
            "started": self.started.isoformat(),
            "duration_seconds": round((self.finished - self.started).total_seconds(), 3),
            "size": self.size,
            "stored_size": self.stored_size,
            "added_bytes": self.added_bytes,
            "hostname": self.hostname,
            "server_version": self.server_version,
            "tool": self.tool,
            "tool_version": self.tool_version,
            "consistency_point": self.consistency_point,
            "streams": [s.name for s in self.streams],
            "tags": self.tags,
            "origin": self.origin,
        }


def encode_tree(entries: list[tuple[bytes, int]]) -> bytes:
    return b"".join(TREE_ENTRY.pack(i, n) for i, n in entries)


def decode_tree(raw: bytes) -> list[tuple[bytes, int]]:
    if len(raw) % TREE_ENTRY.size:
        raise ValueError("tree blob has a partial entry")
    return [TREE_ENTRY.unpack_from(raw, i) for i in range(0, len(raw), TREE_ENTRY.size)]


assert TREE_ENTRY.size == ID_SIZE + 4
