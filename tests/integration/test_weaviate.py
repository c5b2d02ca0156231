"""The Weaviate engine against the real test server (scripts/servers/weaviate.sh).

A dbfleet "database" on Weaviate is a collection-name prefix (``url:
http://host:8080/Prefix_``; no path: the whole instance)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dbfleet.catalog import Catalog
from dbfleet.cli.drill import drill_status
from dbfleet.config import DatabaseConfig, parse_inventory
from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.registry import engine_for
from dbfleet.engines.weaviate import WeaviateEngine
from dbfleet.engines.weaviate.format import (
    Record,
    encode_header,
    encode_trailer,
    normalize_schema,
    read_stream,
    vectors_of,
)
from dbfleet.engines.weaviate.restore import SCHEMA_FORMAT
from dbfleet.errors import EngineError, UsageError
from dbfleet.operations.backup import backup_many
from dbfleet.operations.common import Repositories, SnapshotSource
from dbfleet.operations.drill import drill_targets, exit_code, record
from dbfleet.operations.repository import init_repository
from dbfleet.repo import Repository, Snapshot, iter_stream
from tests.integration.conftest import FAST_KDF, BackupFn
from tests.integration.fixtures_weaviate import (
    ARTICLES,
    AUTHORS,
    TENANTS,
    WeaviateServer,
    create_sample,
    oid,
)
from tests.integration.verify_kit import backup_and_verify

NewPrefix = Callable[[str], str]
SECRET_ENV = "DBFLEET_TEST_WEAVIATE_KEY"


@pytest.fixture
def source(weaviate_server: WeaviateServer, weaviate_prefixes: NewPrefix) -> str:
    prefix = weaviate_prefixes("src")
    create_sample(weaviate_server, prefix)
    return prefix


def _engine(config: DatabaseConfig) -> WeaviateEngine:
    engine = engine_for(config)
    assert isinstance(engine, WeaviateEngine)
    return engine


def _restore(repo: Repository, snapshot: Snapshot, config: DatabaseConfig, **opts: Any) -> None:
    _engine(config).restore(SnapshotSource(repo, snapshot), RestoreOptions(**opts))


def _schemas(server: WeaviateServer, prefix: str) -> dict[str, dict[str, Any]]:
    """Normalized configs of the prefix's collections, by name after it."""

    def rename(name: str) -> str:
        return name.removeprefix(prefix)

    return {
        name[len(prefix) :]: normalize_schema(config, rename)
        for name, config in server.classes().items()
        if name.startswith(prefix)
    }


def _get(server: WeaviateServer, collection: str, uuid: str, tenant: str = "") -> Any:
    query = f"?include=vector{'&tenant=' + tenant if tenant else ''}"
    return server.request("GET", f"/v1/objects/{collection}/{uuid}{query}")


def test_round_trip_under_another_prefix(
    weaviate_server: WeaviateServer, source: str, weaviate_prefixes: NewPrefix,
    repo: Repository, backup: BackupFn,
) -> None:  # fmt: skip
    engine = _engine(weaviate_server.config(source))
    meta, snapshot = backup(engine)
    fp = meta.fingerprint
    assert fp is not None
    assert set(fp["tables"]) == {"Article", "Author", "Review"}
    assert fp["tables"]["Article"]["objects"] == ARTICLES
    assert fp["tables"]["Author"]["objects"] == AUTHORS
    review = fp["tables"]["Review"]
    assert review["objects"] == sum(TENANTS.values())
    assert {t: v["objects"] for t, v in review["tenants"].items()} == TENANTS
    assert meta.options["objects"] == ARTICLES + AUTHORS + sum(TENANTS.values())
    assert meta.options["backup_module_used"] is False
    assert meta.server_version and meta.server_version[0].isdigit()
    assert [s.name for s in snapshot.streams] == [
        "schema", "objects/Article", "objects/Author", "objects/Review",
    ]  # fmt: skip
    # vectors are packed float32: 8 dims of an Article take 32 bytes, not decimal text
    header, records = read_stream(iter_stream(repo, snapshot, "objects/Article"))
    assert header["collection"] == "Article"
    shapes = {(name, tuple(shape), len(data)) for r in records for name, shape, data in r.vectors}
    assert shapes == {("", (8,), 32)}
    schema = json.loads(b"".join(iter_stream(repo, snapshot, "schema")))
    assert schema["prefix"] == source and len(schema["collections"]) == 3

    target = weaviate_prefixes("rt")
    restored = _engine(engine.target(target))
    _restore(repo, snapshot, restored.config)
    assert compare_fingerprints(fp, restored.fingerprint()) == []
    # schema equal: vector index config, named vectors, multi-tenancy, references
    assert _schemas(weaviate_server, target) == _schemas(weaviate_server, source)
    after = weaviate_server.classes()
    assert after[f"{target}Review"]["multiTenancyConfig"]["enabled"] is True
    assert after[f"{target}Article"]["vectorIndexConfig"]["efConstruction"] == 64
    assert set(after[f"{target}Author"]["vectorConfig"]) == {"title", "body"}
    by_name = {p["name"]: p for p in after[f"{target}Article"]["properties"]}
    assert by_name["writtenBy"]["dataType"] == [f"{target}Author"]
    tenants = weaviate_server.request("GET", f"/v1/schema/{target}Review/tenants")
    assert sorted(t["name"] for t in tenants) == sorted(TENANTS)
    # object by object: properties, the reference (to the restored copy), vectors
    a_src = _get(weaviate_server, f"{source}Article", oid("article", 7))
    a_dst = _get(weaviate_server, f"{target}Article", oid("article", 7))
    assert a_dst["vector"] == a_src["vector"]
    beacon = a_dst["properties"].pop("writtenBy")[0]["beacon"]
    assert beacon == f"weaviate://localhost/{target}Author/{oid('author', 7)}"
    a_src["properties"].pop("writtenBy")
    assert a_dst["properties"] == a_src["properties"]
    assert a_dst["properties"]["location"]["latitude"] == pytest.approx(52.507)
    w_src = _get(weaviate_server, f"{source}Author", oid("author", 3))
    w_dst = _get(weaviate_server, f"{target}Author", oid("author", 3))
    assert w_dst["vectors"] == w_src["vectors"] and set(w_dst["vectors"]) == {"title", "body"}
    r_dst = _get(weaviate_server, f"{target}Review", oid("review-tenantB", 4), "tenantB")
    assert r_dst["properties"]["text"] == "review 4 of tenantB"
    # a second backup of unchanged data stores (almost) nothing new
    _, again = backup(engine)
    assert again.added_bytes < snapshot.added_bytes / 10


def test_subset_restore_of_one_collection(
    weaviate_server: WeaviateServer, source: str, weaviate_prefixes: NewPrefix,
    repo: Repository, backup: BackupFn,
) -> None:  # fmt: skip
    engine = _engine(weaviate_server.config(source))
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    target = _engine(engine.target(weaviate_prefixes("sub")))
    _restore(repo, snapshot, target.config, tables=("Review",))
    restored = target.fingerprint()
    assert set(restored["tables"]) == {"Review"}
    assert compare_fingerprints(meta.fingerprint, restored, ("Review",)) == []
    # Article references Author: alone it cannot be restored, and nothing is created
    with pytest.raises(UsageError, match="Author"):
        _restore(repo, snapshot, target.config, tables=("Article",))
    assert set(target.fingerprint()["tables"]) == {"Review"}
    _restore(repo, snapshot, target.config, tables=("Article", "Author"))
    assert compare_fingerprints(meta.fingerprint, target.fingerprint()) == []
    with pytest.raises(UsageError, match="not in the backup"):
        _restore(repo, snapshot, target.config, tables=("Nope",))


def test_restore_over_existing_needs_clean_and_changes_nothing(
    weaviate_server: WeaviateServer, source: str, repo: Repository, backup: BackupFn,
) -> None:  # fmt: skip
    engine = _engine(weaviate_server.config(source))
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    # restoring onto the source itself: every collection exists
    with pytest.raises(EngineError, match="already exist"):
        _restore(repo, snapshot, engine.config)
    assert compare_fingerprints(meta.fingerprint, engine.fingerprint()) == []
    weaviate_server.request("DELETE", f"/v1/objects/{source}Article/{oid('article', 1)}")
    assert compare_fingerprints(meta.fingerprint, engine.fingerprint()) != []
    # one collection replaced; its references point at the Author still there
    _restore(repo, snapshot, engine.config, tables=("Article",), clean=True)
    assert compare_fingerprints(meta.fingerprint, engine.fingerprint()) == []
    weaviate_server.request("DELETE", f"/v1/objects/{source}Review/{oid('review-tenantA', 3)}"
                            "?tenant=tenantA")  # fmt: skip
    assert compare_fingerprints(meta.fingerprint, engine.fingerprint()) != []
    _restore(repo, snapshot, engine.config, clean=True)
    assert compare_fingerprints(meta.fingerprint, engine.fingerprint()) == []


class _Source:
    """A hand-made snapshot in the engine's own format (``StreamSource``)."""

    def __init__(self, streams: dict[str, bytes]) -> None:
        self.streams = streams

    def stream_names(self) -> list[str]:
        return list(self.streams)

    def open_stream(self, name: str) -> Iterator[bytes]:
        data = self.streams[name]
        for i in range(0, len(data), 100):
            yield data[i : i + 100]


def test_a_failed_object_fails_the_restore_and_leaves_nothing(
    weaviate_server: WeaviateServer, weaviate_prefixes: NewPrefix
) -> None:
    config = {"class": "X_Things", "vectorizer": "none",
              "properties": [{"name": "n", "dataType": ["int"]}]}  # fmt: skip
    schema = {"format": SCHEMA_FORMAT, "server_version": "x", "prefix": "X_",
              "collections": [{"name": "Things", "config": config, "tenants": []}]}  # fmt: skip
    good = Record(oid("t", 1), None, {"n": 1}, vectors_of({"vector": [0.5, 0.25]}))
    bad = Record(oid("t", 2), None, {"n": "not a number"}, vectors_of({"vector": [1.0, 2.0]}))
    objects = (
        encode_header({"collection": "Things"}) + good.encode() + bad.encode() + encode_trailer(2)
    )
    source = _Source({"schema": json.dumps(schema).encode(), "objects/Things": objects})
    prefix = weaviate_prefixes("bad")
    engine = _engine(weaviate_server.config(prefix))
    with pytest.raises(EngineError, match=f"{prefix}Things failed at object {oid('t', 2)}"):
        engine.restore(source, RestoreOptions())
    assert f"{prefix}Things" not in weaviate_server.classes()
    # a truncated stream (no trailer) fails too
    source.streams["objects/Things"] = objects[: -len(encode_trailer(2))]
    with pytest.raises(EngineError, match="truncated"):
        engine.restore(source, RestoreOptions())
    assert f"{prefix}Things" not in weaviate_server.classes()


def test_backup_of_a_missing_prefix_or_unreachable_server_records_nothing(
    weaviate_server: WeaviateServer, weaviate_prefixes: NewPrefix, repo: Repository,
    backup: BackupFn,
) -> None:  # fmt: skip
    with pytest.raises(EngineError, match="no Weaviate collection starts with"):
        backup(_engine(weaviate_server.config(weaviate_prefixes("missing"))))
    with pytest.raises(EngineError, match="cannot reach Weaviate at 127.0.0.1:9"):
        backup(_engine(DatabaseConfig(engine="weaviate", url="http://127.0.0.1:9/Any_")))
    assert repo.list_snapshots() == []
    health = _engine(DatabaseConfig(engine="weaviate", url="http://127.0.0.1:9")).health()
    assert not health.ok and health.error and "cannot reach" in health.error


def test_api_key_never_shows(
    weaviate_server: WeaviateServer, source: str, monkeypatch: pytest.MonkeyPatch,
    repo: Repository, backup: BackupFn, capfd: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    key = f"wv-key-{secrets.token_hex(8)}"
    monkeypatch.setenv(SECRET_ENV, key)
    engine = _engine(weaviate_server.config(source, password_env=SECRET_ENV))
    # the anonymous test server refuses a key it does not know
    with pytest.raises(EngineError, match="HTTP 401") as refused:
        backup(engine)
    assert key not in str(refused.value) and f"${SECRET_ENV}" in str(refused.value)
    assert repo.list_snapshots() == []
    down = _engine(DatabaseConfig(engine="weaviate", url="http://127.0.0.1:9/A_",
                                  password_env=SECRET_ENV))  # fmt: skip
    with pytest.raises(EngineError) as info:
        down.fingerprint()
    assert key not in str(info.value)
    out, err = capfd.readouterr()
    assert key not in out + err


def test_health(weaviate_server: WeaviateServer, source: str, weaviate_prefixes: NewPrefix) -> None:
    health = _engine(weaviate_server.config(source)).health()
    assert health.ok, health.error
    assert health.version and health.details["collections"] == 3
    estimate = health.details["objects_estimate"]  # refreshed by the server in the background
    assert 0 <= estimate <= ARTICLES + AUTHORS + sum(TENANTS.values())
    assert health.details["backup_module_used"] is False
    missing = _engine(weaviate_server.config(weaviate_prefixes("nothing"))).health()
    assert not missing.ok and "no collection starts with" in (missing.error or "")
    whole = _engine(DatabaseConfig(engine="weaviate", url=weaviate_server.url)).health()
    assert whole.ok and whole.details["collections"] >= 3


def test_locations_and_configuration_errors(weaviate_server: WeaviateServer, source: str) -> None:
    engine = _engine(weaviate_server.config(source))
    scratch = _engine(engine.scratch("verify_ab12"))
    assert scratch.location.prefix == f"Dbfleet_verifyab12_{len(source)}_{source}"
    assert not engine.location.owns(scratch.location.prefix + "Article")
    whole = _engine(DatabaseConfig(engine="weaviate", url=weaviate_server.url))
    assert not whole.location.owns("Dbfleet_x_0_Article") and whole.location.owns("Article")
    with pytest.raises(UsageError, match="refusing to drop"):
        whole.drop()
    for url in ("http://h:8080/lower", "ftp://h", "http://u@h:8080", "http://h:8080/A?x=1"):
        with pytest.raises(UsageError):
            _engine(DatabaseConfig(engine="weaviate", url=url))
    with pytest.raises(UsageError, match="unknown weaviate option"):
        _engine(weaviate_server.config(source, options={"grpc_prot": 1}))
    with pytest.raises(UsageError, match="prefix"):
        engine.target("bad name")
    with pytest.raises(UsageError, match="page_size"):
        _engine(weaviate_server.config(source, options={"page_size": "many"}))


def test_drill(
    weaviate_server: WeaviateServer, source: str, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    monkeypatch.setenv("DBFLEET_TEST_WV_REPO_PW", "drill-weaviate")
    entry = weaviate_server.config(source).model_dump(mode="json", exclude_defaults=True)
    inventory = parse_inventory({
        "repositories": {"mem": {"url": f"memory://wv-{secrets.token_hex(6)}",
                                 "passphrase_env": "DBFLEET_TEST_WV_REPO_PW"}},
        "databases": {"wv": {**entry, "rto": "10m"}},
    })  # fmt: skip
    init_repository(inventory, "mem", kdf=FAST_KDF)
    repos = Repositories(inventory)
    (done,) = backup_many(repos, ["wv"])
    assert done.ok, done.error
    (result,) = drill_targets(repos, ["wv"])["wv"]
    print(f"\nDRILL weaviate: rto={result.rto_seconds}s restore={result.restore_seconds}s "
          f"bytes={result.bytes}")  # fmt: skip
    assert result.result == "pass", (result.reason, result.differences)
    assert result.tables_compared == 3 and result.within_objective is True
    assert result.scratch and "Dbfleet_drill" in result.scratch
    assert not [n for n in weaviate_server.classes() if n.startswith("Dbfleet_") and source in n]
    assert exit_code([result]) == 0
    with Catalog(tmp_path / "catalog.db") as cat:
        run = record(cat, "wv", [result], datetime.fromisoformat(result.started_at))
        (row,) = drill_status(inventory, cat)
    assert (row.database, row.result, row.run_id) == ("wv", "pass", run.id)


def test_whole_instance_stream_is_read_in_pages(
    weaviate_server: WeaviateServer, source: str, repo: Repository, backup: BackupFn,
) -> None:  # fmt: skip
    """A page size smaller than a collection walks the cursor over several
    pages and still reads every object exactly once."""
    engine = _engine(weaviate_server.config(source, options={"page_size": 7, "batch_size": 11}))
    meta, _ = backup(engine)
    assert meta.fingerprint is not None
    reference = _engine(weaviate_server.config(source)).fingerprint()
    assert compare_fingerprints(meta.fingerprint, reference) == []


def test_whole_instance_backup_restores_under_a_prefix_to_the_bare_instance_and_verifies(
    weaviate_empty_instance: WeaviateServer, repo: Repository, backup: BackupFn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """``url: http://host:8080`` (no prefix): the backup's prefix is "", and
    its property types (text, text[], ...) are not collections to rename
    (issue #17, defect 4). On a private instance: a whole-instance backup
    takes every collection of the server."""
    server = weaviate_empty_instance
    create_sample(server, "")  # Article, Author, Review: no prefix at all
    server.request("POST", "/v1/schema", {"class": "Empty", "vectorizer": "none",
                   "properties": [{"name": "note", "dataType": ["text[]"]}]})  # fmt: skip
    engine = _engine(DatabaseConfig(engine="weaviate", url=server.url))
    meta, snapshot = backup(engine)
    fp = meta.fingerprint
    assert fp is not None and sorted(fp["tables"]) == ["Article", "Author", "Empty", "Review"]
    assert fp["tables"]["Empty"]["objects"] == 0
    source_schemas = _schemas(server, "")
    # verify (the CLI's path): a scratch namespace Dbfleet_..._0_ on the same server
    _, verified = backup_and_verify(engine.config, monkeypatch)
    assert verified.ok, verified.differences
    assert verified.tables_compared == 4 and "Dbfleet_verify" in verified.scratch

    # under a prefix (restore --target Restored_): references to the restored copies
    restored = _engine(engine.target("Restored_"))
    _restore(repo, snapshot, restored.config)
    assert compare_fingerprints(fp, restored.fingerprint()) == []
    assert _schemas(server, "Restored_") == source_schemas
    by_name = {p["name"]: p for p in server.classes()["Restored_Article"]["properties"]}
    assert by_name["writtenBy"]["dataType"] == ["Restored_Author"]
    article = _get(server, "Restored_Article", oid("article", 3))
    assert [r["beacon"] for r in article["properties"]["writtenBy"]] == [
        f"weaviate://localhost/Restored_Author/{oid('author', 3)}",
        f"weaviate://localhost/Restored_Author/{oid('author', 0)}",
    ]
    mentor = _get(server, "Restored_Author", oid("author", AUTHORS - 1))["properties"]["mentor"]
    assert mentor[0]["beacon"] == f"weaviate://localhost/Restored_Author/{oid('author', 0)}"

    # subsets: the first collection (with the one it references), the middle, the last
    with pytest.raises(UsageError, match="Author"):
        _restore(repo, snapshot, engine.target("First_"), tables=("Article",))
    for prefix, tables in (("First_", ("Article", "Author")), ("Middle_", ("Empty",)),
                           ("Last_", ("Review",))):  # fmt: skip
        subset = _engine(engine.target(prefix))
        _restore(repo, snapshot, subset.config, tables=tables)
        assert sorted(subset.fingerprint()["tables"]) == sorted(tables)
        assert compare_fingerprints(fp, subset.fingerprint(), tables) == []

    # the bare instance, after deleting everything (restore --to http://host:8080)
    for name in server.classes():
        server.drop(name)
    _restore(repo, snapshot, engine.config)
    assert compare_fingerprints(fp, engine.fingerprint()) == []
    assert _schemas(server, "") == source_schemas
    beacon = _get(server, "Article", oid("article", 5))["properties"]["writtenBy"][0]["beacon"]
    assert beacon == f"weaviate://localhost/Author/{oid('author', 5)}"
