"""Type-tagged Neo4j property values: every type survives encode -> JSON ->
decode, and content hashes tell apart what Neo4j tells apart (no server)."""

from __future__ import annotations

import json
import math

import pytest
import pytz  # type: ignore[import-untyped]
from neo4j.spatial import CartesianPoint, WGS84Point
from neo4j.time import Date, DateTime, Duration, Time

from dbfleet.engines.neo4j.graph import FingerprintBuilder, Ids, NodeHashes
from dbfleet.engines.neo4j.values import decode, encode, node_hash, rel_hash
from dbfleet.errors import EngineError

VALUES = [
    True, 0, -(2**63), 2**63 - 1, 1.0, -0.0, 1e-300, "täxt", "", [1, 2], ["a"], [1.5, 2.5],
    [True], bytearray(b"\x00\xff"), Date(2024, 2, 29), Time(1, 2, 3, 4),
    Time(1, 2, 3, 4, tzinfo=pytz.FixedOffset(-90)), DateTime(2024, 1, 1, 0, 0, 0, 1),
    DateTime(2024, 1, 1, 10, 0, 0, 0, tzinfo=pytz.FixedOffset(330)),
    pytz.timezone("Europe/Berlin").localize(DateTime(2024, 10, 27, 1, 30, 0, 999999999)),
    Duration(months=14, days=3, seconds=14706, nanoseconds=7), CartesianPoint((1.5, -2.0)),
    CartesianPoint((1.0, 2.0, 3.0)), WGS84Point((13.4, 52.5)), WGS84Point((13.4, 52.5, 35.0)),
    [Date(2024, 1, 1)], [CartesianPoint((0.0, 0.0))],
]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_every_type_round_trips_through_json(value: object) -> None:
    data = json.loads(json.dumps(encode(value)))
    back = decode(data)
    assert back == value and type(back) is type(value)
    if isinstance(value, DateTime) and value.tzinfo is not None:
        assert isinstance(back, DateTime)
        assert back.utcoffset() == value.utcoffset()
        assert getattr(back.tzinfo, "zone", None) == getattr(value.tzinfo, "zone", None)


def test_nan_and_infinity_survive() -> None:
    back = decode(json.loads(json.dumps(encode([math.inf, -math.inf]))))
    assert back == [math.inf, -math.inf]
    assert math.isnan(decode(json.loads(json.dumps(encode(math.nan)))))


def test_hashes_separate_types_and_ignore_order() -> None:
    assert node_hash(["A"], {"x": encode(1)}) != node_hash(["A"], {"x": encode(1.0)})
    assert node_hash(["A", "B"], {"x": 1, "y": 2}) == node_hash(["B", "A"], {"y": 2, "x": 1})
    assert node_hash(["A"], {}) != node_hash(["B"], {})
    a, b = node_hash(["A"], {}), node_hash(["B"], {})
    assert rel_hash("R", {}, a, b) != rel_hash("R", {}, b, a)  # direction matters


def test_unknown_types_and_tags_fail_loudly() -> None:
    with pytest.raises(EngineError, match="cannot back up"):
        encode(object())
    with pytest.raises(EngineError, match="unknown value tag"):
        decode({"$zzz": 1})


def test_fingerprint_is_order_independent_and_counts_duplicates() -> None:
    first, second = FingerprintBuilder(), FingerprintBuilder()
    digests = [node_hash(["A"], {"i": i}) for i in range(5)] + [node_hash(["A"], {"i": 0})]
    for d in digests:
        first.add_node(["A"], d)
    for d in reversed(digests):
        second.add_node(["A"], d)
    assert first.result([]) == second.result([])
    assert first.result([])["tables"]["A"]["count"] == 6  # a duplicate node is not cancelled


def test_node_keys_and_hash_table() -> None:
    ids = Ids()
    assert ids.key("4:abc:17") == 17 and ids.key("4:other:3") == "4:other:3"
    table = NodeHashes()
    table.put(17, b"\x00" * 16)  # an all-zero hash is still "present"
    table.put("4:other:3", b"\x02" * 16)
    assert table.get(17) is not None and table.get(16) is None and table.get(10**6) is None
    assert table.get("4:other:3") == b"\x02" * 8
