"""ClickHouse 18.16's type system for the generated-data suite: each type
knows its SQL name, a Hypothesis strategy for its values (extremes likely),
the SQL literal of a value, and how to step over one value in RowBinary, the
server's own binary row format, which the suite compares source and
restored tables in (independent of dbfleet's fingerprint, and exact: no
text conversion, which for Decimal128 is broken on 18.16)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from hypothesis import strategies as st

EPOCH = date(1970, 1, 1)
LAST_DATE = date(2105, 12, 31)  # 18.16's date tables end there
ZONES = ("UTC", "Asia/Kolkata", "America/St_Johns", "Pacific/Chatham", "Europe/Berlin")


def _bytes_literal(value: bytes) -> str:
    out = []
    for byte in value:
        ch = chr(byte)
        out.append(ch if 0x20 <= byte < 0x7F and ch not in "'\\" else f"\\x{byte:02x}")
    return "'" + "".join(out) + "'"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


class CHType:
    sql: str
    width: int = 0
    """Bytes of one value in RowBinary when fixed."""

    def values(self) -> st.SearchStrategy[Any]:
        raise NotImplementedError

    def literal(self, value: Any) -> str:
        return str(value)

    def skip(self, data: bytes, pos: int) -> int:
        """The position after one RowBinary value starting at ``pos``."""
        return pos + self.width

    def nullable_ok(self) -> bool:
        return True


@dataclass
class Int(CHType):
    bits: int
    signed: bool

    def __post_init__(self) -> None:
        self.sql = f"{'' if self.signed else 'U'}Int{self.bits}"
        self.width = self.bits // 8

    def values(self) -> st.SearchStrategy[int]:
        lo = -(1 << (self.bits - 1)) if self.signed else 0
        hi = (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1
        return st.sampled_from([lo, hi, 0, -1 if self.signed else 1]) | st.integers(lo, hi)


@dataclass
class Float(CHType):
    bits: int

    def __post_init__(self) -> None:
        self.sql = f"Float{self.bits}"
        self.width = self.bits // 8

    def values(self) -> st.SearchStrategy[float]:
        big = 3.4028234663852886e38 if self.bits == 32 else 1.7976931348623157e308
        tiny = 1e-45 if self.bits == 32 else 5e-324
        special = [math.nan, math.inf, -math.inf, -0.0, 0.0, big, -big, tiny]
        return st.sampled_from(special) | st.floats(width=self.bits)

    def literal(self, value: float) -> str:
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)


@dataclass
class Decimal(CHType):
    bits: int
    scale: int

    def __post_init__(self) -> None:
        self.precision = {32: 9, 64: 18, 128: 38}[self.bits]
        self.sql = f"Decimal{self.bits}({self.scale})"
        self.width = self.bits // 8

    def values(self) -> st.SearchStrategy[int]:
        top = 10**self.precision - 1
        return st.sampled_from([top, -top, 0, 1, -1]) | st.integers(-top, top)

    def literal(self, scaled: int) -> str:
        digits = str(abs(scaled)).rjust(self.scale + 1, "0")
        whole, frac = digits[: len(digits) - self.scale], digits[len(digits) - self.scale :]
        return ("-" if scaled < 0 else "") + whole + ("." + frac if self.scale else "")


class String(CHType):
    sql = "String"

    def values(self) -> st.SearchStrategy[bytes]:
        texts = st.text(max_size=12).map(lambda s: s.encode())
        odd = st.sampled_from([b"", b"\x00", b"'", b"\\", b"\xff\xfe", "☃\n\t'\"".encode()])
        huge = st.just(b"x" * 70_000 + b"\x00end")
        return odd | st.binary(max_size=16) | texts | huge

    def literal(self, value: bytes) -> str:
        return _bytes_literal(value)

    def skip(self, data: bytes, pos: int) -> int:
        size, pos = _varint(data, pos)
        return pos + size


@dataclass
class FixedString(CHType):
    size: int

    def __post_init__(self) -> None:
        self.sql = f"FixedString({self.size})"
        self.width = self.size

    def values(self) -> st.SearchStrategy[bytes]:
        return st.binary(max_size=self.size) | st.just(b"\xff" * self.size)

    def literal(self, value: bytes) -> str:
        return _bytes_literal(value)


class Date(CHType):
    sql = "Date"
    width = 2

    def values(self) -> st.SearchStrategy[date]:
        return st.sampled_from([EPOCH, LAST_DATE, date(2000, 2, 29)]) | st.dates(EPOCH, LAST_DATE)

    def literal(self, value: date) -> str:
        return f"'{value.isoformat()}'"


@dataclass
class DateTime(CHType):
    zone: str | None

    def __post_init__(self) -> None:
        self.sql = f"DateTime('{self.zone}')" if self.zone else "DateTime"
        self.width = 4

    def values(self) -> st.SearchStrategy[int]:
        # Unix seconds: a number literal, so no zone's clock text is ambiguous
        return st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1]) | st.integers(0, 2**32 - 1)


@dataclass
class Enum(CHType):
    bits: int
    members: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        body = ", ".join(f"{_bytes_literal(n.encode())} = {v}" for n, v in self.members)
        self.sql = f"Enum{self.bits}({body})"
        self.width = self.bits // 8

    def values(self) -> st.SearchStrategy[str]:
        return st.sampled_from([n for n, _ in self.members])

    def literal(self, value: str) -> str:
        return _bytes_literal(value.encode())


class UUID(CHType):
    sql = "UUID"
    width = 16

    def values(self) -> st.SearchStrategy[uuid.UUID]:
        edge = [uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1)]
        return st.sampled_from(edge) | st.uuids()

    def literal(self, value: uuid.UUID) -> str:
        return f"'{value}'"


@dataclass
class Nullable(CHType):
    inner: CHType

    def __post_init__(self) -> None:
        self.sql = f"Nullable({self.inner.sql})"

    def values(self) -> st.SearchStrategy[Any]:
        return st.none() | self.inner.values()

    def literal(self, value: Any) -> str:
        return "NULL" if value is None else self.inner.literal(value)

    def skip(self, data: bytes, pos: int) -> int:
        return pos + 1 if data[pos] else self.inner.skip(data, pos + 1)

    def nullable_ok(self) -> bool:
        return False


@dataclass
class LowCardinality(CHType):
    inner: CHType  # String or Nullable(String)

    def __post_init__(self) -> None:
        self.sql = f"LowCardinality({self.inner.sql})"

    def values(self) -> st.SearchStrategy[Any]:
        return self.inner.values()

    def literal(self, value: Any) -> str:
        return self.inner.literal(value)

    def skip(self, data: bytes, pos: int) -> int:
        return self.inner.skip(data, pos)

    def nullable_ok(self) -> bool:
        return False


@dataclass
class Array(CHType):
    inner: CHType

    def __post_init__(self) -> None:
        self.sql = f"Array({self.inner.sql})"

    def values(self) -> st.SearchStrategy[list[Any]]:
        return st.lists(self.inner.values(), max_size=4)

    def literal(self, value: list[Any]) -> str:
        return "[" + ", ".join(self.inner.literal(v) for v in value) + "]"

    def skip(self, data: bytes, pos: int) -> int:
        count, pos = _varint(data, pos)
        for _ in range(count):
            pos = self.inner.skip(data, pos)
        return pos

    def nullable_ok(self) -> bool:
        return False


@dataclass
class Tuple(CHType):
    elements: tuple[CHType, ...]

    def __post_init__(self) -> None:
        self.sql = f"Tuple({', '.join(e.sql for e in self.elements)})"

    def values(self) -> st.SearchStrategy[tuple[Any, ...]]:
        return st.tuples(*(e.values() for e in self.elements))

    def literal(self, value: tuple[Any, ...]) -> str:
        pairs = zip(self.elements, value, strict=True)
        return "(" + ", ".join(e.literal(v) for e, v in pairs) + ")"

    def skip(self, data: bytes, pos: int) -> int:
        for element in self.elements:
            pos = element.skip(data, pos)
        return pos

    def nullable_ok(self) -> bool:
        return False


def enums(bits: int) -> st.SearchStrategy[Enum]:
    lo, hi = (-128, 127) if bits == 8 else (-32768, 32767)
    names = st.text(min_size=1, max_size=6).filter(lambda n: "\x00" not in n)
    members = st.lists(st.tuples(names, st.integers(lo, hi)), min_size=1, max_size=4,
                       unique_by=(lambda m: m[0], lambda m: m[1]))  # fmt: skip
    pinned = st.just([("a'b", lo), ("c\\d", hi)])
    return (pinned | members).map(lambda m: Enum(bits, tuple(m)))


def scalars() -> st.SearchStrategy[CHType]:
    return st.one_of(
        st.builds(Int, st.sampled_from([8, 16, 32, 64]), st.booleans()),
        st.builds(Float, st.sampled_from([32, 64])),
        st.builds(Decimal, st.sampled_from([32, 64, 128]), st.sampled_from([0, 2, 9])),
        st.just(String()),
        st.builds(FixedString, st.integers(1, 5)),
        st.just(Date()),
        st.builds(DateTime, st.none() | st.sampled_from(ZONES)),
        st.sampled_from([8, 16]).flatmap(enums),
        st.just(UUID()),
    )


def column_types() -> st.SearchStrategy[CHType]:
    nullable = scalars().map(Nullable)
    low = st.sampled_from([LowCardinality(String()), LowCardinality(Nullable(String()))])
    leaves = scalars() | nullable | low

    def extend(inner: st.SearchStrategy[CHType]) -> st.SearchStrategy[CHType]:
        plain = inner.filter(lambda t: not isinstance(t, LowCardinality))
        tuples = st.lists(plain, min_size=2, max_size=3).map(lambda e: Tuple(tuple(e)))
        # 18.16 has no Array(Tuple) column: it makes it Nested (x.1, x.2 arrays)
        return plain.filter(lambda t: not isinstance(t, Tuple)).map(Array) | tuples

    return st.recursive(leaves, extend, max_leaves=4)


# Every type once, extremes in the values: the pinned case of the suite.
EVERY_TYPE: list[CHType] = [
    *(Int(b, s) for b in (8, 16, 32, 64) for s in (True, False)),
    Float(32), Float(64), Decimal(32, 9), Decimal(64, 18), Decimal(128, 12), Decimal(128, 0),
    String(), FixedString(3), Date(), DateTime(None), DateTime("Asia/Kolkata"),
    Enum(8, (("a'b", -128), ("c\\d", 127))), Enum(16, (("☃", -32768), ("", 32767))), UUID(),
    Nullable(Decimal(128, 12)), Nullable(String()), Nullable(Float(64)), Nullable(UUID()),
    LowCardinality(String()), LowCardinality(Nullable(String())),
    Array(Array(Nullable(Decimal(64, 2)))), Tuple((String(), Array(Nullable(Int(32, True))))),
    Tuple((Decimal(128, 12), Array(UUID()), DateTime("Pacific/Chatham"))),
    Array(Enum(8, (("x", 1), ("y", 2)))), Array(FixedString(2)), Array(Float(32)),
]  # fmt: skip


def extremes(column: CHType) -> list[Any]:
    """Two or three values of ``column`` at its limits (for the pinned case)."""
    match column:
        case Int(bits=bits, signed=True):
            return [-(1 << (bits - 1)), (1 << (bits - 1)) - 1, 0]
        case Int(bits=bits):
            return [0, (1 << bits) - 1, 1]
        case Float(bits=32):
            return [math.nan, -0.0, 3.4028234663852886e38]
        case Float():
            return [-math.inf, math.nan, 1.7976931348623157e308]
        case Decimal(precision=p):
            return [-(10**p - 1), 10**p - 1, 0]
        case String():
            return [b"", b"\x00\xff'\\", "☃ ünï\n".encode()]
        case FixedString(size=n):
            return [b"", b"\xff" * n, b"\x00a"[:n]]
        case Date():
            return [EPOCH, LAST_DATE, EPOCH + timedelta(days=11016)]
        case DateTime():
            return [0, 2**32 - 1, 1_700_000_000]
        case Enum(members=members):
            return [members[0][0], members[-1][0], members[0][0]]
        case UUID():
            return [uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1), uuid.UUID(int=7)]
        case Nullable(inner=inner):
            return [None, *extremes(inner)[:2]]
        case LowCardinality(inner=inner):
            return extremes(inner)
        case Array(inner=inner):
            return [[], extremes(inner), [extremes(inner)[0]]]
        case Tuple(elements=elements):
            cols = [extremes(e) for e in elements]
            return [tuple(c[i] for c in cols) for i in range(3)]
    raise AssertionError(column)


def rows_of(data: bytes, columns: list[CHType]) -> list[bytes]:
    """Split a RowBinary answer into its rows' bytes."""
    rows, pos = [], 0
    while pos < len(data):
        start = pos
        for column in columns:
            pos = column.skip(data, pos)
        rows.append(data[start:pos])
    return rows
