"""Local filesystem storage: write-new-then-rename, fsync'd, so a crash leaves
either the old object or the complete new one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from dbfleet.errors import NotFoundError, StorageError
from dbfleet.storage.base import ObjectInfo

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
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {path}: {exc.strerror}") from exc

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

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk from the deepest directory the prefix names, then filter.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        if not start.is_dir():
            return
        for dirpath, _dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, self.root)
            for filename in filenames:
                if filename.endswith(_TMP_SUFFIX):
                    continue
                name = filename if rel_dir == "." else f"{rel_dir}/{filename}"
                if not name.startswith(prefix):
                    continue
                try:
                    size = os.stat(os.path.join(dirpath, filename)).st_size
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
