"""Generated MongoDB databases through a real ``mongodump``/``mongorestore``
round trip (FerretDB v1.24 over SQLite; see tests/integration/fixtures_mongodb.py).

Documents draw from BSON's types with their extremes: int32 and int64
bounds, doubles at their maximum, minimum and subnormal, every binary
subtype, ObjectIds, datetimes from year 1 to 9999, Timestamps at both ends,
regexes with flags, nested documents and arrays of documents, null,
booleans, unicode and empty strings, odd field names (unicode, spaces,
empty); ``_id`` of several types. Collections get odd names, indexes
(compound, descending, unique), and some are empty; one case has many
collections. Each case is compared between source and restored copy
through pymongo (every document decoded in field order, the indexes),
independently of dbfleet's fingerprint, and the fingerprint must agree:
equal after the restore, naming exactly the collection whose document the
test changes. A subset restore takes the first, middle or last collection.

What FerretDB v1.24 refuses, so the cases leave it out (run against a
real MongoDB to cover it): NaN (the server drops the connection),
±Infinity ("infinity values are not allowed"), arrays directly inside
arrays ("nested arrays are not supported"), field names with ``.`` or a
leading ``$``, Decimal128, MinKey/MaxKey and JavaScript code (connection
dropped), ``$`` in collection names, control characters in field names
(the collection becomes unreadable: "invalid character in string
literal"), quotes in collection names (an SQL syntax error in its
SQLite backend). And ``listDatabases`` leaves out a database whose only
collections have a backslash, a no-break space or a private-use character
in their names (``a\\b``, U+00A0, U+E8D68; they are there, just not
listed), so dbfleet, which checks that the database exists, reports it
missing: names here have none of them. It also stores -0.0 as 0.0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
from bson import Binary, Int64, ObjectId, Regex, Timestamp
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.son import SON
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pymongo import ASCENDING, DESCENDING, MongoClient

from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.mongodb import MongoDBEngine
from tests.conftest import generated_examples
from tests.generated.roundtrip import backed_up, restore_as
from tests.integration.fixtures_mongodb import MONGO_PASSWORD_ENV, MongoServer

# Decoded in field order, datetimes outside Python's range kept as numbers.
CODEC = CodecOptions(document_class=SON, datetime_conversion=DatetimeConversion.DATETIME_AUTO)
ODD_COLLECTIONS = ["a.b", "ünïcödé", "with space", "-dash", "1num", "CamelCase", "x" * 100,
                   "system_not", "表", "a*b", "[x]", "?q", "(p)", "^c+"]  # fmt: skip
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

# Letters, digits, marks, punctuation and spaces of any script; no control
# or private-use characters and no backslash (see the module docstring).
NAME_CHARACTERS = st.characters(
    categories=["L", "M", "N", "P", "S", "Zs"], exclude_characters="\\.$"
)
COLLECTION_CHARACTERS = st.characters(
    categories=["L", "M", "N", "P", "S"], include_characters=" ", exclude_characters="\\.$'\""
)
field_names = st.one_of(
    st.sampled_from(["a", "ünï", " ", "", "with space", "-", "0", "é" * 30, "_", "null"]),
    st.text(NAME_CHARACTERS, max_size=8),
)
datetimes = st.one_of(
    st.sampled_from([datetime(1, 1, 1), datetime(1969, 12, 31, 23, 59, 59, 999000),
                     datetime(1970, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999000)]),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
)  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([*INT32, 0, -1]) | st.integers(*INT32),
    st.sampled_from([Int64(INT64[0]), Int64(INT64[1]), Int64(0)]) | st.integers(*INT64).map(Int64),
    st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308, 5e-324, 0.1, -2.5,
                     2.2250738585072014e-308]) | st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "ü\U0001f600\u202e", "x" * 50000]) | st.text(max_size=20).filter(
        lambda s: "\x00" not in s),
    st.builds(Binary, st.binary(max_size=20), st.sampled_from([0, 1, 2, 5, 6, 7, 128, 255])),
    st.builds(Binary, st.binary(min_size=16, max_size=16), st.sampled_from([3, 4])),
    st.binary(max_size=10).map(lambda b: ObjectId(b.ljust(12, b"\x00")[:12])),
    datetimes,
    st.builds(Timestamp, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.builds(Regex, st.sampled_from(["^a.*b$", "", "[ü]+", "\\d{2,}"]),
              st.sampled_from(["", "i", "imsx", "u"])),
)  # fmt: skip


def _documents(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.dictionaries(field_names, children, max_size=3)


values = st.recursive(
    scalars,
    # arrays hold scalars and documents: FerretDB refuses arrays in arrays
    lambda children: _documents(children) | st.lists(scalars | _documents(children), max_size=3),
    max_leaves=12,
)
ids = st.one_of(
    st.binary(min_size=12, max_size=12).map(ObjectId),
    st.integers(*INT64).map(Int64),
    st.text(max_size=10).filter(lambda s: "\x00" not in s),
    st.builds(lambda n: {"part": n, "sub": "x"}, st.integers(0, 99)),
)


@st.composite
def collections(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    many = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
    count = 12 if many else draw(st.integers(1, 4))
    names = st.sampled_from(ODD_COLLECTIONS) | st.text(COLLECTION_CHARACTERS, min_size=1,
                                                       max_size=10)  # fmt: skip
    chosen = draw(st.lists(names, min_size=count, max_size=count, unique_by=str.lower))
    result: dict[str, list[dict[str, Any]]] = {}
    for name in chosen:
        size = 1 if many else draw(st.integers(0, 5))
        keys = draw(st.lists(ids, min_size=size, max_size=size, unique_by=lambda i: repr(i)))
        result[name] = [{"_id": key, "k": n, **draw(_documents(values))} for n, key in
                        enumerate(keys)]  # fmt: skip
    return result


# -- building and reading ------------------------------------------------------


def _client(server: MongoServer) -> MongoClient[Any]:
    return MongoClient(server.url, password=os.environ[MONGO_PASSWORD_ENV],
                       serverSelectionTimeoutMS=10000)  # fmt: skip


def build(server: MongoServer, db: str, data: dict[str, list[dict[str, Any]]]) -> None:
    with _client(server) as client:
        database = client[db]
        for number, (name, docs) in enumerate(data.items()):
            database.create_collection(name)
            if docs:
                database[name].insert_many(docs)
            if number % 3 == 0:
                database[name].create_index([("k", DESCENDING)], unique=True, name="k desc")
            if number % 3 == 1:
                database[name].create_index([("k", ASCENDING), ("a", DESCENDING)])


def contents(server: MongoServer, db: str, only: str | None = None) -> dict[str, Any]:
    """Per collection: every document decoded in field order (sorted by the
    BSON of its ``_id``), and the indexes (name, key, unique)."""
    with _client(server) as client:
        database = client.get_database(db, codec_options=CODEC)
        result: dict[str, Any] = {}
        for name in sorted(database.list_collection_names()):
            if only is not None and name != only:
                continue
            docs = list(database[name].find())
            docs.sort(key=lambda d: bson.encode({"i": d["_id"]}))
            indexes = sorted(
                (i["name"], list(i["key"].items()), bool(i.get("unique")))
                for i in database[name].list_indexes()
            )
            result[name] = {"documents": docs, "indexes": indexes}
        return result


# -- the round trip ------------------------------------------------------------

Names = Callable[[str], str]
MAX_DATETIME = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


@settings(max_examples=generated_examples(4))
@given(data=collections(), position=st.sampled_from([0, 1, -1]))
@example(data={"first": [{"_id": 1, "k": 0, "when": MAX_DATETIME - timedelta(days=1)}],
               "middle": [], "a.b": [{"_id": "x", "k": 0, "arr": [{"d": Int64(INT64[0])}]}]},
         position=1)  # fmt: skip
def test_mongodb_round_trip(
    data: dict[str, list[dict[str, Any]]], position: int, mongo_server: MongoServer,
    mongo_databases: Names,
) -> None:  # fmt: skip
    source = mongo_databases("gen")
    build(mongo_server, source, data)
    repo, snapshot = backed_up(MongoDBEngine(mongo_server.config(source)))
    assert snapshot.fingerprint is not None

    whole_db = mongo_databases("genr")
    whole = restore_as(MongoDBEngine, repo, snapshot, mongo_server.config(whole_db))
    assert contents(mongo_server, whole_db) == contents(mongo_server, source)
    assert compare_fingerprints(snapshot.fingerprint, whole.fingerprint()) == []

    chosen = list(data)[{0: 0, 1: len(data) // 2, -1: len(data) - 1}[position]]
    subset_db = mongo_databases("gens")
    subset = restore_as(MongoDBEngine, repo, snapshot, mongo_server.config(subset_db),
                        tables=(chosen,))  # fmt: skip
    assert contents(mongo_server, subset_db) == contents(mongo_server, source, chosen)
    tables = (chosen,)
    assert compare_fingerprints(snapshot.fingerprint, subset.fingerprint(tables), tables) == []

    filled = [name for name, docs in data.items() if docs]
    if filled:
        changed = filled[position if position < len(filled) else 0]
        with _client(mongo_server) as client:
            result = client[whole_db][changed].update_one({}, {"$set": {"k": -1}})
            assert result.modified_count == 1
        differences = compare_fingerprints(snapshot.fingerprint, whole.fingerprint())
        assert len(differences) == 1 and differences[0].startswith(f"{changed}: "), differences
