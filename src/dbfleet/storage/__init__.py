"""Storage backends behind one byte-level interface, opened by URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from dbfleet.errors import UsageError
from dbfleet.storage.base import ObjectInfo, Storage
from dbfleet.storage.local import LocalStorage
from dbfleet.storage.memory import MemoryStorage

__all__ = ["LocalStorage", "MemoryStorage", "ObjectInfo", "Storage", "open_storage"]

_MEMORY: dict[str, MemoryStorage] = {}


def open_storage(url: str) -> Storage:
    """Open the backend a repository URL names: ``file:///path``, a plain path,
    or ``memory://name`` (process-local, for tests)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path if parsed.scheme else url)
        if not path:
            raise UsageError(f"repository url {url!r} has no path")
        return LocalStorage(Path(path).expanduser().absolute())
    if parsed.scheme == "memory":
        return _MEMORY.setdefault(parsed.netloc, MemoryStorage(parsed.netloc))
    raise UsageError(
        f"unsupported repository url {url!r}",
        hint="use file:///path (S3 support is planned)",
    )
