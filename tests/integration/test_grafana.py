"""contrib/grafana/dbfleet.json: every expression names only metrics the
collector exports, and is valid PromQL (promtool checks each as a recording
rule, after Grafana's variables are replaced as Grafana would)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from dbfleet.observe.metric_names import SPECS
from tests.integration.test_metrics import promtool

DASHBOARD = Path(__file__).resolve().parents[2] / "contrib" / "grafana" / "dbfleet.json"
METRIC = re.compile(r"\bdbfleet_[a-z0-9_]+\b")


def expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query", "definition") and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def test_every_expression_names_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    found = list(expressions(dashboard))
    assert len(found) >= 30
    exposed = {s.exposed for s in SPECS.values()}
    used = {name for expr in found for name in METRIC.findall(expr)}
    assert used - exposed == set()
    # the dashboard covers the headline metrics
    for name in ("dbfleet_recovery_point_timestamp_seconds", "dbfleet_rpo_seconds",
                 "dbfleet_drill_last_rto_seconds", "dbfleet_rto_seconds",
                 "dbfleet_backup_last_size_bytes", "dbfleet_database_up",
                 "dbfleet_database_connections_max", "dbfleet_archive_pending_segments",
                 "dbfleet_scheduler_last_tick_timestamp_seconds"):  # fmt: skip
        assert name in used, name
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_every_panel_expression_is_valid_promql(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        t["expr"].replace("$__rate_interval", "5m").replace("$database", ".*")
        for p in dashboard["panels"]
        for t in p.get("targets", [])
    ]
    assert exprs and not any("$" in e for e in exprs)
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dbfleet:panel_{i}", "expr": e} for i, e in enumerate(exprs)
    ]}]}  # fmt: skip
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout
