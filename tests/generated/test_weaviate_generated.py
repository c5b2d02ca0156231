"""Generated Weaviate collections through backup -> restore -> compare ->
verify: every property data type (text, int, number, boolean, date, uuid and
their arrays, geoCoordinates, phoneNumber, blob, nested object/object[]),
cross-references (to other collections and to itself), legacy and named
vectors, multi-tenancy, odd property names, empty collections; under a
prefix on the shared server, and as a whole instance (no prefix) on a
private one.

Source and restored objects are compared through the REST API (every object
with its vectors), independently of dbfleet's fingerprint; then ``verify``
must pass, subset restores of the first, middle and last collection (with
the collections they reference) must hold exactly those, and one changed
value in the restored copy must make the fingerprint comparison name
exactly its collection.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dbfleet.config import DatabaseConfig
from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.registry import engine_for
from dbfleet.operations.common import SnapshotSource
from dbfleet.operations.restore import verify_snapshot
from tests.conftest import generated_examples
from tests.generated.weaviate_schema import (
    BEACON,
    ODD_PROPERTY_NAMES,
    SCALARS,
    TENANT_NAMES,
    Collection,
    Property,
    beacon,
    nested_properties,
    object_id,
    vector,
)
from tests.integration.fixtures_weaviate import WeaviateServer
from tests.integration.verify_kit import backup_db, inventory_for

COLLECTION_NAMES = ["Alpha", "Beta_2", "Zed", "M", "Uber", "Q_q"]
LABEL = Property("label", "text")


@dataclass
class Case:
    collections: list[Collection]
    whole_instance: bool

    def ordered(self) -> list[Collection]:
        return sorted(self.collections, key=lambda c: c.name)

    def closure(self, name: str) -> tuple[str, ...]:
        """``name`` and every collection it references, transitively."""
        by_name = {c.name: c for c in self.collections}
        found, todo = {name}, [name]
        while todo:
            for ref in by_name[todo.pop()].references():
                if ref.data_type not in found:
                    found.add(ref.data_type)
                    todo.append(ref.data_type)
        return tuple(sorted(found))


@st.composite
def properties(draw: st.DrawFn, targets: list[str]) -> list[Property]:
    names = st.sampled_from(ODD_PROPERTY_NAMES) | st.from_regex(r"p[a-zA-Z0-9_]{0,5}",
                                                                fullmatch=True)  # fmt: skip
    kinds = st.sampled_from([*SCALARS, *(f"{t}[]" for t in SCALARS[:6]), "object", "object[]",
                             *targets])  # fmt: skip
    # Weaviate lowercases a property name's first letter (UPPER is uPPER)
    lowered = names.map(lambda n: n[:1].lower() + n[1:])
    chosen = draw(st.lists(st.tuples(lowered, kinds), max_size=5,
                           unique_by=lambda t: t[0].lower()))  # names compare without case
    out = []
    for name, kind in chosen:
        nested = draw(nested_properties()) if kind.startswith("object") else []
        out.append(Property(name, kind, nested))
    return [p for p in out if p.name.lower() != "label"]


@st.composite
def objects(draw: st.DrawFn, collection: Collection, others: dict[str, Collection],
            minimum: int = 0) -> None:  # fmt: skip
    for tenant in collection.tenants or [None]:
        for i in range(draw(st.integers(minimum, 4))):
            props = {}
            for prop in collection.properties:
                if prop.is_reference:
                    target = others[prop.data_type]
                    ids = [o["id"] for o in target.objects if o["tenant"] is None]
                    if ids:
                        props[prop.name] = draw(st.lists(st.sampled_from(ids), max_size=2))
                elif prop is LABEL or draw(st.booleans()):
                    props[prop.name] = draw(prop.values())
            vectors = {n: draw(vector(d)) for n, d in collection.vectors.items()}
            collection.objects.append({"id": object_id(collection.name, i, tenant),
                                       "tenant": tenant, "properties": props,
                                       "vectors": vectors})  # fmt: skip


@st.composite
def cases(draw: st.DrawFn) -> Case:
    names = draw(st.lists(st.sampled_from(COLLECTION_NAMES), min_size=1, max_size=3,
                          unique=True))  # fmt: skip
    collections: dict[str, Collection] = {}
    for i, name in enumerate(names):
        multi = i > 0 and draw(st.booleans())  # the first stays plain: it is changed last
        # references only to plain collections made before (or to itself)
        targets = [n for n, c in collections.items() if not c.tenants]
        props = draw(properties(targets + ([] if multi else [name])))
        if i == 0:
            props = [LABEL, *props]
        legacy = draw(st.booleans())
        dims = draw(st.dictionaries(st.sampled_from(["title", "body", "v_3"]),
                                    st.integers(1, 6), min_size=1, max_size=2))  # fmt: skip
        vectors = {"": draw(st.integers(1, 8))} if legacy else dims
        tenants = draw(st.lists(st.sampled_from(TENANT_NAMES), min_size=1, max_size=2,
                                unique=True)) if multi else []  # fmt: skip
        collection = Collection(name, props, vectors, tenants)
        collections[name] = collection
        draw(objects(collection, collections, minimum=1 if i == 0 else 0))
    return Case(list(collections.values()), draw(st.booleans()))


def _pinned(whole_instance: bool) -> Case:
    """Every data type, references between collections and to itself, named
    and legacy vectors, a multi-tenant and an empty collection."""
    every = [LABEL] + [Property(f"p_{t.replace('[]', 's')}", t) for t in
                       (*SCALARS, "text[]", "int[]", "number[]", "boolean[]", "date[]",
                        "uuid[]")]  # fmt: skip
    nested = [Property("n_text", "text"), Property("n_int", "int"), Property("n_obj", "object",
              [Property("deep", "date"), Property("deeps", "text[]")])]  # fmt: skip
    every += [Property("p_object", "object", nested), Property("p_objects", "object[]", nested)]
    alpha = Collection("Alpha", [*every, Property("self_ref", "Alpha")], {"": 4}, [])
    beta = Collection("Beta_2", [Property("x" * 200, "int"), Property("to_alpha", "Alpha")],
                      {"title": 3, "body": 2}, [])  # fmt: skip
    mt = Collection("M", [Property("_under", "number"), Property("to_alpha", "Alpha")],
                    {"": 2}, ["tenant-A", "9lives"])  # fmt: skip
    empty = Collection("Zed", [Property("camelCase", "text")], {"v_3": 3}, [])
    fill = _pinned_values()
    for c in (alpha, beta, mt):
        fill(c)
    return Case([alpha, beta, mt, empty], whole_instance)


def _pinned_values() -> Any:
    """Fixed objects for the pinned case: every property set, extremes."""
    values: dict[str, Any] = {
        "text": 'say "hi"\n☃', "int": 2**53, "number": 1.7976931348623157e308,
        "boolean": False, "date": "0001-01-02T00:00:00Z",
        "uuid": "00000000-0000-0000-0000-000000000000",
        "geoCoordinates": {"latitude": -90.0, "longitude": 180.0},
        "phoneNumber": {"input": "030 1234567", "defaultCountry": "de"}, "blob": "AAEC/w==",
        "text[]": ["", "x" * 5000], "int[]": [-(2**53), 0], "number[]": [5e-324, -0.5],
        "boolean[]": [True], "date[]": ["9999-12-30T23:59:59.999999Z"],
        "uuid[]": ["ffffffff-ffff-ffff-ffff-ffffffffffff"],
    }
    nested = {"n_text": "ünï", "n_int": -7,
              "n_obj": {"deep": "2024-02-29T12:00:00.5+05:30", "deeps": ["a", "b"]}}

    def fill(collection: Collection) -> None:
        for tenant in collection.tenants or [None]:
            for i in range(3):
                props: dict[str, Any] = {}
                for p in collection.properties:
                    if p.is_reference:
                        props[p.name] = [object_id(p.data_type, (i + 1) % 3, None)]
                    elif p.data_type == "object":
                        props[p.name] = nested
                    elif p.data_type == "object[]":
                        props[p.name] = [nested, nested]
                    else:
                        props[p.name] = values[p.data_type]
                vectors = {n: [0.25 * (i + 1)] * d for n, d in collection.vectors.items()}
                collection.objects.append({"id": object_id(collection.name, i, tenant),
                                           "tenant": tenant, "properties": props,
                                           "vectors": vectors})  # fmt: skip

    return fill


# -- the server --------------------------------------------------------------


def _create(server: WeaviateServer, prefix: str, case: Case) -> None:
    for c in case.collections:
        server.request("POST", "/v1/schema", c.config(prefix))
    for c in case.collections:
        for ref in c.references():
            server.request("POST", f"/v1/schema/{prefix}{c.name}/properties", ref.config(prefix))
        if c.tenants:
            server.request("POST", f"/v1/schema/{prefix}{c.name}/tenants",
                           [{"name": t} for t in c.tenants])  # fmt: skip
    batch, references = [], []
    for c in case.collections:
        refs = {p.name: p.data_type for p in c.references()}
        for o in c.objects:
            props = {k: v for k, v in o["properties"].items() if k not in refs}
            for k in refs.keys() & o["properties"].keys():
                for target in o["properties"][k]:
                    ref = {"from": f"{BEACON}{prefix}{c.name}/{o['id']}/{k}",
                           "to": beacon(prefix, refs[k], target)["beacon"]}  # fmt: skip
                    references.append({**ref, "tenant": o["tenant"]} if o["tenant"] else ref)
            item: dict[str, Any] = {"class": prefix + c.name, "id": o["id"], "properties": props}
            if o["tenant"]:
                item["tenant"] = o["tenant"]
            named = {k: v for k, v in o["vectors"].items() if k}
            if "" in o["vectors"]:
                item["vector"] = o["vectors"][""]
            if named:
                item["vectors"] = named
            batch.append(item)
    server.batch(batch)
    # after the objects: a reference's target must exist
    if references:
        results = server.request("POST", "/v1/batch/references", references)
        assert not [r for r in results if (r.get("result") or {}).get("errors")], results[:3]


def _objects(server: WeaviateServer, prefix: str, c: Collection) -> dict[str, Any]:
    """Every object of ``prefix + c.name`` as the server returns it, by id,
    with beacons named within the prefix and without server timestamps."""
    out = {}
    for tenant in c.tenants or [None]:
        query = f"?class={prefix}{c.name}&limit=1000&include=vector"
        for o in server.request("GET", "/v1/objects" + query + (f"&tenant={tenant}" if tenant
                                                                 else ""))["objects"]:  # fmt: skip
            props = o.get("properties") or {}
            for ref in c.references():
                for item in props.get(ref.name) or []:
                    item.pop("href", None)
                    item["beacon"] = item["beacon"].replace(BEACON + prefix, BEACON)
            out[o["id"]] = (tenant, props, o.get("vector"), o.get("vectors"))
    return out


@settings(max_examples=generated_examples(3))
@given(case=cases())
@example(case=_pinned(whole_instance=False))
@example(case=_pinned(whole_instance=True))
def test_generated_collections_round_trip(
    case: Case, weaviate_server: WeaviateServer, weaviate_private: WeaviateServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    server = weaviate_private if case.whole_instance else weaviate_server
    prefix = "" if case.whole_instance else f"Gen_{secrets.token_hex(3)}_"
    try:
        _round_trip(case, server, prefix, monkeypatch)
    finally:
        for name in server.classes():
            if case.whole_instance or name.startswith(prefix) or prefix in name:
                server.drop(name)


def _round_trip(
    case: Case, server: WeaviateServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _create(server, prefix, case)
    source = engine_for(DatabaseConfig(engine="weaviate", url=f"{server.url}/{prefix}"))
    repos = inventory_for(source.config, monkeypatch)
    _, repo, snapshot = backup_db(repos)
    expected = snapshot.fingerprint
    assert expected is not None
    assert sorted(expected["tables"]) == sorted(c.name for c in case.collections)
    for c in case.collections:
        assert expected["tables"][c.name]["objects"] == len(c.objects)

    target = engine_for(source.target(f"{prefix}Rt_"))
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    for c in case.collections:
        assert _objects(server, f"{prefix}Rt_", c) == _objects(server, prefix, c), c.name
    assert compare_fingerprints(expected, target.fingerprint()) == []
    verified = verify_snapshot(repos, "db:latest")
    assert verified.ok, verified.differences

    ordered = case.ordered()
    for i, c in enumerate(dict.fromkeys([ordered[0].name, ordered[len(ordered) // 2].name,
                                         ordered[-1].name])):  # fmt: skip
        tables = case.closure(c)
        subset = engine_for(source.target(f"{prefix}Sub{i}_"))
        subset.restore(SnapshotSource(repo, snapshot), RestoreOptions(tables=tables))
        assert sorted(subset.fingerprint()["tables"]) == list(tables)
        assert compare_fingerprints(expected, subset.fingerprint(), tables) == []

    changed = case.collections[0]
    first = changed.objects[0]
    server.request("PATCH", f"/v1/objects/{prefix}Rt_{changed.name}/{first['id']}",
                   {"properties": {"label": str(first["properties"]["label"]) + "x"}})  # fmt: skip
    (difference,) = compare_fingerprints(expected, target.fingerprint())
    assert difference.startswith(f"{changed.name}: ")
