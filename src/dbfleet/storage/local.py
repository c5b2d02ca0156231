"""Local filesystem storage: write-new-then-rename, fsync'd, so a crash leaves
either the old object or the complete new one.

A process killed between creating the temporary file and renaming it leaves
``.<name>.<random>.dbfleet-tmp`` behind, invisible to ``list``.
:meth:`LocalStorage.unfinished_writes` finds those; the writer holds an
``flock`` on its temporary file while it writes, so
:meth:`LocalStorage.remove_unfinished` never removes one that a live writer
(any process on any host that shares the lock manager) is still writing.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from dbfleet.errors import NotFoundError, StorageError
from dbfleet.storage.base import ObjectInfo, UnfinishedWrite

_TMP_SUFFIX = ".dbfleet-tmp"


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/"):
            raise StorageError(f"invalid object name {name!r}")
        return self.root / name

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{_TMP_SUFFIX}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                # Marks the file as being written until it is renamed (see
                # remove_unfinished). Best effort: on a filesystem without
                # locks (some NFS setups) the age rule of repo.debris remains.
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
                os.replace(tmp, path)  # before close: the lock covers the rename
            finally:
                os.close(fd)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):  # the cause may forbid the cleanup too
                tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
        except BaseException:  # Ctrl-C or a signal turned exception: no debris either
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(name)
        try:
            with open(path, "rb") as fh:
                if offset:
                    fh.seek(offset)
                return fh.read() if length is None else fh.read(length)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFoundError(f"{name} not found in {self.url}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from exc

    def stat(self, name: str) -> ObjectInfo:
        try:
            return ObjectInfo(name, self._path(name).stat().st_size)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFoundError(f"{name} not found in {self.url}") from exc
        except OSError as exc:
            raise StorageError(f"cannot stat {name}: {exc.strerror}") from exc

    def _walk(self, prefix: str, *, temporary: bool) -> Iterator[tuple[str, str]]:
        """``(name below the root, path)`` of the objects (or of the temporary
        files) below the deepest directory that ``prefix`` names."""
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        if not start.is_dir():
            return
        for dirpath, _dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, self.root)
            for filename in filenames:
                if filename.endswith(_TMP_SUFFIX) == temporary:
                    name = filename if rel_dir == "." else f"{rel_dir}/{filename}"
                    yield name, os.path.join(dirpath, filename)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for name, path in self._walk(prefix, temporary=False):
            if not name.startswith(prefix):
                continue
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                continue
            yield ObjectInfo(name, size)

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {name}: {exc.strerror}") from exc

    def close(self) -> None:
        return None

    # -- debris of killed writers ------------------------------------------

    def unfinished_writes(self, prefix: str = "") -> builtins.list[UnfinishedWrite]:
        """Temporary files below ``prefix`` (any age; the caller judges)."""
        found: builtins.list[UnfinishedWrite] = []
        for token, path in self._walk(prefix, temporary=True):
            # "<dir>/.<leaf>.<12 hex>.dbfleet-tmp" -> "<dir>/<leaf>"
            folder, _, filename = token.rpartition("/")
            leaf = filename[1:].removesuffix(_TMP_SUFFIX).rsplit(".", 1)[0]
            name = f"{folder}/{leaf}" if folder else leaf
            if not name.startswith(prefix):
                continue
            try:
                started = os.stat(path).st_mtime
            except FileNotFoundError:
                continue  # renamed into place or removed meanwhile
            found.append(UnfinishedWrite(name, started, token))
        return found

    def remove_unfinished(self, write: UnfinishedWrite) -> bool:
        path = self._path(write.token)
        if not path.name.endswith(_TMP_SUFFIX):
            raise StorageError(f"{write.token!r} is not a temporary file of this storage")
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return True  # finished (renamed) or removed meanwhile
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a live writer holds it
            except OSError:
                pass  # no locks on this filesystem: the caller's age rule decides
            path.unlink(missing_ok=True)
            return True
        except OSError as exc:
            raise StorageError(f"cannot remove {path}: {exc.strerror}") from exc
        finally:
            os.close(fd)
