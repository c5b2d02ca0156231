"""Storage backends behind one byte-level interface, opened by URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from dbfleet.config import RepositoryConfig
from dbfleet.errors import UsageError
from dbfleet.storage.base import ObjectInfo, Storage
from dbfleet.storage.local import LocalStorage
from dbfleet.storage.memory import MemoryStorage

__all__ = ["LocalStorage", "MemoryStorage", "ObjectInfo", "Storage", "open_storage"]

_MEMORY: dict[str, MemoryStorage] = {}


def open_storage(url: str, options: RepositoryConfig | None = None) -> Storage:
    """Open the backend a repository URL names: ``file:///path``, a plain path,
    ``s3://bucket/prefix`` (settings from ``options.s3``) or ``memory://name``
    (process-local, for tests)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path if parsed.scheme else url)
        if not path:
            raise UsageError(f"repository url {url!r} has no path")
        return LocalStorage(Path(path).expanduser().absolute())
    if parsed.scheme == "memory":
        return _MEMORY.setdefault(parsed.netloc, MemoryStorage(parsed.netloc))
    if parsed.scheme == "s3":
        from dbfleet.repo.cache import default_cache_root
        from dbfleet.storage.retry import RetryingStorage
        from dbfleet.storage.s3 import S3Storage

        cache = default_cache_root()
        return RetryingStorage(
            S3Storage.from_url(
                url,
                (options or RepositoryConfig(url=url)).s3,
                abort_journal=cache / "s3-abandoned-uploads" if cache else None,
            )
        )
    raise UsageError(
        f"unsupported repository url {url!r}",
        hint="use file:///path or s3://bucket/prefix",
    )
