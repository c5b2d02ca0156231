"""The Prometheus metrics over a catalog of real recorded runs: real SQLite
databases backed up, failed and drilled by the CLI (as subprocesses) into a
real file:// repository; the exposition parsed with
``prometheus_client.parser`` and checked value by value against the
catalog and the repository; ``promtool check metrics`` on the live output
and ``promtool test rules`` on the shipped alert rules (Debian's
``prometheus`` package; scripts/test.sh installs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dbfleet.config import load_inventory
from dbfleet.engines.base import HealthSample
from dbfleet.observe.metric_names import SPECS
from dbfleet.observe.metrics import build_registry, render
from dbfleet.observe.repo_facts import RepositoryFacts
from dbfleet.operations.common import Repositories
from dbfleet.operations.demo import create_sample_database
from dbfleet.operations.repository import init_repository
from tests.integration.conftest import _unavailable

PASSPHRASE = "metrics-Passphrase-41d9-never-printed"
FAST_KDF = {"n": 2**10, "r": 8, "p": 1}
CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        _unavailable(
            "promtool not installed",
            hint="scripts/servers/promtool.sh installs it",
        )
    assert found is not None
    return found


class Estate:
    """notes (rpo 26h, rto 30m, backed up twice, drilled), wiki (backed up
    once), gone (its file is missing: its backup fails)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "dbfleet.yaml"
        self.catalog = root / "dbfleet.catalog.db"
        create_sample_database(root / "notes.db", notes=600)
        create_sample_database(root / "wiki.db", notes=40, seed=9)
        document = {
            "repositories": {
                "local": {"url": f"file://{root / 'repo'}", "passphrase_env": "DBFLEET_TEST_MET_PW"}
            },
            "schedule": {"backup": "0 3 * * *", "drill": "30 4 * * 0"},
            "databases": {
                "notes": {"engine": "sqlite", "path": str(root / "notes.db"), "rpo": "26h",
                          "rto": "30m"},
                "wiki": {"engine": "sqlite", "path": str(root / "wiki.db"), "rpo": "2d"},
                "gone": {"engine": "sqlite", "path": str(root / "nowhere" / "gone.db")},
            },
        }  # fmt: skip
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))
        os.environ["DBFLEET_TEST_MET_PW"] = PASSPHRASE
        self.inventory = load_inventory(self.config)
        init_repository(self.inventory, "local", kdf=FAST_KDF)

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "DBFLEET_CONFIG"}
        env["DBFLEET_TEST_MET_PW"] = PASSPHRASE
        proc = subprocess.run(
            [sys.executable, "-m", "dbfleet", "--config", str(self.config), *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=300,
            check=False,
        )  # fmt: skip
        assert proc.returncode == code, proc.stderr
        assert "Traceback" not in proc.stderr and PASSPHRASE not in proc.stdout + proc.stderr
        return proc

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self.run(*args, "--json", code=code).stdout)

    def registry(self, **kwargs: Any) -> Any:
        inv = self.inventory
        return build_registry(inv, inv.scheduling(), self.catalog, **kwargs)


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Estate:
    estate = Estate(tmp_path_factory.mktemp("metrics"))
    estate.run("backup", "notes", "wiki")
    estate.run("backup", "notes")
    estate.run("backup", "gone", code=1)
    estate.run("drill", "notes")
    return estate


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_values_match_the_catalog_and_the_repository(estate: Estate) -> None:
    jobs = estate.json("jobs", "--limit", "100")
    snapshots = estate.json("snapshots")
    text = render(estate.registry(repositories=Repositories(estate.inventory))).decode()
    m = parse(text)
    notes, wiki, gone = (
        {"database": n, "engine": "sqlite"} for n in ("notes", "wiki", "gone")
    )  # fmt: skip

    def job(kind: str, target: str, status: str) -> dict[str, Any]:
        return next(
            j for j in jobs if (j["kind"], j["target"], j["status"]) == (kind, target, status)
        )

    # backups: counts, newest success/failure, size facts of the newest success
    assert value(m, "dbfleet_backup_runs_total", **notes, result="success") == 2
    assert value(m, "dbfleet_backup_runs_total", **wiki, result="success") == 1
    assert value(m, "dbfleet_backup_runs_total", **gone, result="failure") == 1
    assert value(m, "dbfleet_backup_runs_total", **gone, result="success") == 0
    newest_notes = job("backup", "notes", "ok")  # newest first
    assert value(m, "dbfleet_backup_last_success_timestamp_seconds", **notes) == ts(
        newest_notes["finished_at"]
    )
    assert ("dbfleet_backup_last_success_timestamp_seconds", tuple(sorted(gone.items()))) not in m
    assert value(m, "dbfleet_backup_last_failure_timestamp_seconds", **gone) == ts(
        job("backup", "gone", "failed")["finished_at"]
    )
    assert value(m, "dbfleet_backup_last_run_success", **notes) == 1
    assert value(m, "dbfleet_backup_last_run_success", **gone) == 0
    (result,) = newest_notes["details"]["results"]
    assert value(m, "dbfleet_backup_last_size_bytes", **notes) == result["stored_size"] > 0
    assert value(m, "dbfleet_backup_last_added_bytes", **notes) == result["added_bytes"]
    assert value(m, "dbfleet_backup_last_source_size_bytes", **notes) == result["size"] > 0
    assert value(m, "dbfleet_backup_last_duration_seconds", **notes) == result["duration_seconds"]
    # the second backup of unchanged data added less than the first
    first = [j for j in jobs if (j["kind"], j["target"]) == ("backup", "notes")][-1]
    assert result["added_bytes"] < first["details"]["results"][0]["added_bytes"]

    # drills
    drill = job("drill", "notes", "ok")
    assert value(m, "dbfleet_drill_last_success_timestamp_seconds", **notes) == ts(
        drill["finished_at"]
    )
    rto = drill["details"]["drills"][0]["rto_seconds"]
    assert rto > 0
    assert value(m, "dbfleet_drill_last_rto_seconds", **notes) == pytest.approx(rto)
    assert value(m, "dbfleet_drill_runs_total", **notes, result="success") == 1
    assert value(m, "dbfleet_drill_runs_total", **wiki, result="success") == 0

    # targets and inventory
    assert value(m, "dbfleet_rpo_seconds", database="notes") == 26 * 3600
    assert value(m, "dbfleet_rpo_seconds", database="wiki") == 2 * 86400
    assert value(m, "dbfleet_rto_seconds", database="notes") == 1800
    assert ("dbfleet_rto_seconds", (("database", "wiki"),)) not in m
    info = {"database": "gone", "engine": "sqlite", "repository": "local"}
    assert value(m, "dbfleet_database_info", **info) == 1

    # the schedule: the next 03:00 UTC
    now = datetime.now(UTC)
    next_three = now.replace(hour=3, minute=0, second=0, microsecond=0)
    if next_three <= now:
        next_three += timedelta(days=1)
    got = value(m, "dbfleet_backup_next_run_timestamp_seconds", **wiki)
    assert got in (next_three.timestamp(), (next_three + timedelta(days=1)).timestamp())

    # the repository: recovery point = newest snapshot's end, window = oldest's
    mine = sorted((s for s in snapshots if s["database"] == "notes"), key=lambda s: s["time"])
    assert len(mine) == 2
    assert value(m, "dbfleet_recovery_snapshots", **notes) == 2
    point = value(m, "dbfleet_recovery_point_timestamp_seconds", **notes)
    start = value(m, "dbfleet_recovery_window_start_timestamp_seconds", **notes)
    assert start < point
    assert point == pytest.approx(ts(newest_notes["finished_at"]), abs=2)
    assert ("dbfleet_recovery_point_timestamp_seconds", tuple(sorted(gone.items()))) not in m
    on_disk = sum(p.stat().st_size for p in (estate.root / "repo").rglob("*") if p.is_file())
    assert value(m, "dbfleet_repository_size_bytes", destination="local") == on_disk
    assert value(m, "dbfleet_repository_up", destination="local") == 1
    for collector in ("catalog", "schedule", "repositories"):
        assert value(m, "dbfleet_collector_success", collector=collector) == 1
    # nothing sampled: no health series, and no health collector without a provider
    assert not any(name.startswith("dbfleet_database_up") for name, _ in m)

    # every series is declared, with bounded labels only
    allowed = {"database", "engine", "kind", "stream", "destination", "result", "state",
               "collector", "version", "repository"}  # fmt: skip
    exposed = {s.exposed for s in SPECS.values()}
    for name, labels in m:
        assert name in exposed, name
        assert {k for k, _ in labels} <= allowed, (name, labels)
    assert PASSPHRASE not in text


def test_promtool_check_metrics_on_the_live_output(estate: Estate) -> None:
    text = render(estate.registry(repositories=Repositories(estate.inventory)))
    proc = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == b"" and proc.stderr.strip() == b"", proc.stdout + proc.stderr


def test_promtool_finds_a_badly_named_metric() -> None:
    """The lint is not vacuous: a gauge with a counter's suffix is flagged."""
    bad = b"# HELP x_total bad\n# TYPE x_total gauge\nx_total 1\n"
    proc = subprocess.run([promtool(), "check", "metrics"], input=bad, capture_output=True,
                          timeout=60, check=False)  # fmt: skip
    assert proc.returncode != 0 and b"_total" in proc.stdout + proc.stderr


def test_alert_rules_trip_and_clear() -> None:
    check = subprocess.run(
        [promtool(), "check", "rules", "dbfleet-alerts.yml"],
        cwd=CONTRIB, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
    proc = subprocess.run(
        [promtool(), "test", "rules", "dbfleet-alerts.test.yml"],
        cwd=CONTRIB, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and "SUCCESS" in proc.stdout, proc.stdout + proc.stderr
    rules = yaml.safe_load((CONTRIB / "dbfleet-alerts.yml").read_text())
    tests = yaml.safe_load((CONTRIB / "dbfleet-alerts.test.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    for alert in alerts:  # every alert is seen firing and seen not firing
        cases = [c for t in tests["tests"] for c in t["alert_rule_test"] if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in cases) and any(not c["exp_alerts"] for c in cases), (
            alert
        )


def test_health_samples_and_failing_sources(estate: Estate) -> None:
    taken = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    samples: Mapping[str, HealthSample] = {
        "notes": HealthSample("notes", "sqlite", taken, True, 0.25, connections=8.0,
                              connections_max=10.0, cache_hits_total=1e12, size_bytes=4096.0,
                              archive={"pending_segments": 3, "failed_total": 2}),
        "wiki": HealthSample("wiki", "sqlite", taken, False, 5.0, error="connection refused"),
        "elsewhere": HealthSample("elsewhere", "sqlite", taken, True, 0.1),  # not in the inventory
    }  # fmt: skip
    m = parse(render(estate.registry(health=lambda: samples)).decode())
    notes, wiki = ({"database": n, "engine": "sqlite"} for n in ("notes", "wiki"))
    assert value(m, "dbfleet_database_up", **notes) == 1
    assert value(m, "dbfleet_database_up", **wiki) == 0
    assert value(m, "dbfleet_database_connections", **notes) == 8
    assert value(m, "dbfleet_database_connections_max", **notes) == 10
    assert value(m, "dbfleet_database_cache_hits_total", **notes) == 1e12
    assert value(m, "dbfleet_database_size_bytes", **notes) == 4096
    assert value(m, "dbfleet_database_probe_timestamp_seconds", **wiki) == taken.timestamp()
    assert value(m, "dbfleet_archive_pending_segments", database="notes") == 3
    assert value(m, "dbfleet_archive_failures_total", database="notes", stream="wal") == 2
    assert ("dbfleet_database_connections", tuple(sorted(wiki.items()))) not in m  # None: absent
    assert not any(dict(labels).get("database") == "elsewhere" for _, labels in m)
    assert ("dbfleet_database_up", (("database", "gone"), ("engine", "sqlite"))) not in m
    assert value(m, "dbfleet_collector_success", collector="health") == 1

    def broken() -> Mapping[str, HealthSample]:
        raise OSError("the sampler thread died")

    m = parse(render(estate.registry(health=broken)).decode())
    assert value(m, "dbfleet_collector_success", collector="health") == 0
    assert value(m, "dbfleet_backup_runs_total", **notes, result="success") == 2  # the rest stays

    garbage = estate.root / "garbage.db"
    garbage.write_bytes(b"this is not a SQLite database" * 100)
    inv = estate.inventory
    m = parse(render(build_registry(inv, inv.scheduling(), garbage)).decode())
    assert value(m, "dbfleet_collector_success", collector="catalog") == 0
    assert not any(name.startswith("dbfleet_backup_runs") for name, _ in m)
    assert value(m, "dbfleet_rpo_seconds", database="notes") == 26 * 3600
    # no catalog yet: nothing recorded, which is not a failure
    m = parse(render(build_registry(inv, inv.scheduling(), estate.root / "none.db")).decode())
    assert value(m, "dbfleet_collector_success", collector="catalog") == 1
    assert value(m, "dbfleet_backup_runs_total", **notes, result="success") == 0


def test_repository_facts_are_cached_for_the_ttl(estate: Estate) -> None:
    clock = [1000.0]
    facts = RepositoryFacts(
        estate.inventory, Repositories(estate.inventory), ttl=300, clock=lambda: clock[0]
    )
    registry = estate.registry(repositories=facts)
    wiki = {"database": "wiki", "engine": "sqlite"}
    before = value(parse(render(registry).decode()), "dbfleet_recovery_snapshots", **wiki)
    estate.run("backup", "wiki")
    clock[0] += 299
    cached = parse(render(registry).decode())
    assert value(cached, "dbfleet_recovery_snapshots", **wiki) == before
    assert value(cached, "dbfleet_backup_runs_total", **wiki, result="success") == before + 1
    clock[0] += 2
    fresh = parse(render(registry).decode())
    assert value(fresh, "dbfleet_recovery_snapshots", **wiki) == before + 1
    assert value(fresh, "dbfleet_recovery_point_timestamp_seconds", **wiki) > value(
        cached, "dbfleet_recovery_point_timestamp_seconds", **wiki
    )


def test_metrics_command_stdout_and_textfile(estate: Estate) -> None:
    out = parse(estate.run("metrics").stdout)
    target = estate.root / "textfile" / "dbfleet.prom"
    target.parent.mkdir()
    assert estate.run("metrics", "--textfile", str(target)).stdout == ""
    written = parse(target.read_text())
    assert sorted(p.name for p in target.parent.iterdir()) == ["dbfleet.prom"]  # no temporary left
    moving = ("dbfleet_collector_duration_seconds", "dbfleet_repository_facts_timestamp_seconds")

    def stable(samples: Samples) -> Samples:
        return {k: v for k, v in samples.items() if k[0] not in moving}

    assert stable(out) == stable(written)
    assert {k for k in out if k[0] in moving} == {k for k in written if k[0] in moving}
    notes = {"database": "notes", "engine": "sqlite"}
    assert value(written, "dbfleet_recovery_snapshots", **notes) >= 2
    bad = estate.run("metrics", "--textfile", str(estate.root / "x.txt"), code=2)
    assert "must end in .prom" not in bad.stdout and ".prom" in bad.stderr
    quick = parse(estate.run("metrics", "--no-repositories").stdout)
    assert not any(name.startswith("dbfleet_repository") for name, _ in quick)
    assert value(quick, "dbfleet_backup_runs_total", **notes, result="success") >= 2
