"""Weaviate's data types for the generated-data suite: collections with
properties of every data type (nested objects, cross-references), legacy or
named vectors, multi-tenancy, and Hypothesis strategies for objects."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

BEACON = "weaviate://localhost/"
PRIMITIVES = ("text", "int", "number", "boolean", "date", "uuid")
SCALARS = (*PRIMITIVES, "geoCoordinates", "phoneNumber", "blob")
ODD_PROPERTY_NAMES = ["_under", "camelCase", "UPPER", "a1_2", "x" * 200, "n"]
TENANT_NAMES = ["tenant-A", "t_1", "Z", "9lives"]
MAX_SAFE = 2**53  # numbers travel as JSON doubles


def _dates() -> st.SearchStrategy[str]:
    offsets = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                               timezone(timedelta(hours=-11))])  # fmt: skip
    moments = st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=offsets)
    pinned = st.sampled_from(["0001-01-02T00:00:00Z", "9999-12-30T23:59:59.999999Z",
                              "2024-02-29T12:00:00.5+05:30", "1970-01-01T00:00:00Z"])  # fmt: skip
    return pinned | moments.map(lambda d: d.isoformat())


def values_of(data_type: str) -> st.SearchStrategy[Any]:
    base = data_type.removesuffix("[]")
    if base == "text":
        odd = st.sampled_from(['say "hi"', "two\nlines", "☃ ünï", "back\\slash", "x" * 5000])
        one: st.SearchStrategy[Any] = odd | st.text(
            alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
    elif base == "int":
        one = st.sampled_from([-MAX_SAFE, MAX_SAFE, 0, -1]) | st.integers(-MAX_SAFE, MAX_SAFE)
    elif base == "number":
        extremes = [1.7976931348623157e308, -1.7976931348623157e308, 5e-324, 0.5, -2.25]
        one = st.sampled_from(extremes) | st.floats(allow_nan=False, allow_infinity=False)
    elif base == "boolean":
        one = st.booleans()
    elif base == "date":
        one = _dates()
    elif base == "uuid":
        one = st.uuids().map(str)
    elif base == "geoCoordinates":
        one = st.builds(lambda la, lo: {"latitude": la, "longitude": lo},
                        st.sampled_from([-90.0, 90.0, 0.0]) | st.floats(-90, 90),
                        st.sampled_from([-180.0, 180.0]) | st.floats(-180, 180))  # fmt: skip
    elif base == "phoneNumber":
        one = st.sampled_from([{"input": "+49 30 1234567"},
                               {"input": "030 1234567", "defaultCountry": "de"},
                               {"input": "(555) 010-9999", "defaultCountry": "us"}])  # fmt: skip
    elif base == "blob":
        one = st.binary(min_size=1, max_size=40).map(lambda b: base64.b64encode(b).decode())
    else:
        raise AssertionError(data_type)
    return st.lists(one, max_size=3) if data_type.endswith("[]") else one


@dataclass
class Property:
    name: str
    data_type: str  # "text", "int[]", "object", "object[]", or a collection (reference)
    nested: list[Property] = field(default_factory=list)

    @property
    def is_reference(self) -> bool:
        return self.data_type[:1].isupper()

    def config(self, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name,
                               "dataType": [prefix + self.data_type if self.is_reference
                                            else self.data_type]}  # fmt: skip
        if self.nested:
            out["nestedProperties"] = [p.config(prefix) for p in self.nested]
        return out

    def values(self) -> st.SearchStrategy[Any]:
        if self.data_type in ("object", "object[]"):
            one = st.fixed_dictionaries({p.name: p.values() for p in self.nested})
            return st.lists(one, min_size=1, max_size=2) if self.data_type == "object[]" else one
        return values_of(self.data_type)


@dataclass
class Collection:
    name: str
    properties: list[Property]
    vectors: dict[str, int]  # name ("" = the legacy unnamed vector) -> dimensions
    tenants: list[str]
    objects: list[dict[str, Any]] = field(default_factory=list)
    """Each: id, tenant, properties (references as target indexes), vectors."""

    def config(self, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "class": prefix + self.name,
            "properties": [p.config(prefix) for p in self.properties if not p.is_reference],
        }
        if "" in self.vectors:
            out |= {"vectorizer": "none", "vectorIndexConfig": {"distance": "cosine"}}
        else:
            out["vectorConfig"] = {
                name: {"vectorizer": {"none": {}},
                       "vectorIndexType": "flat" if i % 2 else "hnsw"}
                for i, name in enumerate(self.vectors)
            }  # fmt: skip
            if not self.vectors:
                out["vectorConfig"] = {"v": {"vectorizer": {"none": {}}}}
        if self.tenants:
            out["multiTenancyConfig"] = {"enabled": True}
        return out

    def references(self) -> list[Property]:
        return [p for p in self.properties if p.is_reference]


def nested_properties(depth: int = 0) -> st.SearchStrategy[list[Property]]:
    leaf = st.sampled_from([*PRIMITIVES, "text[]", "int[]", "number[]"])
    kinds = leaf if depth else leaf | st.sampled_from(["object"])
    names = st.from_regex(r"[a-z][a-zA-Z0-9_]{0,6}", fullmatch=True)

    @st.composite
    def build(draw: st.DrawFn) -> list[Property]:
        chosen = draw(st.lists(st.tuples(names, kinds), min_size=1, max_size=3,
                               unique_by=lambda t: t[0].lower()))  # fmt: skip
        out = []
        for name, kind in chosen:
            nested = draw(nested_properties(depth + 1)) if kind == "object" else []
            out.append(Property(name, kind, nested))
        return out

    return build()


def vector(dims: int) -> st.SearchStrategy[list[float]]:
    component = st.floats(-1e6, 1e6, width=32, allow_subnormal=False) | st.sampled_from(
        [0.0, -0.0, 1.0, 3.4028234663852886e38, -3.4028234663852886e38])
    return st.lists(component, min_size=dims, max_size=dims).filter(lambda v: any(v))


def beacon(prefix: str, collection: str, object_id: str) -> dict[str, str]:
    return {"beacon": f"{BEACON}{prefix}{collection}/{object_id}"}


def object_id(collection: str, i: int, tenant: str | None) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{collection}/{tenant}/{i}"))
