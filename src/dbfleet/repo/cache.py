"""A local cache of a remote repository's snapshot manifests and index files.

Listing snapshots or loading the index reads every object under
``snapshots/`` or ``index/``; on S3 that is one request per object, every
command, every scheduler tick. Both kinds are named by the BLAKE3 hash of
their sealed bytes and never change, so a cached copy is valid exactly when
it still hashes to its name: the cache needs no invalidation protocol, and a
damaged or planted file is simply fetched again. (What it holds is still
sealed: the key is needed to read it, as in the repository itself.)

Only names that a fresh listing of the repository returns are looked up, so
an object deleted by another host is never served from here; files of
objects that are gone are removed after each listing. Like restic's cache,
it lives under ``$XDG_CACHE_HOME/dbfleet`` (``~/.cache/dbfleet``), one
directory per repository id; ``DBFLEET_CACHE_DIR`` moves it and
``DBFLEET_NO_CACHE=1`` turns it off.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import blake3

CACHED_PREFIXES = ("snapshots/", "index/")
_CONTENT_NAME = re.compile(r"^[0-9a-f]{64}$")


def default_cache_root() -> Path | None:
    """Where caches live, or ``None`` when caching is turned off."""
    if os.environ.get("DBFLEET_NO_CACHE", "") not in ("", "0"):
        return None
    explicit = os.environ.get("DBFLEET_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dbfleet"


class MetadataCache:
    """Sealed copies of content-named objects under one directory.

    ``get`` returns bytes only when they hash to the name; ``put`` stores
    only such bytes (atomically); ``forget_others`` drops what a listing no
    longer shows. Every failure of the local disk is ignored: the cache can
    only save requests, never fail a command."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, name: str) -> Path | None:
        prefix, _, leaf = name.rpartition("/")
        if f"{prefix}/" not in CACHED_PREFIXES or not _CONTENT_NAME.match(leaf):
            return None
        return self.directory / prefix / leaf

    def get(self, name: str) -> bytes | None:
        path = self._path(name)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if blake3.blake3(data).hexdigest() != path.name:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return data

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        if path is None or blake3.blake3(data).hexdigest() != path.name:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)

    def forget_others(self, prefix: str, listed: Iterable[str]) -> None:
        """Remove cached objects under ``prefix`` that are not in ``listed``."""
        keep = {name.rpartition("/")[2] for name in listed}
        folder = self.directory / prefix.rstrip("/")
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if entry.name not in keep:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
