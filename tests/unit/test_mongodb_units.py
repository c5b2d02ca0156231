"""MongoDB engine pieces that need no server: the oplog decision (FerretDB,
the test server, has no replica set, so this is the only place the
``--oplog`` logic runs), URL handling, namespace patterns, the password
file, and the archive parser on archives built here to the mongo-tools
spec (including an oplog section, which no test server can produce)."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import Any

import bson
import pytest
import yaml
from blake3 import blake3

from dbfleet.config import DatabaseConfig
from dbfleet.engines.mongodb import MongoDBEngine, scratch_prefix
from dbfleet.engines.mongodb.archive import MAGIC, ArchiveError, ArchiveTap, collection_shape
from dbfleet.engines.mongodb.location import (
    Location,
    find_mongo_tool,
    oplog_decision,
    prefixed,
    tool_config,
    with_database,
    with_prefix,
)
from dbfleet.engines.mongodb.server import (
    ns_pattern,
    restore_argv,
    restore_namespaces,
    restored_name,
)
from dbfleet.errors import ToolMissingError, UsageError

TERM = struct.pack("<i", -1)
REPLICA = {"setName": "rs0", "isWritablePrimary": True}


# -- oplog decision -------------------------------------------------------------


def test_oplog_is_taken_on_a_replica_set_whole_instance_dump() -> None:
    assert oplog_decision(REPLICA, True, "auto") == (True, "replica set rs0")
    assert oplog_decision(REPLICA, True, True)[0] is True


@pytest.mark.parametrize(
    ("hello", "whole", "reason"),
    [
        ({}, True, "not a replica set member"),
        ({"msg": "isdbgrid"}, True, "mongos"),
        (REPLICA, False, "only with whole-instance dumps"),
    ],
)
def test_no_oplog_where_mongodump_cannot_take_it(
    hello: dict[str, Any], whole: bool, reason: str
) -> None:
    taken, why = oplog_decision(hello, whole, "auto")
    assert not taken and reason in why
    with pytest.raises(UsageError, match="options.oplog is true"):
        oplog_decision(hello, whole, True)


def test_oplog_can_be_switched_off_and_bad_values_are_refused() -> None:
    assert oplog_decision(REPLICA, True, False) == (False, "disabled by options.oplog")
    with pytest.raises(UsageError, match="auto, true or false"):
        oplog_decision(REPLICA, True, "yes")


# -- locations ------------------------------------------------------------------


def test_location_database_or_whole_instance() -> None:
    loc = Location.parse("mongodb://app@db1:27017,db2/shop?replicaSet=rs0")
    assert (loc.database, loc.username, loc.hosts) == ("shop", "app", "db1:27017,db2")
    # the tools get no path (it would become --db) but keep authenticating on "shop"
    assert loc.tool_url() == "mongodb://app@db1:27017,db2/?replicaSet=rs0&authSource=shop"
    assert Location.parse("mongodb://h/").database is None
    assert Location.parse("mongodb://h").describe() == "h (whole instance)"
    explicit = Location.parse("mongodb://u@h/shop?authSource=%24external&authMechanism=PLAIN")
    assert explicit.tool_url() == "mongodb://u@h/?authSource=$external&authMechanism=PLAIN"
    assert with_database("mongodb://u@h:1/a?x=1", "b c") == "mongodb://u@h:1/b%20c?x=1"
    assert with_database("mongodb://u@h:1/a", None) == "mongodb://u@h:1/"


def test_namespace_patterns_escape_what_mongorestore_would_expand() -> None:
    assert ns_pattern("shop", "*") == "shop.*"
    assert ns_pattern("shop", "a*b$c\\d") == "shop.a\\*b\\$c\\\\d"


def test_restore_command_line() -> None:
    wanted = [("shop", "orders")]
    argv = restore_argv("mongorestore", "mongodb://h/", wanted, "shop", "copy",
                        clean=True, oplog_replay=False)  # fmt: skip
    assert argv == [
        "mongorestore", "--uri", "mongodb://h/", "--archive", "--stopOnError",
        "--noIndexRestore", "--nsInclude=shop.orders", "--nsFrom=shop.*", "--nsTo=copy.*",
        "--drop",
    ]  # fmt: skip
    whole = restore_argv("mongorestore", "mongodb://h/", wanted, None, None,
                         clean=True, oplog_replay=True)  # fmt: skip
    # mongorestore refuses --oplogReplay with any include, exclude or rename
    # ("cannot use --oplogReplay with includes specified"): the whole archive
    assert whole == [
        "mongorestore", "--uri", "mongodb://h/", "--archive", "--stopOnError",
        "--noIndexRestore", "--drop", "--oplogReplay",
    ]  # fmt: skip


def test_restore_command_line_under_a_prefix() -> None:
    wanted = [("shop", "orders"), ("shop", "users"), ("crm", "leads")]
    argv = restore_argv("mongorestore", "mongodb://h/", wanted, None, None,
                        clean=True, oplog_replay=False, prefix="dbfleet_scratch_v_")  # fmt: skip
    assert argv[argv.index("--nsInclude=crm.leads") + 1 :] == [
        "--nsFrom=crm.*", "--nsTo=dbfleet_scratch_v_crm.*",
        "--nsFrom=shop.*", "--nsTo=dbfleet_scratch_v_shop.*", "--drop",
    ]  # fmt: skip
    # mongorestore refuses renames with --oplogReplay; a database snapshot has no prefix
    with pytest.raises(ValueError, match="under its own names"):
        restore_argv("mongorestore", "mongodb://h/", wanted, None, None,
                     clean=False, oplog_replay=True, prefix="p_")  # fmt: skip
    with pytest.raises(ValueError, match="whole instance"):
        restore_argv("mongorestore", "mongodb://h/", [("shop", "orders")], "shop", "copy",
                     clean=False, oplog_replay=False, prefix="p_")  # fmt: skip


def test_restored_names_and_their_length_limit() -> None:
    assert restored_name("shop", "copy", "p_") == "copy"
    assert restored_name("shop", None, "p_") == "p_shop"
    assert restored_name("shop", None, None) == "shop"
    assert prefixed("p_", "x" * 61) == "p_" + "x" * 61
    with pytest.raises(UsageError, match="longer than 63 bytes"):
        prefixed("p_", "x" * 62)


def test_a_prefix_location() -> None:
    url = with_prefix("mongodb://u@h:1/?authSource=admin", "dbfleet_scratch_v_")
    assert url == "mongodb://u@h:1/dbfleet_scratch_v_*?authSource=admin"
    loc = Location.parse(url)
    assert (loc.database, loc.database_prefix) == (None, "dbfleet_scratch_v_")
    # the driver and the tools get the instance, not a default database
    assert loc.url == "mongodb://u@h:1/?authSource=admin"
    assert loc.tool_url() == "mongodb://u@h:1/?authSource=admin"
    assert loc.describe() == "h:1 (databases dbfleet_scratch_v_*)"
    assert Location.parse("mongodb://h/").database_prefix is None
    for bad in ("mongodb://h/*", "mongodb://h/a.b*", "mongodb://h/" + "x" * 63 + "*"):
        with pytest.raises(UsageError, match="prefix"):
            Location.parse(bad)


def test_scratch_of_a_whole_instance_is_the_instance_under_a_prefix() -> None:
    assert scratch_prefix("verify_1a2b3c") == "dbfleet_scratch_verify_1a2b3c_"
    long = scratch_prefix("a-label-much-longer-than-sixteen")
    assert long.startswith("dbfleet_scratch_") and len(long) == len("dbfleet_scratch_") + 13
    assert scratch_prefix("bad.label") != "dbfleet_scratch_bad.label_"
    assert scratch_prefix("bad.label") != scratch_prefix("bad/label")
    whole = MongoDBEngine(DatabaseConfig(engine="mongodb", url="mongodb://u@h:1/?tls=false"))
    config = whole.scratch("drill_abcdef")
    assert config.url == "mongodb://u@h:1/dbfleet_scratch_drill_abcdef_*?tls=false"
    scratch = MongoDBEngine(config)
    with pytest.raises(UsageError, match="scratch location itself"):
        scratch.scratch("again")
    # keys name the source's databases; only prefixed user databases are covered
    assert scratch._key(("dbfleet_scratch_drill_abcdef_shop", "orders")) == "shop.orders"
    assert scratch._covered(("dbfleet_scratch_drill_abcdef_shop", "orders"))
    assert not scratch._covered(("shop", "orders"))
    assert not scratch._covered(("dbfleet_scratch_drill_abcdef_shop", "system.views"))
    assert whole._covered(("shop", "orders")) and whole._key(("shop", "orders")) == "shop.orders"
    assert not whole._covered(("dbfleet_scratch_drill_abcdef_shop", "orders"))
    db = MongoDBEngine(DatabaseConfig(engine="mongodb", url="mongodb://h/shop"))
    assert db.scratch("verify_1").url == "mongodb://h/shop_dbfleet_verify_1"


def test_restore_namespaces() -> None:
    names = ["shop.orders", "shop.system.views", "shop.a.b"]
    assert restore_namespaces(names, "shop", ()) == [("shop", "a.b"), ("shop", "orders")]
    assert restore_namespaces(names, "shop", ("a.b",)) == [("shop", "a.b")]
    assert restore_namespaces(["x.c", "y.c"], None, ("y.c",)) == [("y", "c")]
    with pytest.raises(UsageError, match="not in the backup: nope"):
        restore_namespaces(names, "shop", ("nope",))


# -- tools and the password file --------------------------------------------------


def test_tools_dir_then_env_then_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "env" / "mongodump"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.setenv("DBFLEET_MONGODB_TOOLS", str(tool.parent))
    assert find_mongo_tool("mongodump", None) == str(tool)
    with pytest.raises(ToolMissingError, match="options.tools_dir") as failure:
        find_mongo_tool("mongodump", str(tmp_path))
    assert "mongodb-database-tools" in str(failure.value)
    monkeypatch.delenv("DBFLEET_MONGODB_TOOLS")
    with pytest.raises(ToolMissingError, match="mongorestore not found"):
        find_mongo_tool("mongorestore", None)


def test_password_file_is_private_and_removed() -> None:
    with tool_config("s3cr:et 'x'") as args:
        assert args[0] == "--config"
        path = args[1]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert yaml.safe_load(Path(path).read_text()) == {"password": "s3cr:et 'x'"}
    assert not os.path.exists(path)
    with tool_config(None) as args:
        assert args == []


# -- the archive parser -----------------------------------------------------------


def _archive(oplog: list[dict[str, Any]] | None = None) -> tuple[bytes, list[bytes]]:
    meta = {
        "indexes": [{"v": 2, "key": {"_id": 1}, "name": "_id_"},
                    {"v": 2, "key": {"b": 1, "a": -1}, "name": "b_1_a_-1", "unique": True}],
        "options": {"capped": True, "size": 4096},
    }  # fmt: skip
    docs = [bson.encode({"_id": i, "v": "x" * i}) for i in range(5)]
    parts = [MAGIC, bson.encode({"version": "0.1", "server_version": "7.0", "tool_version": "t"})]
    for coll, kind in (("c", ""), ("v", "view")):
        parts.append(bson.encode({"db": "shop", "collection": coll, "type": kind,
                                  "metadata": bson.json_util.dumps(meta), "size": 0}))  # fmt: skip
    parts.append(TERM)
    header = bson.encode({"db": "shop", "collection": "c", "EOF": False, "CRC": 0})
    # the collection's documents in two segments, as parallel dumps interleave them
    parts += [header, *docs[:2], TERM, header, *docs[2:], TERM]
    parts += [bson.encode({"db": "shop", "collection": "c", "EOF": True, "CRC": 0}), TERM]
    if oplog is not None:
        parts.append(bson.encode({"db": "", "collection": "oplog", "EOF": False, "CRC": 0}))
        parts += [bson.encode(entry) for entry in oplog]
        parts.append(TERM)
    return b"".join(parts), docs


@pytest.mark.parametrize("piece", [1, 7, 1 << 20])
def test_tap_counts_digests_and_reads_metadata_in_any_pieces(piece: int) -> None:
    data, docs = _archive()
    tap = ArchiveTap()
    for start in range(0, len(data), piece):
        tap.feed(data[start : start + piece])
    summary = tap.finish()
    entry = summary.collections[("shop", "c")]
    expected = sum(int.from_bytes(blake3(d).digest(), "big") for d in docs) % (1 << 256)
    assert entry["count"] == 5 and entry["digest"] == f"{expected:064x}"
    assert entry["indexes"] == [
        '_id_ {"key":[["_id",1]]}',
        'b_1_a_-1 {"key":[["b",1],["a",-1]],"unique":true}',
    ]
    assert entry["options"] == '{"capped":true,"size":4096}'
    assert summary.views == [("shop", "v")] and ("shop", "v") not in summary.collections
    assert summary.last_oplog is None and summary.oplog_entries == 0
    assert summary.header["server_version"] == "7.0"


def test_tap_reports_the_last_oplog_timestamp() -> None:
    oplog = [{"ts": bson.Timestamp(1700000000 + i, i + 1), "op": "i", "ns": "shop.c"}
             for i in range(3)]  # fmt: skip
    data, _ = _archive(oplog)
    tap = ArchiveTap()
    tap.feed(data)
    summary = tap.finish()
    assert summary.last_oplog == {"t": 1700000002, "i": 3} and summary.oplog_entries == 3
    assert ("", "oplog") not in summary.collections


def test_tap_refuses_broken_archives() -> None:
    data, _ = _archive()
    with pytest.raises(ArchiveError, match="magic"):
        ArchiveTap().feed(b"PK\x03\x04" + data)
    tap = ArchiveTap()
    tap.feed(data[:-7])
    with pytest.raises(ArchiveError, match="ends"):
        tap.finish()
    with pytest.raises(ArchiveError, match="empty"):
        ArchiveTap().finish()


def test_shape_ignores_what_differs_between_copies() -> None:
    dumped = collection_shape(
        [{"v": 1, "ns": "a.c", "key": {"x": 1.0}, "name": "x_1", "background": True}],
        {"capped": True, "size": 100, "uuid": "1234"},
    )
    live = collection_shape(
        [{"v": 2, "key": {"x": 1}, "name": "x_1"}], {"size": 100.0, "capped": True}
    )
    assert dumped == live
