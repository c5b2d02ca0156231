"""The Weaviate stream format, fingerprint pieces and locations (no server)."""

from __future__ import annotations

import struct

import pytest

from dbfleet.engines.weaviate.api import Location, with_prefix
from dbfleet.engines.weaviate.format import (
    CollectionPrint,
    Record,
    encode_header,
    encode_trailer,
    normalize_schema,
    read_stream,
    rename_refs,
    unpack_vector,
    vectors_of,
)
from dbfleet.errors import EngineError, UsageError


def _chunks(data: bytes, size: int = 7) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_records_round_trip_with_every_vector_kind() -> None:
    obj = {
        "vector": [0.1, -2.5, 3.0],
        "vectors": {"title": [1.0, 2.0], "colbert": [[1.0, 2.0], [3.0, 4.5]]},
    }
    vectors = vectors_of(obj)
    assert [(n, s) for n, s, _ in vectors] == [("", [3]), ("colbert", [2, 2]), ("title", [2])]
    assert vectors[0][2] == struct.pack("<3f", 0.1, -2.5, 3.0)  # float32, not text
    records = [
        Record("id-1", None, {"a": "ü", "n": [1, 2]}, vectors),
        Record("id-2", "tenantA", {}, []),
    ]
    data = encode_header({"collection": "C"}) + b"".join(r.encode() for r in records)
    header, read = read_stream(_chunks(data + encode_trailer(2)))
    assert header == {"collection": "C"}
    assert list(read) == records
    assert unpack_vector([2, 2], vectors[1][2]) == [[1.0, 2.0], [3.0, 4.5]]


def test_truncated_or_miscounted_streams_fail() -> None:
    data = encode_header({}) + Record("x", None, {}, []).encode()
    with pytest.raises(EngineError, match="truncated"):
        list(read_stream(_chunks(data))[1])
    with pytest.raises(EngineError, match="trailer says 2"):
        list(read_stream(_chunks(data + encode_trailer(2)))[1])
    with pytest.raises(EngineError, match="not a dbfleet"):
        read_stream([b"garbage" * 10])


def test_fingerprint_is_order_independent_and_sees_vectors() -> None:
    a = Record("a", "t1", {"x": 1}, vectors_of({"vector": [1.0]}))
    b = Record("b", "t2", {"x": 2}, vectors_of({"vector": [2.0]}))
    one, two = CollectionPrint("s", True, ["t1", "t2"]), CollectionPrint("s", True, ["t1", "t2"])
    for r in (a, b):
        one.add(r, r.properties)
    for r in (b, a):
        two.add(r, r.properties)
    assert one.entry() == two.entry()
    assert one.entry()["tenants"]["t1"]["objects"] == 1
    three = CollectionPrint("s", True, ["t1", "t2"])
    three.add(a, a.properties)
    b2 = Record("b", "t2", {"x": 2}, vectors_of({"vector": [2.0000002]}))
    three.add(b2, b2.properties)
    assert three.entry()["digest"] != one.entry()["digest"]


def test_references_and_schemas_are_renamed() -> None:
    props = {"by": [{"beacon": "weaviate://localhost/P_Author/u1", "href": "/v1/objects/x"}]}
    renamed = rename_refs(props, {"by"}, lambda c: c.removeprefix("P_"))
    assert renamed == {"by": [{"beacon": "weaviate://localhost/Author/u1"}]}
    config = {
        "class": "P_Article",
        "properties": [
            {"name": "by", "dataType": ["P_Author"]},
            {"name": "t", "dataType": ["text"]},
        ],
        "shardingConfig": {"actualCount": 1, "desiredCount": 1},
    }
    doc = normalize_schema(config, lambda c: c.removeprefix("P_"))
    assert "class" not in doc and doc["properties"][0]["dataType"] == ["Author"]
    assert doc["shardingConfig"] == {"desiredCount": 1}


def test_locations() -> None:
    whole = Location.parse("http://h:8080")
    assert whole.prefix == "" and whole.owns("Article") and not whole.owns("Dbfleet_x_Article")
    ns = Location.parse("https://h/Shop_")
    assert (ns.port, ns.prefix, ns.logical("Shop_Items")) == (443, "Shop_", "Items")
    assert ns.physical("Items") == "Shop_Items" and not ns.owns("Other")
    scratch = Location.parse("http://h:8080/Dbfleet_rt_5_Shop_")
    assert scratch.owns("Dbfleet_rt_5_Shop_Items")
    with pytest.raises(UsageError):
        whole.physical("lower")
    assert with_prefix("http://h:8080/Old_", "New_") == "http://h:8080/New_"
    for url in ("http://h/lower_", "http://u@h", "tcp://h", "http://h/A/B"):
        with pytest.raises(UsageError):
            Location.parse(url)
