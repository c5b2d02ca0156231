"""In-memory storage for unit tests; same contracts as every backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from dbfleet.errors import NotFoundError
from dbfleet.storage.base import ObjectInfo


class MemoryStorage:
    def __init__(self, name: str = "default") -> None:
        self.url = f"memory://{name}"
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, name: str, data: bytes) -> None:
        with self._lock:
            self.objects[name] = bytes(data)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._lock:
            try:
                data = self.objects[name]
            except KeyError as exc:
                raise NotFoundError(f"{name} not found in {self.url}") from exc
        end = None if length is None else offset + length
        return data[offset:end]

    def stat(self, name: str) -> ObjectInfo:
        with self._lock:
            if name not in self.objects:
                raise NotFoundError(f"{name} not found in {self.url}")
            return ObjectInfo(name, len(self.objects[name]))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            items = [ObjectInfo(n, len(d)) for n, d in self.objects.items() if n.startswith(prefix)]
        yield from items

    def delete(self, name: str) -> None:
        with self._lock:
            self.objects.pop(name, None)

    def close(self) -> None:
        return None
