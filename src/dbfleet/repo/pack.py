"""Pack files: many encrypted blobs in one storage object.

Layout::

    blob_0 || blob_1 || ... || encrypted header || header length (uint32 LE)

The header lists, per blob in order: type (1 byte), id (32 bytes), stored
length (uint32 LE) and plaintext length (uint32 LE); offsets follow from the
order. It is encrypted with associated data ``b"pack-header"``. A pack's name
is the unkeyed BLAKE3 of its whole content, so ``repo check --read-data`` can
tell a damaged pack from a healthy one before decrypting anything.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import blake3

from dbfleet.errors import IntegrityError
from dbfleet.repo.crypto import ID_SIZE, MasterKey
from dbfleet.storage.base import Storage

BLOB_DATA = 0
BLOB_TREE = 1
_ENTRY = struct.Struct("<B32sII")
_LEN = struct.Struct("<I")
PACK_HEADER_AAD = b"pack-header"
TARGET_PACK_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class PackedBlob:
    type: int
    id: bytes
    offset: int
    length: int
    raw_length: int


def pack_name(pack_id: str) -> str:
    return f"data/{pack_id[:2]}/{pack_id}"


class PackBuilder:
    """Collects encrypted blobs in memory up to about ``TARGET_PACK_SIZE``."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.blobs: list[PackedBlob] = []
        self.size = 0

    def add(self, blob_type: int, blob_id: bytes, stored: bytes, raw_length: int) -> None:
        self.blobs.append(PackedBlob(blob_type, blob_id, self.size, len(stored), raw_length))
        self._parts.append(stored)
        self.size += len(stored)

    def __len__(self) -> int:
        return len(self.blobs)

    def finish(self, key: MasterKey) -> tuple[str, bytes]:
        """Return ``(pack_id, content)``; the builder must not be reused."""
        header = b"".join(_ENTRY.pack(b.type, b.id, b.length, b.raw_length) for b in self.blobs)
        sealed = key.encrypt(header, PACK_HEADER_AAD)
        self._parts.append(sealed)
        self._parts.append(_LEN.pack(len(sealed)))
        content = b"".join(self._parts)
        self._parts = []
        return blake3.blake3(content).hexdigest(), content


def parse_header(key: MasterKey, tail: bytes, pack_size: int, what: str) -> list[PackedBlob]:
    """Parse a pack's header from ``tail``, which must end at the end of the pack
    and contain the whole header (read at least ``header_read_size()`` bytes)."""
    if len(tail) < _LEN.size:
        raise IntegrityError(f"{what}: too short to be a pack")
    (sealed_len,) = _LEN.unpack(tail[-_LEN.size :])
    if sealed_len + _LEN.size > min(len(tail), pack_size):
        raise IntegrityError(f"{what}: header length {sealed_len} is out of range")
    sealed = tail[-_LEN.size - sealed_len : -_LEN.size]
    header = key.decrypt(sealed, PACK_HEADER_AAD, f"{what} header")
    if len(header) % _ENTRY.size:
        raise IntegrityError(f"{what}: header has a partial entry")
    blobs = []
    offset = 0
    for i in range(0, len(header), _ENTRY.size):
        blob_type, blob_id, length, raw_length = _ENTRY.unpack_from(header, i)
        blobs.append(PackedBlob(blob_type, blob_id, offset, length, raw_length))
        offset += length
    if offset + sealed_len + _LEN.size != pack_size:
        raise IntegrityError(f"{what}: blobs and header do not add up to the pack size")
    return blobs


def read_header(storage: Storage, key: MasterKey, pack_id: str, pack_size: int) -> list[PackedBlob]:
    """Read and parse a pack's header with one ranged read (two if it is large)."""
    what = f"pack {pack_id[:16]}"
    want = header_read_size(pack_size)
    tail = storage.get(pack_name(pack_id), pack_size - want, want)
    if len(tail) >= _LEN.size:
        (sealed_len,) = _LEN.unpack(tail[-_LEN.size :])
        need = sealed_len + _LEN.size
        if want < need <= pack_size:
            tail = storage.get(pack_name(pack_id), pack_size - need, need)
    return parse_header(key, tail, pack_size, what)


def header_read_size(pack_size: int) -> int:
    """Bytes to read from the end of a pack to get its header in one request in
    the common case (about 45 bytes per blob)."""
    return min(pack_size, 64 * 1024)


assert _ENTRY.size == 1 + ID_SIZE + 8
