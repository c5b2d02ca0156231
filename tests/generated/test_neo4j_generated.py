"""Generated Neo4j graphs through a real logical backup and restore (Neo4j
Community 5.26: the test server's ``main`` DBMS is the source, ``scratch``
the target).

Nodes with zero, one or several labels and relationships (self-loops,
parallel ones, with and without properties) carry every property type:
integers at the 64-bit bounds, floats (NaN, ±Inf, -0.0, the extremes),
strings (empty, unicode, long), booleans, byte arrays, Date, Time (with
offsets), LocalTime, DateTime (offsets and named zones, also on a DST
change), LocalDateTime, Duration (negative parts), Points (cartesian and
WGS-84, 2D and 3D) and lists of each. Labels, relationship types and
property keys have backticks, spaces, dots and unicode; the schema has a
uniqueness constraint and range, text and point indexes. The restored graph
is compared with the source through the driver (every node's labels and
properties, every relationship with its endpoints' content; the
constraints and indexes), independently of dbfleet's fingerprint; the
fingerprint must agree (equal after the restore; a changed relationship
shows in exactly its type, a changed node in exactly its labels and the
types of its relationships). A subset restore takes the first, middle or
last label.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import pytest
import pytz  # type: ignore[import-untyped]
from hypothesis import example, given, settings
from hypothesis import strategies as st
from neo4j.spatial import CartesianPoint, WGS84Point
from neo4j.time import Date, DateTime, Duration, Time

from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.neo4j import Neo4jEngine
from dbfleet.engines.neo4j.restore import ident
from dbfleet.errors import EngineError
from tests.conftest import generated_examples
from tests.generated.roundtrip import backed_up, restore_as
from tests.integration.fixtures_neo4j import Neo4jServer

INT64 = (-(2**63), 2**63 - 1)
NAMES = ["Person", "with space", "back`tick", "dot.ted", "ünïcödé", "表", "_", "A1", "$dollar",
         "x" * 60]  # fmt: skip
# Not "UTC": the driver reads the zone id UTC and the offset Z as the same
# pytz.utc, so dbfleet restores both as Z (see dbfleet.engines.neo4j.values).
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Etc/GMT+12",
         "Etc/UTC", "GMT"]  # fmt: skip

integers = st.sampled_from([*INT64, 0, -1, 2**53 + 1]) | st.integers(*INT64)
floats = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1.7976931348623157e308, 5e-324,
                          0.1]) | st.floats()  # fmt: skip
strings = st.sampled_from(["", "ü\U0001f600", "x" * 20000, "`", "a\x00b"]) | st.text(max_size=12)
# the driver's range, less a day at each end (an offset must not take the UTC time out of it)
dates = st.dates(min_value=Date(1, 1, 2).to_native(), max_value=Date(9999, 12, 30).to_native())
nanos = st.integers(0, 999_999_999)
local_times = st.builds(Time, st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), nanos)
offsets = st.integers(-18 * 60, 18 * 60).map(lambda m: pytz.FixedOffset(m))
stdlib_offsets = st.integers(-18 * 60, 18 * 60).map(
    lambda m: _dt.timezone(_dt.timedelta(minutes=m))
)
times = st.builds(lambda t, z: Time(t.hour, t.minute, t.second, t.nanosecond, tzinfo=z),
                  local_times, offsets)  # fmt: skip


def _local_datetime(d: Any, t: Time) -> DateTime:
    return DateTime(d.year, d.month, d.day, t.hour, t.minute, t.second, t.nanosecond)


local_datetimes = st.builds(_local_datetime, dates, local_times)
datetimes = st.one_of(
    st.builds(lambda d, z: z.localize(d) if hasattr(z, "localize") else d.replace(tzinfo=z),
              local_datetimes, offsets | stdlib_offsets | st.sampled_from(ZONES).map(
                  pytz.timezone)),
    st.sampled_from([pytz.timezone("Europe/Berlin").localize(DateTime(2024, 3, 31, 2, 30)),
                     pytz.timezone("Europe/Berlin").localize(DateTime(2024, 10, 27, 2, 30))]),
)  # fmt: skip
durations = st.builds(lambda mo, d, s, ns: Duration(months=mo, days=d, seconds=s, nanoseconds=ns),
                      st.integers(-1000, 1000), st.integers(-1000, 1000),
                      st.integers(-(10**9), 10**9), nanos)  # fmt: skip
coordinates = st.floats(-1e6, 1e6)
point_kinds = [
    st.builds(lambda x, y: CartesianPoint((x, y)), coordinates, coordinates),
    st.builds(lambda x, y, z: CartesianPoint((x, y, z)), coordinates, coordinates, coordinates),
    st.builds(lambda x, y: WGS84Point((x, y)), st.floats(-180, 180), st.floats(-90, 90)),
    st.builds(lambda x, y, z: WGS84Point((x, y, z)), st.floats(-180, 180), st.floats(-90, 90),
              coordinates),
]  # fmt: skip
historic = st.sampled_from(
    [  # zones' early local mean times: offsets in seconds
        pytz.timezone("Europe/Amsterdam").localize(DateTime(1890, 1, 1, 0, 0, 0)),
        pytz.timezone("Asia/Kolkata").localize(DateTime(1850, 6, 1, 12, 0, 0)),
    ]
)
singles = [st.booleans(), integers, floats, strings, dates.map(Date.from_native), local_times,
           times, local_datetimes, datetimes | historic, durations]  # fmt: skip
values = st.one_of(
    *singles,
    st.binary(max_size=20).map(bytearray),
    *point_kinds,
    *[st.lists(s, min_size=1, max_size=4) for s in singles + point_kinds],  # one CRS a list
)
keys = st.sampled_from(["name", "with space", "back`tick", "ü", "dot.ted", " ", "1"]) | st.text(
    min_size=1, max_size=6
).filter(lambda k: "\x00" not in k)  # Neo4j: token names are not empty, have no NUL
properties = st.dictionaries(keys, values, max_size=4)


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    labels = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    count = draw(st.integers(1, 6))
    nodes = [{"labels": draw(st.lists(st.sampled_from(labels), max_size=3, unique=True)),
              "props": draw(properties)} for _ in range(count)]  # fmt: skip
    nodes[0]["labels"] = nodes[0]["labels"] or [labels[0]]
    types = draw(st.lists(st.sampled_from(NAMES + ["KNOWS"]), min_size=1, max_size=3, unique=True))
    rels = draw(st.lists(st.tuples(st.integers(0, count - 1), st.integers(0, count - 1),
                                   st.sampled_from(types), properties), max_size=8))  # fmt: skip
    return {"labels": labels, "nodes": nodes, "rels": rels, "index": draw(st.booleans())}


# -- building and reading ------------------------------------------------------


def build(server: Neo4jServer, graph: dict[str, Any]) -> None:
    with server.driver() as driver, driver.session() as session:
        ids = []
        for node in graph["nodes"]:
            names = "".join(f":{ident(label)}" for label in node["labels"])
            ids.append(session.run(f"CREATE (n{names}) SET n = $p RETURN elementId(n) AS i",
                                   p=node["props"]).single()["i"])  # fmt: skip
        for start, end, rel_type, props in graph["rels"]:
            session.run(f"MATCH (a), (b) WHERE elementId(a) = $a AND elementId(b) = $b "
                        f"CREATE (a)-[r:{ident(rel_type)}]->(b) SET r = $p",
                        a=ids[start], b=ids[end], p=props).consume()  # fmt: skip
        if graph["index"]:
            label = ident(graph["labels"][0])
            session.run(f"CREATE CONSTRAINT `uniq name` FOR (n:{label}) REQUIRE n.`uniq` IS UNIQUE")
            session.run(f"CREATE INDEX `range idx` FOR (n:{label}) ON (n.name, n.`with space`)")
            session.run(f"CREATE TEXT INDEX `text idx` FOR (n:{label}) ON (n.ü)")
            session.run(f"CREATE POINT INDEX `point idx` FOR ()-[r:{ident('KNOWS')}]-() ON (r.p)")
            session.run("CALL db.awaitIndexes(300)").consume()


def _canonical(value: Any) -> Any:
    """A property value in a form that compares exactly (NaN equal to
    NaN, -0.0 unequal to 0.0, the type kept)."""
    if isinstance(value, float):
        return ("float", value.hex() if math.isfinite(value) else repr(value))
    if isinstance(value, list):
        return ("list", [_canonical(v) for v in value])
    if isinstance(value, bytes | bytearray):
        return ("bytes", bytes(value))
    if isinstance(value, DateTime | Time) and value.tzinfo is not None:
        zone = getattr(value.tzinfo, "zone", None)
        return (type(value).__name__, value.iso_format(), zone, value.utcoffset())
    if isinstance(value, CartesianPoint | WGS84Point):
        return (type(value).__name__, value.srid, [_canonical(float(c)) for c in value])
    return (type(value).__name__, value)


def _content(labels: list[str], props: dict[str, Any]) -> Any:
    return (sorted(labels), sorted((k, _canonical(v)) for k, v in props.items()))


# Each property as the server shows it (type and text), independent of how
# the driver maps values to Python: a zone id or an offset's seconds that the
# driver's types cannot hold still differ here.
SERVER_VIEW = (
    "[k IN keys(n) | [k, valueType(n[k]), CASE WHEN n[k] IS :: LIST<ANY> "
    "THEN [x IN n[k] | toStringOrNull(x)] ELSE [toStringOrNull(n[k])] END]]"
)


def contents(server: Neo4jServer, url: str | None = None, label: str | None = None) -> Any:
    """Nodes (labels and properties), relationships (type, properties, both
    endpoints' content), constraints and indexes; ``label``: only the nodes
    with it and the relationships among them, and its schema."""
    where = f"WHERE n:{ident(label)}" if label else ""
    both = f"WHERE a:{ident(label)} AND b:{ident(label)}" if label else ""
    with server.driver(url) as driver, driver.session() as session:
        query = f"MATCH (n) {where} RETURN labels(n) AS l, properties(n) AS p, {SERVER_VIEW} AS s"
        nodes = sorted(repr((_content(r["l"], r["p"]), sorted(r["s"]))) for r in session.run(query))
        rels = sorted(
            repr((r["t"], sorted((k, _canonical(v)) for k, v in r["p"].items()),
                  _content(r["al"], r["ap"]), _content(r["bl"], r["bp"])))
            for r in session.run(
                f"MATCH (a)-[r]->(b) {both} RETURN type(r) AS t, properties(r) AS p, labels(a) "
                "AS al, properties(a) AS ap, labels(b) AS bl, properties(b) AS bp")
        )  # fmt: skip
        schema = sorted(
            (r["name"], r["type"], r["labelsOrTypes"], r["properties"])
            for r in session.run("SHOW INDEXES YIELD name, type, labelsOrTypes, properties")
            if r["type"] != "LOOKUP" and (label is None or r["labelsOrTypes"] == [label])
        )
        constraints = sorted(
            (r["name"], r["type"], r["labelsOrTypes"], r["properties"])
            for r in session.run("SHOW CONSTRAINTS YIELD name, type, labelsOrTypes, properties")
            if label is None or r["labelsOrTypes"] == [label]
        )
    return {"nodes": nodes, "relationships": rels, "indexes": schema, "constraints": constraints}


# -- the round trip ------------------------------------------------------------


@settings(max_examples=generated_examples(4))
@given(graph=graphs(), position=st.sampled_from([0, 1, -1]))
@example(graph={"labels": ["Person", "back`tick"], "index": True,
                "nodes": [{"labels": ["Person", "back`tick"],
                           "props": {"at": pytz.timezone("Etc/UTC").localize(DateTime(2020, 1, 1)),
                                     "off": Time(12, 0, 0, 0, tzinfo=pytz.FixedOffset(330))}},
                          {"labels": [], "props": {"nan": math.nan, "z": -0.0, "utc": DateTime(
                              2020, 1, 1, tzinfo=_dt.UTC)}}],
                "rels": [(0, 0, "KNOWS", {"d": Duration(seconds=-1, nanoseconds=5)}),
                         (0, 1, "KNOWS", {}), (0, 1, "KNOWS", {})]},
         position=0)  # fmt: skip
def test_neo4j_round_trip(graph: dict[str, Any], position: int, neo4j_server: Neo4jServer) -> None:
    server = neo4j_server
    server.clear()
    server.clear(server.scratch_url)
    build(server, graph)
    repo, snapshot = backed_up(Neo4jEngine(server.config()))
    assert snapshot.fingerprint is not None

    scratch = server.config(server.scratch_url)
    whole = restore_as(Neo4jEngine, repo, snapshot, scratch)
    assert contents(server, server.scratch_url) == contents(server)
    assert compare_fingerprints(snapshot.fingerprint, whole.fingerprint()) == []

    # one value changed: a relationship's shows in its type only; a node's
    # in its labels and the types of its relationships
    with server.driver(server.scratch_url) as driver, driver.session() as session:
        if graph["rels"]:
            record = session.run("MATCH ()-[r]->() WITH r LIMIT 1 SET r.`changed!` = true "
                                 "RETURN type(r) AS t").single()  # fmt: skip
            expected = {f"[{record['t']}]"}
        else:
            record = session.run("MATCH (n) WITH n LIMIT 1 SET n.`changed!` = true "
                                 "RETURN labels(n) AS l").single()  # fmt: skip
            expected = set(record["l"]) or {"()"}
    differences = compare_fingerprints(snapshot.fingerprint, whole.fingerprint())
    assert {d.split(": ")[0] for d in differences} == expected, differences

    server.clear(server.scratch_url)
    labels = sorted({label for node in graph["nodes"] for label in node["labels"]})
    label = labels[{0: 0, 1: len(labels) // 2, -1: len(labels) - 1}[position]]
    subset = restore_as(Neo4jEngine, repo, snapshot, scratch, tables=(label,))
    assert contents(server, server.scratch_url, label) == contents(server, label=label)
    assert compare_fingerprints(snapshot.fingerprint, subset.fingerprint((label,)),
                                (label,)) == []  # fmt: skip


def test_values_the_driver_cannot_read_fail_the_backup_saying_what_to_do(
    neo4j_server: Neo4jServer,
) -> None:
    """Neo4j stores dates from year -999999999 to 999999999; the Python
    driver reads years 1 to 9999. A graph with such a value cannot be backed
    up logically: the backup fails naming the property and offline mode."""
    neo4j_server.run("CREATE (:Old {ok: 1, `when`: date('-0001-01-01')})")
    with pytest.raises(EngineError, match=r"property 'when'.*mode: offline"):
        backed_up(Neo4jEngine(neo4j_server.config()))
