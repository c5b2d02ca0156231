"""PostgreSQL's type system as Hypothesis strategies: for each type its SQL
name, a strategy of values in their text input form, and hand-picked
extremes (every extreme also appears in the strategy). Values are SQL
literals ready to embed (``'...'::type``) or ``None`` for NULL.

Types that a case defines itself (enum, domain, composite) are in
:mod:`tests.generated.pg_cases`; those of an extension name it (``needs``)."""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

Value = str | None  # an SQL expression, or NULL


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class PgType:
    sql: str
    text: st.SearchStrategy[str] = field(repr=False)  # values in their text input form
    extremes: tuple[str, ...] = field(default=(), repr=False)
    needs: str | None = field(default=None, repr=False)  # an extension

    def literal(self, text: str) -> str:
        return f"{quote_literal(text)}::{self.sql}"

    def values(self) -> st.SearchStrategy[Value]:
        choices = [self.text]
        if self.extremes:
            choices.append(st.sampled_from(self.extremes))
        return st.one_of(st.none(), *choices).map(lambda t: None if t is None else self.literal(t))

    def extreme_values(self) -> list[Value]:
        return [self.literal(t) for t in self.extremes]


# -- building blocks ---------------------------------------------------------

SAFE_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
TEXT = st.text(SAFE_CHARS, max_size=30)
ODD_STRINGS = (
    "", " ", "  padded  ", "NULL", "null", "\\N", "\\", "'", '"', "a,b", "{}", "()", "\t\n\r",
    "ünïcødé", "🐘🐘", "שלום", "𝔘𝔫𝔦", "e\u0301", "\u200b", "\x7f", "x" * 10000,
    # 300 kB that do not compress: stored out of line (TOAST)
    "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(100_000)),
)  # fmt: skip


def _float_text(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


def _ints(bits: int, discrete_bound: bool = False) -> st.SearchStrategy[str]:
    """Integers of ``bits``; as a bound of a discrete range not the maximum
    (``[x,max]`` canonicalizes to ``[x,max+1)``, out of range)."""
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return st.integers(low, high - 1 if discrete_bound else high).map(str)


def array_element(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_of(elements: st.SearchStrategy[str | None], max_size: int = 4) -> st.SearchStrategy[str]:
    """One- or two-dimensional array literals with NULLs."""

    def render(items: list[str | None]) -> str:
        return "{" + ",".join("NULL" if i is None else array_element(i) for i in items) + "}"

    one = st.lists(elements, max_size=max_size).map(render)

    def matrix(width: int) -> st.SearchStrategy[str]:
        row = st.lists(elements, min_size=width, max_size=width)
        return st.lists(row, min_size=1, max_size=3).map(
            lambda rows: "{" + ",".join(map(render, rows)) + "}"
        )

    two = st.integers(1, 3).flatmap(matrix)
    return st.one_of(one, two)


def _range(bound: st.SearchStrategy[str], key: Callable[[str], Any]) -> st.SearchStrategy[str]:
    def render(lo: str | None, hi: str | None, brackets: str) -> str:
        if lo is not None and hi is not None and key(lo) > key(hi):
            lo, hi = hi, lo
        return f"{brackets[0]}{lo or ''},{hi or ''}{brackets[1]}"

    brackets = st.sampled_from(["[)", "[]", "(]", "()"])
    return st.just("empty") | st.builds(render, st.none() | bound, st.none() | bound, brackets)


def _json_values() -> st.SearchStrategy[object]:
    scalars: st.SearchStrategy[object] = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63),
        TEXT,
        st.floats(allow_nan=False, allow_infinity=False),
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
        max_leaves=12,
    )


JSON_TEXT = st.builds(
    lambda value, compact: json.dumps(value, ensure_ascii=False,
                                      separators=(",", ":") if compact else (", ", ": ")),
    _json_values(), st.booleans(),
)  # fmt: skip
NUMERIC = (
    st.integers(0, 40)
    .flatmap(lambda places: st.decimals(-(10**30), 10**30, places=places))
    .map(str)
)
DATES = st.dates().map(lambda d: d.isoformat())
TIMES = st.times().map(lambda t: t.isoformat())
DATETIMES = st.datetimes().map(lambda d: d.isoformat(sep=" "))
ZONES = st.sampled_from(
    ["UTC", "+14:00", "-12:00", "+05:45", "America/St_Johns", "Asia/Kathmandu", "Pacific/Chatham",
     "Europe/Berlin", "Australia/Lord_Howe"]
)  # fmt: skip
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64).map(_float_text)
POINT = st.builds(lambda x, y: f"({x},{y})", FINITE, FINITE)
IPV4 = st.builds(
    lambda a, p: f"{ipaddress.IPv4Address(a)}/{p}", st.integers(0, 2**32 - 1), st.integers(0, 32)
)
IPV6 = st.builds(
    lambda a, p: f"{ipaddress.IPv6Address(a)}/{p}", st.integers(0, 2**128 - 1), st.integers(0, 128)
)
WORD = st.text("abcdefghijklmnopqrstuvwxyzäöü", min_size=1, max_size=8)


def _interval(years: int, months: int, days: int, micros: int) -> str:
    sign = "-" if micros < 0 else ""
    seconds, micro = divmod(abs(micros), 1_000_000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    clock = f"{sign}{hours}:{minute:02d}:{second:02d}.{micro:06d}"
    return f"{years} years {months} mons {days} days {clock}"


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def _money(cents: int) -> str:
    return f"{cents / 100:.2f}" if abs(cents) < 2**52 else str(cents // 100)


def _hstore(pairs: dict[str, str | None]) -> str:
    def value(v: str | None) -> str:
        return "NULL" if v is None else array_element(v)

    return ", ".join(f"{array_element(k)}=>{value(v)}" for k, v in pairs.items())


def _path(points: list[str], closed: bool) -> str:
    return ("({})" if closed else "[{}]").format(",".join(points))


INTERVALS = st.builds(
    _interval,
    st.integers(-(10**6), 10**6),
    st.integers(-11, 11),
    st.integers(-(10**6), 10**6),
    st.integers(-(10**15), 10**15),
)
XML = st.builds(
    lambda tag, attr, body: f'<{tag} a="{_xml_escape(attr)}">{_xml_escape(body)}</{tag}>',
    st.sampled_from(["a", "ü", "x-y"]),
    st.text("abc&<>'\"", max_size=5),
    st.text("xyz&<>", max_size=5),
)
TIMETZ = st.builds(
    lambda t, zone: f"{t}{zone}", TIMES, st.sampled_from(["+15:59", "-15:59", "+00", "+05:30"])
)
TIMESTAMPTZ = st.builds(lambda d, zone: f"{d} {zone}", DATETIMES, ZONES)
INT4_BOUND, INT8_BOUND = _ints(32, discrete_bound=True), _ints(64, discrete_bound=True)
MULTIRANGE = st.lists(_range(INT4_BOUND, int), max_size=3).map(lambda rs: "{" + ",".join(rs) + "}")
LEXEMES = st.builds(lambda w, p, weight: f"{w}:{p}{weight}", WORD, st.integers(1, 16383),
                    st.sampled_from("ABCD"))  # fmt: skip
NONZERO = FINITE.filter(lambda a: float(a) != 0)
LINE = st.builds(lambda a, b, c: f"{{{a},{b},{c}}}", NONZERO, FINITE, FINITE)
POINTS = st.lists(POINT, min_size=1, max_size=4)
CIRCLE = st.builds(lambda p, r: f"<{p},{r}>", POINT, st.floats(0, 1e300).map(_float_text))
SNAPSHOTS = st.integers(1, 2**40).flatmap(
    lambda xmin: st.integers(xmin, xmin + 100).flatmap(
        lambda xmax: st.lists(st.integers(xmin, xmax - 1), max_size=3, unique=True).map(
            lambda xips: f"{xmin}:{xmax}:{','.join(map(str, sorted(xips)))}"
        )
    )
)
LSN = st.integers(0, 2**64 - 1).map(lambda n: f"{n >> 32:X}/{n & 0xFFFFFFFF:X}")


def _reg(name: str, *values: str) -> PgType:
    """A reg* type: names of catalog objects ("0" is InvalidOid, shown as "-")."""
    return PgType(name, st.sampled_from(values), ("0",))


BUILTIN: tuple[PgType, ...] = (
    PgType("smallint", _ints(16), ("-32768", "32767", "0")),
    PgType("integer", _ints(32), ("-2147483648", "2147483647")),
    PgType("bigint", _ints(64), ("-9223372036854775808", "9223372036854775807")),
    PgType(
        "numeric",
        NUMERIC,
        (
            "NaN",
            "Infinity",
            "-Infinity",
            "0.000000000000000000001",
            "-0",
            "1e1000",
            "123456789012345678901234567890.123456789012345678901234567890",
        ),
    ),  # fmt: skip
    PgType(
        "numeric(12,3)",
        st.decimals(-(10**8), 10**8, places=3).map(str),
        ("-99999999.999", "0.0005"),
    ),
    PgType(
        "real",
        st.floats(width=32).map(_float_text),
        ("NaN", "Infinity", "-Infinity", "-0", "3.4028235e+38", "1e-45", "1.17549435e-38"),
    ),
    PgType(
        "double precision",
        st.floats().map(_float_text),
        ("NaN", "Infinity", "-Infinity", "-0", "1.7976931348623157e+308", "5e-324"),
    ),
    PgType(
        "money",
        st.integers(-(2**63), 2**63 - 1).map(_money),
        ("-92233720368547758.08", "92233720368547758.07", "0.01"),
    ),
    PgType("text", TEXT, ODD_STRINGS),
    PgType("character varying(12)", st.text(SAFE_CHARS, max_size=12), ("", "ä" * 12)),
    PgType("character(5)", st.text(SAFE_CHARS, max_size=5), ("", "  ", "ab   ")),
    PgType('"char"', st.characters(min_codepoint=1, max_codepoint=127), ("\x01", "z")),
    PgType(
        "name",
        st.text(SAFE_CHARS, max_size=20).filter(lambda s: len(s.encode()) <= 63),
        ("n" * 63, "é" * 31),
    ),
    PgType(
        "bytea",
        st.binary(max_size=40).map(lambda b: "\\x" + b.hex()),
        ("\\x", "\\x00", "\\x" + "ff" * 5000),
    ),
    PgType("boolean", st.booleans().map(str), ("true", "false")),
    PgType(
        "date",
        DATES,
        ("infinity", "-infinity", "4713-01-01 BC", "5874897-12-31", "0001-12-31 BC"),
    ),
    PgType("time", TIMES, ("24:00:00", "00:00:00", "23:59:59.999999")),
    PgType("time with time zone", TIMETZ, ("24:00:00-15:59", "00:00:00+15:59")),
    PgType(
        "timestamp",
        DATETIMES,
        ("infinity", "-infinity", "294276-12-31 23:59:59.999999", "4713-01-01 00:00:00 BC"),
    ),
    PgType(
        "timestamp with time zone",
        TIMESTAMPTZ,
        (
            "infinity",
            "-infinity",
            "294276-12-30 23:59:59.999999+00",
            "4713-01-01 00:00:00+00 BC",
            "2024-03-31 02:30:00 Europe/Berlin",
        ),
    ),  # fmt: skip
    PgType(
        "interval",
        INTERVALS,
        (
            "178000000 years",
            "-178000000 years",
            "2147483647 days",
            "-2147483648 days",
            "0",
            "-00:00:00.000001",
            "1 year -1 mons 1 day -00:00:01",
        ),
    ),  # fmt: skip
    PgType(
        "uuid",
        st.uuids().map(str),
        ("00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"),
    ),
    PgType("json", JSON_TEXT, ('{"a": 1, "a": 2}', "  [ 1 ,2 ]  ", '"\\u00e9"', "null", "1e400")),
    PgType(
        "jsonb", JSON_TEXT, ('{"a": 1, "a": 2}', '{"deep": [[[[{"x": null}]]]]}', "1e400", '""')
    ),
    PgType("xml", XML, ('<?xml version="1.0"?><r/>', "text only", "<a><![CDATA[<&>]]></a>")),
    PgType(
        "integer[]",
        array_of(st.none() | _ints(32)),
        ("{}", "{{1,NULL},{NULL,4}}", "[-2:0]={1,2,3}"),
    ),
    PgType(
        "text[]",
        array_of(st.none() | TEXT),
        ('{"",NULL,"NULL","a,b","\\\\","\\""}', "{{a,b},{c,d}}"),
    ),
    PgType(
        "timestamp with time zone[]", array_of(st.none() | DATES), ("{infinity,-infinity,NULL}",)
    ),
    PgType(
        "double precision[]",
        array_of(st.none() | st.floats().map(_float_text)),
        ("{NaN,Infinity,-Infinity,-0}",),
    ),  # fmt: skip
    PgType("numeric[]", array_of(st.none() | NUMERIC), ("{NaN,1e-20,NULL}",)),
    PgType(
        "bytea[]",
        array_of(st.binary(max_size=8).map(lambda b: "\\x" + b.hex())),
        ('{"\\\\x00ff"}',),
    ),
    PgType("jsonb[]", array_of(st.none() | JSON_TEXT), ('{"{\\"a\\": [1]}",null,"\\"\\""}',)),
    PgType("interval[]", array_of(INTERVALS), ("{-178000000 years}",)),
    PgType("int4range", _range(INT4_BOUND, int), ("empty", "(,)", "[-2147483648,2147483647)")),
    PgType("int8range", _range(INT8_BOUND, int), ("[,9223372036854775806]",)),
    PgType("numrange", _range(NUMERIC, float), ("(-1.5,1.5]",)),
    PgType("daterange", _range(DATES, str), ("[-infinity,infinity]", "[2024-01-01,)")),
    PgType("tsrange", _range(DATETIMES, str), ("(,)",)),
    PgType("tstzrange", _range(DATETIMES.map(lambda d: d + "+00"), str), ("empty",)),
    PgType("int4multirange", MULTIRANGE, ("{}", "{[1,3),[5,7]}")),
    PgType(
        "inet",
        IPV4 | IPV6,
        ("0.0.0.0/0", "255.255.255.255", "::/0", "::ffff:1.2.3.4", "fe80::1/64"),
    ),
    PgType(
        "cidr",
        (IPV4 | IPV6).map(lambda a: str(ipaddress.ip_network(a, strict=False))),
        ("0.0.0.0/0", "10.0.0.0/8", "2001:db8::/32"),
    ),
    PgType(
        "macaddr",
        st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":")),
        ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"),
    ),
    PgType(
        "macaddr8",
        st.binary(min_size=8, max_size=8).map(lambda b: b.hex(":")),
        ("ff:ff:ff:ff:ff:ff:ff:ff",),
    ),
    PgType("bit(8)", st.text("01", min_size=8, max_size=8), ("00000000", "11111111")),
    PgType("bit varying", st.text("01", max_size=40), ("", "1" * 200)),
    PgType(
        "tsvector",
        st.lists(LEXEMES, max_size=5).map(" ".join),
        ("", "'a b':1A 'it''s':2", "fat:2,4 cat:3 rat:5A"),
    ),
    PgType(
        "tsquery",
        st.lists(WORD, min_size=1, max_size=4).map(" & ".join),
        ("fat & (rat | !cat)", "'a b' <-> c:*"),
    ),
    PgType("point", POINT, ("(0,0)", "(1.7976931348623157e+308,-1e308)", "(NaN,NaN)")),
    PgType("line", LINE, ("{1,-1,0}",)),
    PgType("lseg", st.builds(lambda p, q: f"[{p},{q}]", POINT, POINT), ("[(0,0),(0,0)]",)),
    PgType("box", st.builds(lambda p, q: f"{p},{q}", POINT, POINT), ("(1,1),(0,0)",)),
    PgType("path", st.builds(_path, POINTS, st.booleans()), ("[(0,0)]", "((0,0),(1,1),(2,0))")),
    PgType("polygon", POINTS.map(lambda ps: "(" + ",".join(ps) + ")"), ("((0,0),(1,1),(1,0))",)),
    PgType("circle", CIRCLE, ("<(0,0),0>",)),
    PgType("oid", st.integers(0, 2**32 - 1).map(str), ("0", "4294967295")),
    PgType("xid", st.integers(0, 2**32 - 1).map(str), ("0", "4294967295")),
    PgType("xid8", st.integers(0, 2**64 - 1).map(str), ("18446744073709551615",)),
    PgType(
        "tid",
        st.builds(lambda b, o: f"({b},{o})", st.integers(0, 2**32 - 1), st.integers(0, 65535)),
        ("(0,0)", "(4294967295,65535)"),
    ),  # fmt: skip
    PgType(
        "oidvector",
        st.lists(st.integers(0, 2**32 - 1).map(str), max_size=4).map(" ".join),
        ("", "0 4294967295"),
    ),  # fmt: skip
    PgType("int2vector", st.lists(_ints(16), max_size=4).map(" ".join), ("", "-32768 32767")),
    PgType("pg_snapshot", SNAPSHOTS, ("1:1:", "10:20:10,14,15")),
    PgType(
        "jsonpath",
        st.sampled_from(["$", "$.a[*] ? (@ > 1)", 'strict $."key with space"']),
        ("$.a.b.c", "$[last]", 'lax $.** ? (@ like_regex "^a" flag "i")'),
    ),  # fmt: skip
    PgType(
        "aclitem",
        st.sampled_from(["=r/dbfleet", "dbfleet=arwdDxt/dbfleet", "pg_monitor=r*/dbfleet"]),
        ("=/dbfleet",),
    ),  # fmt: skip
    PgType("pg_lsn", LSN, ("0/0", "FFFFFFFF/FFFFFFFF")),
    _reg("regtype", "integer", "text[]", "pg_class", "timestamp with time zone", "void"),
    _reg("regproc", "now", "pg_catalog.textin", "array_in"),
    _reg("regprocedure", "abs(integer)", "sum(bigint)", "lower(text)"),
    _reg("regoper", "||/", "|/"),
    _reg("regoperator", "+(integer,integer)", "-(NONE,bigint)", "||(text,text)"),
    _reg("regnamespace", "public", "pg_catalog", "information_schema"),
    _reg("regconfig", "english", "simple", "german"),
    _reg("regdictionary", "simple", "english_stem"),
    _reg("regcollation", '"C"', '"POSIX"', "ucs_basic"),
    _reg("regrole", "dbfleet", "pg_monitor"),
    PgType(
        "hstore",
        st.dictionaries(WORD, st.none() | TEXT, max_size=3).map(_hstore),
        ("", '"a b"=>"\\"x\\"", c=>NULL'),
        needs="hstore",
    ),
    PgType("citext", TEXT, ("MiXeD", ""), needs="citext"),
    PgType(
        "ltree",
        st.lists(WORD.filter(str.isascii), max_size=4).map(".".join),
        ("", "a.b.c"),
        needs="ltree",
    ),
)


def builtin(name: str) -> PgType:
    return next(t for t in BUILTIN if t.sql == name)
