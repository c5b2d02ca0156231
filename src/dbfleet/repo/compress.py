"""Per-blob compression with a type byte, so stored data describes itself.

Byte 0 of a blob's plaintext envelope: ``0`` raw, ``1`` zstd. Incompressible
chunks (already compressed dumps, random bytes) are stored raw.
"""

from __future__ import annotations

import threading

import zstandard

from dbfleet.errors import IntegrityError

RAW = 0
ZSTD = 1
DEFAULT_LEVEL = 3

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # ZstdCompressor objects are not thread-safe: one per worker thread.
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level)
    return cache[level]


def _decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


def compress(data: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    packed = _compressor(level).compress(data)
    if len(packed) < len(data):
        return bytes([ZSTD]) + packed
    return bytes([RAW]) + data


def decompress(envelope: bytes, expected_size: int | None = None) -> bytes:
    if not envelope:
        raise IntegrityError("empty blob envelope")
    kind, body = envelope[0], envelope[1:]
    if kind == RAW:
        return body
    if kind == ZSTD:
        try:
            if expected_size is not None:
                return _decompressor().decompress(body, max_output_size=expected_size)
            return _decompressor().decompress(body)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"blob does not decompress: {exc}") from exc
    raise IntegrityError(f"unknown compression type {kind}")
