"""Index: which pack holds which blob, so a backup never reads packs.

Index files (``index/<id>``) are zstd-compressed, encrypted JSON documents::

    {"version": 1, "packs": [{"id": "<pack id>", "size": N,
        "blobs": [["<blob id hex>", type, offset, length, raw_length], ...]}]}

A backup writes one index file after its packs are stored and before its
snapshot, so every snapshot only references blobs that an index names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dbfleet.repo.pack import PackedBlob

INDEX_VERSION = 1


@dataclass(frozen=True)
class BlobLocation:
    pack_id: str
    type: int
    offset: int
    length: int
    raw_length: int


class Index:
    """In-memory map of blob id to location; also tracks each pack's size."""

    def __init__(self) -> None:
        self._blobs: dict[bytes, BlobLocation] = {}
        self.pack_sizes: dict[str, int] = {}

    def __contains__(self, blob_id: bytes) -> bool:
        return blob_id in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)

    def get(self, blob_id: bytes) -> BlobLocation | None:
        return self._blobs.get(blob_id)

    def add_pack(self, pack_id: str, size: int, blobs: Iterable[PackedBlob]) -> None:
        self.pack_sizes[pack_id] = size
        for b in blobs:
            # First writer wins: a duplicate in a second pack (two concurrent
            # backups storing the same chunk) is harmless and left to prune.
            self._blobs.setdefault(
                b.id, BlobLocation(pack_id, b.type, b.offset, b.length, b.raw_length)
            )

    def items(self) -> Iterator[tuple[bytes, BlobLocation]]:
        return iter(self._blobs.items())


def encode_index(packs: list[tuple[str, int, list[PackedBlob]]]) -> bytes:
    doc = {
        "version": INDEX_VERSION,
        "packs": [
            {
                "id": pack_id,
                "size": size,
                "blobs": [[b.id.hex(), b.type, b.offset, b.length, b.raw_length] for b in blobs],
            }
            for pack_id, size, blobs in packs
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_index(raw: bytes) -> list[tuple[str, int, list[PackedBlob]]]:
    doc = json.loads(raw)
    if doc.get("version") != INDEX_VERSION:
        raise ValueError(f"unsupported index version {doc.get('version')!r}")
    result = []
    for pack in doc["packs"]:
        blobs = [
            PackedBlob(int(t), bytes.fromhex(i), int(o), int(n), int(r))
            for i, t, o, n, r in pack["blobs"]
        ]
        result.append((str(pack["id"]), int(pack["size"]), blobs))
    return result
