"""The byte-level storage interface every backend implements.

Names are ``/``-separated relative paths such as ``data/ab/ab12...`` or
``snapshots/9f3c...``. The repository never asks for anything richer than
these six operations, so a backend (local disk, S3, memory) or a wrapper
(retry, rate limit, read-only) only has to get them right; the conformance
suite in ``tests/conformance/test_storage.py`` checks every contract below.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int
    modified: float | None = field(default=None, compare=False)
    """When the object was last written (Unix time), where ``list`` learns it
    for free (file mtime, S3 ``LastModified``); ``None`` otherwise. Not part
    of equality: it is a fact about the copy, not the content."""


@runtime_checkable
class Storage(Protocol):
    """Contracts (all backends):

    - ``put`` is atomic: readers see the old object, no object, or the whole
      new one; never a prefix. It overwrites an existing object.
    - ``get`` returns ``length`` bytes from ``offset`` (``None``: to the end);
      reading past the end returns what exists. A missing name raises
      :class:`dbfleet.errors.NotFoundError`.
    - ``stat`` returns the object's info or raises ``NotFoundError``.
    - ``list`` yields every object whose name starts with ``prefix``, in no
      particular order, and tolerates objects created or deleted meanwhile.
    - ``delete`` of a missing name is not an error.
    - Any other failure raises :class:`dbfleet.errors.StorageError`.
    """

    url: str

    def put(self, name: str, data: bytes) -> None: ...

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes: ...

    def stat(self, name: str) -> ObjectInfo: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, name: str) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class UnfinishedWrite:
    """A write that never completed and that ``list`` does not show: the
    temporary file of a killed process (local disk) or an incomplete multipart
    upload (S3). It costs space and nothing else; see :mod:`dbfleet.repo.debris`."""

    name: str
    """The object it was meant to become, e.g. ``data/ab/ab12...``."""
    started: float
    """When it was last written to (local: the temporary file's mtime) or
    started (S3: the upload's initiation, by the server's clock), epoch seconds."""
    token: str
    """What the backend needs to remove it (a temporary file's name, an upload id)."""
    abandoned: bool = False
    """Its writer gave up on it (an abort that failed): stale whatever its age."""


@runtime_checkable
class UnfinishedWrites(Protocol):
    """Backends whose writes can leave invisible debris when the writer dies."""

    def unfinished_writes(self, prefix: str = "") -> list[UnfinishedWrite]: ...

    def remove_unfinished(self, write: UnfinishedWrite) -> bool:
        """Remove it; ``False`` when a live writer is still on it (left alone)."""
        ...
