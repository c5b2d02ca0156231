"""docs/metrics.md lists every exported metric with its type and labels,
and every alert the shipped rules define."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from dbfleet.observe.metric_names import SPECS

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "metrics.md").read_text()


def test_every_metric_is_documented_with_type_and_labels() -> None:
    rows = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(r"^\| `(dbfleet_[a-z_]+)` \| (\w+) \| ([^|]*) \|", DOC, re.M)
    }
    for spec in SPECS.values():
        assert spec.exposed in rows, spec.exposed
        kind, labels = rows[spec.exposed]
        assert kind == spec.type, spec.exposed
        assert re.findall(r"`(\w+)`", labels) == list(spec.labels), spec.exposed
    assert set(rows) == {s.exposed for s in SPECS.values()}


def test_every_alert_is_documented() -> None:
    rules = yaml.safe_load((ROOT / "contrib" / "prometheus" / "dbfleet-alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert f"| `{rule['alert']}` |" in DOC, rule["alert"]


def test_naming_rules() -> None:
    for spec in SPECS.values():
        assert spec.name.startswith("dbfleet_")
        assert not spec.name.endswith("_total"), "counters are named without _total"
        assert spec.type == "counter" or not spec.exposed.endswith("_total")
        assert "type" not in spec.labels
        if "timestamp" in spec.name:
            assert spec.name.endswith("_timestamp_seconds")
