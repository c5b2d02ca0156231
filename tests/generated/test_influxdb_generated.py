"""Generated InfluxDB 1.x databases through backup -> restore -> compare ->
verify: float extremes (largest, smallest subnormal, -0), int64 extremes,
strings with unicode, quotes, backslashes and newlines, booleans; tags and
measurements with odd names; several retention policies with different
shard durations, and timestamps from 1677 to 2262, so that series spread
over several shard groups.

Source and restored copies are compared through the server's HTTP API (raw
``SELECT * ... GROUP BY *`` of every measurement), independently of
dbfleet's fingerprint; then ``verify`` must pass, subset restores of the
first, middle and last measurement must hold exactly that one, and one
changed value in the restored copy must make the fingerprint comparison
name exactly its measurement.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.influxdb.api import ALL_TIME
from dbfleet.engines.registry import engine_for
from dbfleet.operations.common import SnapshotSource
from dbfleet.operations.restore import verify_snapshot
from tests.conftest import generated_examples
from tests.integration.fixtures_influxdb import InfluxServer
from tests.integration.verify_kit import backup_db, inventory_for

MIN_TIME, MAX_TIME = -9223372036854775806, 9223372036854775806
HOUR = 3600 * 10**9
BASE = 1704067200 * 10**9  # 2024-01-01
MAX_FLOAT = 1.7976931348623157e308
ODD_NAMES = ["cpu load", "m,comma", "ünï☃", 'quote"d', "back\\slash", "a=b", "x.y", "_"]
SHARD_DURATIONS = ["1h", "1d", "7d", "52w"]
FIELD_TYPES = ("float", "integer", "string", "boolean")


def esc_key(name: str) -> str:
    """A tag key/value or field key in line protocol."""
    return name.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def esc_measurement(name: str) -> str:
    return name.replace(",", "\\,").replace(" ", "\\ ")


def field_literal(kind: str, value: Any) -> str:
    if kind == "float":
        return repr(float(value))
    if kind == "integer":
        return f"{value}i"
    if kind == "boolean":
        return "true" if value else "false"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Measurement:
    rp: str
    name: str
    fields: dict[str, str]  # name -> type
    points: list[tuple[dict[str, str], int, dict[str, Any]]] = field(default_factory=list)

    @property
    def table(self) -> str:
        return f"{self.rp}.{self.name}"

    def lines(self) -> list[str]:
        out = []
        for tags, time, values in self.points:
            key = esc_measurement(self.name) + "".join(
                f",{esc_key(k)}={esc_key(v)}" for k, v in sorted(tags.items())
            )
            body = ",".join(
                f"{esc_key(k)}={field_literal(self.fields[k], v)}" for k, v in values.items()
            )
            out.append(f"{key} {body} {time}")
        return out


@dataclass
class Case:
    policies: dict[str, str]  # name -> shard duration (all keep data forever)
    measurements: list[Measurement]


def values_of(kind: str) -> st.SearchStrategy[Any]:
    if kind == "float":
        extremes = [MAX_FLOAT, -MAX_FLOAT, 5e-324, -0.0, 0.0, 1e-300]
        return st.sampled_from(extremes) | st.floats(allow_nan=False, allow_infinity=False)
    if kind == "integer":
        return st.sampled_from([-(2**63), 2**63 - 1, 0]) | st.integers(-(2**63), 2**63 - 1)
    if kind == "boolean":
        return st.booleans()
    odd = st.sampled_from(["", 'say "hi"', "back\\slash", "two\nlines", "☃ ünï", "x" * 60_000])
    return odd | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


NAMES = st.sampled_from(ODD_NAMES) | st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True).filter(
    lambda n: n != "time"  # InfluxDB's own column
)
TAG_VALUES = st.sampled_from(["a b", "c,d", "e=f", "ü", "q\"uote"]) | st.from_regex(
    r"[a-z0-9]{1,4}", fullmatch=True
)
TIMES = st.sampled_from([MIN_TIME, MAX_TIME, 0]) | st.integers(BASE, BASE + 24 * 30 * HOUR)


@st.composite
def measurements(draw: st.DrawFn, rp: str, name: str) -> Measurement:
    fields = draw(st.dictionaries(NAMES, st.sampled_from(FIELD_TYPES), min_size=1, max_size=3))
    tag_keys = draw(st.lists(NAMES, max_size=2, unique=True).filter(
        lambda keys: not set(keys) & set(fields)))  # fmt: skip
    measurement = Measurement(rp, name, fields)
    seen: set[tuple[Any, ...]] = set()
    for _ in range(draw(st.integers(1, 6))):
        tags = {k: draw(TAG_VALUES) for k in tag_keys if draw(st.booleans())}
        time = draw(TIMES)
        key = (tuple(sorted(tags.items())), time)
        if key in seen:  # same series and time: one point
            continue
        seen.add(key)
        chosen = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, unique=True))
        measurement.points.append((tags, time, {f: draw(values_of(fields[f])) for f in chosen}))
    return measurement


@st.composite
def cases(draw: st.DrawFn) -> Case:
    extra = draw(st.lists(st.sampled_from(["rp two", "fast", "löng"]), max_size=2, unique=True))
    policies = {"autogen": draw(st.sampled_from(SHARD_DURATIONS))}
    policies |= {rp: draw(st.sampled_from(SHARD_DURATIONS)) for rp in extra}
    tables = draw(st.lists(st.tuples(st.sampled_from(sorted(policies)), NAMES), min_size=1,
                           max_size=4, unique=True))  # fmt: skip
    return Case(policies, [draw(measurements(rp, name)) for rp, name in tables])


def _pinned() -> Case:
    """Every field type at its extremes, odd names, three policies, times
    from 1677 to 2262 (several shard groups)."""
    every = Measurement("autogen", "m,comma", {"f": "float", "i": "integer", "s": "string",
                                                "b": "boolean"})  # fmt: skip
    every.points = [
        ({"t k": "v=1,2"}, MIN_TIME, {"f": -MAX_FLOAT, "i": -(2**63), "s": "", "b": False}),
        ({"t k": "ü"}, MAX_TIME, {"f": MAX_FLOAT, "i": 2**63 - 1, "s": "two\nlines \"q\" \\"}),
        ({}, 0, {"f": -0.0, "s": "☃" * 1000, "b": True}),
        ({}, BASE, {"f": 5e-324, "i": 0}),
    ]
    odd = Measurement("rp two", "back\\slash", {"cpu load": "float"})
    odd.points = [({"a=b": "c d"}, BASE + i * 25 * HOUR, {"cpu load": i / 3}) for i in range(4)]
    empty_rp_point = Measurement("löng", 'quote"d', {"n": "integer"},
                                 [({}, BASE + 1, {"n": 1})])  # fmt: skip
    return Case({"autogen": "7d", "rp two": "1d", "löng": "52w"}, [every, odd, empty_rp_point])


def _create(server: InfluxServer, db: str, case: Case) -> None:
    server.query(f"CREATE DATABASE {ident(db)}")
    for rp, shard in case.policies.items():
        verb = "ALTER" if rp == "autogen" else "CREATE"
        server.query(f"{verb} RETENTION POLICY {ident(rp)} ON {ident(db)} DURATION INF "
                     f"REPLICATION 1 SHARD DURATION {shard}")  # fmt: skip
    for m in case.measurements:
        server.write(db, m.lines(), rp=m.rp)


def _rows(server: InfluxServer, db: str, table: str) -> list[dict[str, Any]]:
    """Every series with its points; tag keys that the measurement has in
    other series (or other retention policies) show as "", i.e. absent."""
    rp, name = table.split(".", 1)
    series = server.query(f"SELECT * FROM {ident(rp)}.{ident(name)} WHERE {ALL_TIME} GROUP BY *",
                          db)  # fmt: skip
    for s in series:
        s["tags"] = {k: v for k, v in (s.get("tags") or {}).items() if v}
    return series


def _one_measurement_in_two_policies() -> Case:
    """Found by the deep profile: SHOW FIELD KEYS without FROM answers for
    the default policy only, so restoring "rp two.cpu load" alone mismatched
    (and the default policy's tag key shows as "" in the other's series)."""
    return Case({"autogen": "1h", "rp two": "1h"}, [
        Measurement("autogen", "cpu load", {"a": "float"},
                    [({"m,comma": "a b"}, MIN_TIME, {"a": MAX_FLOAT})]),
        Measurement("rp two", "cpu load", {"cpu load": "float"},
                    [({}, MIN_TIME, {"cpu load": MAX_FLOAT})]),
    ])  # fmt: skip


@settings(max_examples=generated_examples(4))
@given(case=cases())
@example(case=_pinned())
@example(case=_one_measurement_in_two_policies())
def test_generated_databases_round_trip(
    case: Case, influx_server: InfluxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"dbfleet_it_gen_{secrets.token_hex(4)}"
    try:
        _round_trip(case, influx_server, db, monkeypatch)
    finally:
        for name in influx_server.databases():
            if name.startswith(db):
                influx_server.drop_database(name)


def _round_trip(
    case: Case, server: InfluxServer, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _create(server, db, case)
    tables = sorted({m.table for m in case.measurements})
    source = engine_for(server.config(db))
    repos = inventory_for(source.config, monkeypatch)
    _, repo, snapshot = backup_db(repos)
    expected = snapshot.fingerprint
    assert expected is not None and sorted(expected["tables"]) == tables
    written = {t: sum(len(p[2]) for m in case.measurements if m.table == t for p in m.points)
               for t in tables}  # fmt: skip
    assert {t: v["rows"] for t, v in expected["tables"].items()} == written

    target = engine_for(source.target(f"{db}_rt"))
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    for table in tables:
        assert _rows(server, f"{db}_rt", table) == _rows(server, db, table), table
    assert compare_fingerprints(expected, target.fingerprint()) == []
    verified = verify_snapshot(repos, "db:latest")
    assert verified.ok, verified.differences

    for i, table in enumerate(dict.fromkeys([tables[0], tables[len(tables) // 2], tables[-1]])):
        subset = engine_for(source.target(f"{db}_sub{i}"))
        subset.restore(SnapshotSource(repo, snapshot), RestoreOptions(tables=(table,)))
        assert sorted(subset.fingerprint()["tables"]) == [table]
        assert compare_fingerprints(expected, subset.fingerprint(), (table,)) == []
        assert _rows(server, f"{db}_sub{i}", table) == _rows(server, db, table), table

    # One value of one point overwritten (same series and time). In a shard
    # group that starts before the earliest time InfluxDB can represent
    # (1677-09-21), influxd restore wraps the group's start to 2262, and a
    # write there lands in a new group beside the restored point: two values
    # then (rows + 1), still named by the fingerprint.
    changed = case.measurements[0]
    tags, time, values = changed.points[0]
    name, value = next(iter(values.items()))
    kind = changed.fields[name]
    new = {"float": lambda v: 1.5 if v != 1.5 else 2.5, "integer": lambda v: v ^ 1,
           "string": lambda v: v + "x", "boolean": lambda v: not v}[kind](value)  # fmt: skip
    edit = Measurement(changed.rp, changed.name, changed.fields, [(tags, time, {name: new})])
    server.write(f"{db}_rt", edit.lines(), rp=changed.rp)
    (difference,) = compare_fingerprints(expected, target.fingerprint())
    assert difference.startswith(f"{changed.table}: ")
