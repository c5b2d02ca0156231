"""MariaDB's type system as Hypothesis strategies, for the generated-data suite.

Each :class:`Kind` is a column type: its DDL, a strategy of Python values
(sent as query parameters, so the server parses them itself), how a value is
written into an INSERT (``ST_GeomFromText(%s)`` for geometry), and an
expression that renders a stored value exactly as text, so a source and a
restored copy can be compared through the server without dbfleet's code
(``HEX`` for bytes and strings, ``CAST(... AS CHAR)`` for numbers and
times, the float widened to DOUBLE first because FLOAT's own text form
keeps 6 digits).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

MAX_IDENTIFIER = 64


@dataclass(frozen=True)
class Kind:
    ddl: str
    values: st.SearchStrategy[Any]
    show: str = "CAST({c} AS CHAR)"
    placeholder: str = "%s"
    may_lose: bool = False
    """Values the dump tools cannot carry (FLOAT beyond 6 significant digits,
    ENUM/SET members with 4-byte characters): the backup must name the
    columns where it happens (see src/dbfleet/engines/mysql.py)."""


def _extremes(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([low, high, 0, -1 if low < 0 else 1]), st.integers(low, high))


def _integers() -> list[Kind]:
    kinds = []
    for name, bits in [("TINYINT", 8), ("SMALLINT", 16), ("MEDIUMINT", 24), ("INT", 32),
                       ("BIGINT", 64)]:  # fmt: skip
        kinds.append(Kind(name, _extremes(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)))
        kinds.append(Kind(f"{name} UNSIGNED", _extremes(0, 2**bits - 1)))
    return kinds


def _decimal(precision: int, scale: int) -> Kind:
    whole, frac = precision - scale, scale

    def text(negative: bool, digits: str, fraction: str) -> str:
        out = (digits.lstrip("0") or "0") + (f".{fraction}" if fraction else "")
        return f"-{out}" if negative else out

    most = "9" * whole + (("." + "9" * frac) if frac else "")
    values = st.one_of(
        st.sampled_from([most, f"-{most}", "0", "0." + "0" * (frac - 1) + "1" if frac else "1"]),
        st.builds(text, st.booleans(), st.text("0123456789", max_size=whole),
                  st.text("0123456789", max_size=frac)),
    )  # fmt: skip
    return Kind(f"DECIMAL({precision},{scale})", values)


def _not_negative_zero(x: float) -> float:
    return 0.0 if x == 0 else x  # mariadb-dump writes -0 as 0: a sign, not a value


FLOAT_VALUES = st.one_of(
    st.sampled_from([3.4028234663852886e38, -3.4028234663852886e38, 1.1754943508222875e-38,
                     1.401298464324817e-45, 0.5, 1.0, 100.25]),
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(_not_negative_zero),
)  # fmt: skip
DOUBLE_VALUES = st.one_of(
    st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308, 2.2250738585072014e-308,
                     5e-324, 0.1, 1 / 3]),
    st.floats(allow_nan=False, allow_infinity=False).map(_not_negative_zero),
)  # fmt: skip

UTF8 = st.characters(blacklist_categories=("Cs",))  # every code point, 4-byte ones too
LATIN1 = st.sampled_from([chr(c) for c in [*range(0x20, 0x7F), *range(0xA0, 0x100)]])
ASCII = st.characters(max_codepoint=0x7F)


def _strings(max_size: int, alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.text(alphabet, max_size=max_size)


def _huge(alphabet: st.SearchStrategy[str], limit: int) -> st.SearchStrategy[str]:
    """Long strings cheaply: a drawn piece repeated (up to ``limit`` characters)."""
    return st.builds(lambda piece, n: (piece * n)[:limit], st.text(alphabet, min_size=1,
                     max_size=8), st.integers(1, limit))  # fmt: skip


def _text_kinds() -> list[Kind]:
    hexed = "HEX({c})"
    return [
        Kind("CHAR(1)", _strings(1, UTF8), hexed),
        Kind("CHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", _strings(255, UTF8), hexed),
        Kind("VARCHAR(300)", _strings(300, UTF8), hexed),
        Kind("VARCHAR(64) CHARACTER SET latin1", _strings(64, LATIN1), hexed),
        Kind("VARCHAR(20) CHARACTER SET ascii COLLATE ascii_bin", _strings(20, ASCII), hexed),
        Kind("TINYTEXT CHARACTER SET latin1", _strings(255, LATIN1), hexed),
        Kind("TEXT", st.one_of(_strings(200, UTF8), _huge(UTF8, 16000)), hexed),
        Kind("MEDIUMTEXT", _huge(UTF8, 70000), hexed),
        Kind("LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci",
             _strings(100, UTF8), hexed),  # fmt: skip
    ]


ALL_BYTES = bytes(range(256))


def _binary_kinds() -> list[Kind]:
    hexed = "HEX({c})"
    some = st.one_of(st.just(ALL_BYTES), st.binary(max_size=300))
    return [
        Kind("BINARY(16)", st.binary(max_size=16), hexed),
        Kind("VARBINARY(300)", some.map(lambda b: b[:300]), hexed),
        Kind("TINYBLOB", st.binary(max_size=255), hexed),
        Kind("BLOB", some, hexed),
        Kind("LONGBLOB", st.one_of(some, st.binary(min_size=1, max_size=4).map(
            lambda b: (b * 40000)[:150000])), hexed),  # fmt: skip
    ]


ENUM_VALUES = ["", "a", "B b", "é", "\U0001f600", "it's", "x,y", "NULL"]
SET_VALUES = ["x", "y z", "ü", "\U0001f680", "q'"]


def _quoted_list(values: list[str]) -> str:
    return ",".join("'" + v.replace("\\", "\\\\").replace("'", "''") + "'" for v in values)


def _date_text(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _datetime_text(d: datetime) -> str:
    return f"{_date_text(d)} {d.hour:02d}:{d.minute:02d}:{d.second:02d}.{d.microsecond:06d}"


def _time_text(t: timedelta) -> str:
    micros = abs(t) // timedelta(microseconds=1)
    seconds, micro = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    sign = "-" if t < timedelta(0) else ""
    return f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{micro:06d}"


ZERO_DATES = ["0000-00-00", "2020-00-00", "2020-02-00"]  # where sql_mode allows them
MAX_TIME = timedelta(hours=838, minutes=59, seconds=59, microseconds=999999)
TIMESTAMP_MIN = datetime(1970, 1, 1, 0, 0, 1)
TIMESTAMP_MAX = datetime(2038, 1, 19, 3, 14, 7, 999999)


def _temporal_kinds() -> list[Kind]:
    dates = st.dates(date(1000, 1, 1), date(9999, 12, 31)).map(_date_text)
    datetimes = st.datetimes(datetime(1000, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999))
    return [
        Kind("DATE", st.one_of(dates, st.sampled_from(ZERO_DATES))),
        Kind("DATETIME(6)", st.one_of(
            datetimes.map(_datetime_text),
            st.sampled_from(["1000-01-01 00:00:00.000000", "9999-12-31 23:59:59.999999",
                             "0000-00-00 00:00:00.000000"]))),  # fmt: skip
        Kind("DATETIME", datetimes.map(lambda d: _datetime_text(d.replace(microsecond=0)))),
        Kind("TIMESTAMP(6) NULL", st.one_of(
            st.datetimes(TIMESTAMP_MIN, TIMESTAMP_MAX).map(_datetime_text),
            st.sampled_from([_datetime_text(TIMESTAMP_MIN), _datetime_text(TIMESTAMP_MAX),
                             "0000-00-00 00:00:00.000000"]))),  # fmt: skip
        Kind("TIME(6)", st.one_of(
            st.timedeltas(-MAX_TIME, MAX_TIME).map(_time_text),
            st.sampled_from([_time_text(MAX_TIME), _time_text(-MAX_TIME)]))),  # fmt: skip
        Kind("YEAR", st.one_of(st.integers(1901, 2155), st.just(0))),
    ]


JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(UTF8, max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(UTF8, max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)  # fmt: skip


def _wkt_point(x: float, y: float) -> str:
    return f"{x!r} {y!r}"


COORD = st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False).map(_not_negative_zero)
POINTS = st.builds(lambda x, y: f"POINT({_wkt_point(x, y)})", COORD, COORD)
LINES = st.lists(st.tuples(COORD, COORD), min_size=2, max_size=5).map(
    lambda ps: "LINESTRING(" + ",".join(_wkt_point(x, y) for x, y in ps) + ")"
)
POLYGONS = st.builds(
    lambda x, y, d: f"POLYGON(({x!r} {y!r},{x + d!r} {y!r},{x!r} {y + d!r},{x!r} {y!r}))",
    st.integers(-1000, 1000).map(float), st.integers(-1000, 1000).map(float),
    st.integers(1, 50).map(float),
)  # fmt: skip


def _other_kinds() -> list[Kind]:
    geometry = "HEX(ST_AsWKB({c}))"
    return [
        Kind("FLOAT", FLOAT_VALUES, "CAST(CAST({c} AS DOUBLE) AS CHAR)", may_lose=True),
        Kind("FLOAT(10,3)", st.integers(-9999999, 9999999).map(lambda n: f"{n / 1000:.3f}")),
        Kind("DOUBLE", DOUBLE_VALUES),
        Kind("BIT(1)", st.integers(0, 1), "CAST({c} AS UNSIGNED)"),
        Kind("BIT(17)", _extremes(0, 2**17 - 1), "CAST({c} AS UNSIGNED)"),
        Kind("BIT(64)", _extremes(0, 2**64 - 1), "CAST({c} AS UNSIGNED)"),
        Kind(f"ENUM({_quoted_list(ENUM_VALUES)})", st.sampled_from(ENUM_VALUES), "HEX({c})",
             may_lose=True),  # fmt: skip
        Kind(f"SET({_quoted_list(SET_VALUES)})", st.sets(st.sampled_from(SET_VALUES)).map(
            ",".join), "HEX({c})", may_lose=True),  # fmt: skip
        Kind("JSON", JSON_VALUES.map(lambda v: json.dumps(v, ensure_ascii=False)), "HEX({c})"),
        Kind("INET6", st.ip_addresses(v=6).map(str)),
        # the server refuses some version/variant combinations (NULL, or an error)
        Kind("UUID", st.one_of(
            st.sampled_from(["00000000-0000-0000-0000-000000000000",
                             "ffffffff-ffff-ffff-ffff-ffffffffffff"]),
            st.sampled_from([1, 3, 4, 5]).flatmap(lambda v: st.uuids(version=v)).map(str),
        )),  # fmt: skip
        Kind("POINT", POINTS, geometry, "ST_GeomFromText(%s)"),
        Kind("LINESTRING", LINES, geometry, "ST_GeomFromText(%s)"),
        Kind("GEOMETRY", st.one_of(POINTS, LINES, POLYGONS), geometry, "ST_GeomFromText(%s)"),
    ]


KINDS: list[Kind] = [
    *_integers(), _decimal(65, 30), _decimal(10, 0), _decimal(5, 5), _decimal(38, 10),
    *_text_kinds(), *_binary_kinds(), *_temporal_kinds(), *_other_kinds(),
]  # fmt: skip
"""Every column type the suite draws."""
NARROW = [k for k in KINDS if k.ddl in ("INT", "BIGINT UNSIGNED", "DOUBLE", "DATE", "BIT(1)",
                                        "VARCHAR(20) CHARACTER SET ascii COLLATE ascii_bin")]
"""Small types for wide tables (InnoDB rows are limited to ~8 KB in-page)."""

RESERVED = ["select", "order", "table", "key", "group", "index", "from", "where", "desc",
            "int", "values", "limit", "rank", "window", "lock", "user"]  # fmt: skip
ODD = st.sampled_from(list(" `'\".,;:()-/\\#@$%&*+=!?[]{}|~^<>") + ["é", "ß", "Ω", "ñ", "ÿ"])


def _strip_trailing_space(name: str) -> str:
    return name.rstrip(" ") or "x"


# Identifiers: up to 64 plain characters, or up to 40 odd ones (the server
# encodes them in file names, 5 bytes each, within the 255-byte limit);
# no trailing space (the server refuses it), no control characters (the
# dump tool writes newlines in names unescaped, see the report).
IDENTIFIERS: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(RESERVED),
    st.text(st.sampled_from(string.ascii_letters + string.digits + "_$"), min_size=1,
            max_size=MAX_IDENTIFIER),
    st.text(st.one_of(ODD, st.sampled_from(string.ascii_letters)), min_size=1, max_size=40),
    st.just("x" * MAX_IDENTIFIER),
    st.just("-- Dumping data for table `t`"),
).map(_strip_trailing_space)  # fmt: skip


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
