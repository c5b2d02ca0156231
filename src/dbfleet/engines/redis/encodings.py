"""Redis's compact value encodings inside RDB strings: LZF-compressed strings,
listpacks (Redis 7), ziplists (Redis < 7) and intsets. Integers come back as
``int``; callers render them as the decimal strings Redis itself returns."""

from __future__ import annotations

__all__ = [
    "Item",
    "RdbFormatError",
    "as_bytes",
    "as_int",
    "intset_items",
    "listpack_items",
    "lzf_decompress",
    "ziplist_items",
]


class RdbFormatError(Exception):
    """The bytes are not a (supported) RDB serialization."""


def lzf_decompress(data: bytes, length: int) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        ctrl = data[i]
        i += 1
        if ctrl < 32:  # literal run of ctrl + 1 bytes
            out += data[i : i + ctrl + 1]
            i += ctrl + 1
            continue
        size = ctrl >> 5
        if size == 7:
            size += data[i]
            i += 1
        ref = len(out) - ((ctrl & 0x1F) << 8) - data[i] - 1
        i += 1
        size += 2
        if ref < 0:
            raise RdbFormatError("corrupt LZF data")
        if ref + size <= len(out):
            out += out[ref : ref + size]
        else:  # overlapping back reference: repeats the last bytes
            pattern = out[ref:]
            out += (pattern * (size // len(pattern) + 1))[:size]
    if len(out) != length:
        raise RdbFormatError("LZF data decompressed to the wrong length")
    return bytes(out)


# -- compact encodings (listpack, ziplist, intset) ------------------------------

Item = bytes | int


def listpack_items(blob: bytes) -> list[Item]:
    items: list[Item] = []
    i, end = 6, len(blob)
    while i < end:
        b = blob[i]
        if b == 0xFF:
            return items
        if b < 0x80:  # 7-bit unsigned integer
            items.append(b)
            size = 1
        elif b < 0xC0:  # 6-bit length string
            n = b & 0x3F
            items.append(blob[i + 1 : i + 1 + n])
            size = 1 + n
        elif b < 0xE0:  # 13-bit signed integer
            v = ((b & 0x1F) << 8) | blob[i + 1]
            items.append(v - (1 << 13) if v >= 1 << 12 else v)
            size = 2
        elif b < 0xF0:  # 12-bit length string
            n = ((b & 0x0F) << 8) | blob[i + 1]
            items.append(blob[i + 2 : i + 2 + n])
            size = 2 + n
        elif b == 0xF0:  # 32-bit length string
            n = int.from_bytes(blob[i + 1 : i + 5], "little")
            items.append(blob[i + 5 : i + 5 + n])
            size = 5 + n
        elif 0xF1 <= b <= 0xF4:  # 16, 24, 32, 64-bit signed integers
            width = (2, 3, 4, 8)[b - 0xF1]
            items.append(int.from_bytes(blob[i + 1 : i + 1 + width], "little", signed=True))
            size = 1 + width
        else:
            raise RdbFormatError(f"bad listpack entry 0x{b:02x}")
        i += size + (1 if size <= 127 else 2 if size < 16383 else 3 if size < 2097151 else
                     4 if size < 268435455 else 5)  # fmt: skip
    raise RdbFormatError("listpack without end marker")


def ziplist_items(blob: bytes) -> list[Item]:
    items: list[Item] = []
    i, end = 10, len(blob)
    while i < end:
        if blob[i] == 0xFF:
            return items
        i += 5 if blob[i] == 0xFE else 1  # previous entry length
        b = blob[i]
        kind = b >> 6
        if kind == 0:
            n, i = b & 0x3F, i + 1
        elif kind == 1:
            n, i = ((b & 0x3F) << 8) | blob[i + 1], i + 2
        elif kind == 2:
            n, i = int.from_bytes(blob[i + 1 : i + 5], "big"), i + 5
        else:
            width = {0xC0: 2, 0xD0: 4, 0xE0: 8, 0xF0: 3, 0xFE: 1}.get(b)
            if width is not None:
                items.append(int.from_bytes(blob[i + 1 : i + 1 + width], "little", signed=True))
                i += 1 + width
            elif 0xF1 <= b <= 0xFD:
                items.append((b & 0x0F) - 1)
                i += 1
            else:
                raise RdbFormatError(f"bad ziplist entry 0x{b:02x}")
            continue
        items.append(blob[i : i + n])
        i += n
    raise RdbFormatError("ziplist without end marker")


def intset_items(blob: bytes) -> list[Item]:
    width = int.from_bytes(blob[0:4], "little")
    count = int.from_bytes(blob[4:8], "little")
    if width not in (2, 4, 8) or len(blob) != 8 + width * count:
        raise RdbFormatError("bad intset")
    return [
        int.from_bytes(blob[8 + k * width : 8 + (k + 1) * width], "little", signed=True)
        for k in range(count)
    ]


def as_bytes(item: Item) -> bytes:
    return item if isinstance(item, bytes) else str(item).encode()


def as_int(item: Item) -> int:
    return item if isinstance(item, int) else int(item)
