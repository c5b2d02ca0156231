"""Scrape time and memory of dbfleet's /metrics for a fleet.

An inventory of N databases (default 50, SQLite files) and a job catalog
holding a year of daily jobs for each (backup, verify, forget every day,
a drill every week, a prune per repository every day: ~60k runs with the
details real runs record), plus a real file:// repository holding a few
snapshots of each database and a health sample per database. Then, in a
fresh process (so the memory figure is the scrape's, not the setup's):
the first scrape (repository facts cold: every manifest is read), then
``--repeat`` scrapes with the repository facts cached (the TTL), and the
peak RSS.

    python bench/metrics_scrape.py                 # 50 databases, 365 days
    python bench/metrics_scrape.py --databases 200 --days 365 --repeat 9

Prints the figures and writes them to bench/results/metrics_scrape.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

PASSPHRASE_ENV = "DBFLEET_BENCH_METRICS_PW"
RESULTS = Path(__file__).resolve().parent / "results"


def setup(root: Path, databases: int, days: int, snapshots: int) -> None:
    from dbfleet.catalog import Catalog
    from dbfleet.config import load_inventory
    from dbfleet.operations.backup import backup_many
    from dbfleet.operations.common import Repositories
    from dbfleet.operations.demo import create_sample_database
    from dbfleet.operations.repository import init_repository

    names = [f"db{i:03d}" for i in range(databases)]
    document = {
        "repositories": {
            "main": {"url": f"file://{root / 'repo'}", "passphrase_env": PASSPHRASE_ENV}
        },
        "schedule": {"backup": "0 2 * * *", "verify": "0 5 * * *", "drill": "0 6 * * 0",
                     "forget": "0 7 * * *"},
        "databases": {n: {"engine": "sqlite", "path": str(root / f"{n}.db"), "rpo": "26h",
                          "rto": "15m"} for n in names},
    }  # fmt: skip
    (root / "dbfleet.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    for i, name in enumerate(names):
        create_sample_database(root / f"{name}.db", notes=30, seed=i)
    inventory = load_inventory(root / "dbfleet.yaml")
    init_repository(inventory, "main", kdf={"n": 2**10, "r": 8, "p": 1})
    repos = Repositories(inventory)
    for _ in range(snapshots):
        assert all(r.ok for r in backup_many(repos, names))

    catalog = root / "dbfleet.catalog.db"
    Catalog(catalog).close()  # the schema
    rng = random.Random(15)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start -= timedelta(days=days)
    rows: list[tuple[Any, ...]] = []

    def add(kind: str, target: str, when: datetime, seconds: float, ok: bool, **extra: Any) -> None:
        finished = when + timedelta(seconds=seconds)
        details = json.dumps(extra.get("details")) if extra.get("details") else None
        rows.append((
            f"{kind}:{target}", kind, target, target if kind != "prune" else None, "schedule",
            when.isoformat(timespec="seconds"), when.isoformat(timespec="seconds"),
            finished.isoformat(timespec="seconds"), round(seconds, 3), "ok" if ok else "failed",
            extra.get("bytes"), None if ok else "dump tool exited with status 1", details,
            "schedule",
        ))  # fmt: skip

    for day in range(days):
        base = start + timedelta(days=day)
        for name in names:
            size = 10_000_000 + day * 50_000
            ok = rng.random() > 0.02
            result = {"database": name, "engine": "sqlite", "ok": ok, "size": size,
                      "stored_size": size // 3, "added_bytes": size // 40,
                      "duration_seconds": 20 + rng.random() * 10,
                      "snapshot": f"{rng.getrandbits(128):032x}"}  # fmt: skip
            add("backup", name, base + timedelta(hours=2), 25, ok, bytes=size // 40,
                details={"results": [result]})  # fmt: skip
            add(
                "verify",
                name,
                base + timedelta(hours=5),
                40,
                True,
                bytes=size,
                details={"verified": [{"database": name, "ok": True, "tables_compared": 3}]},
            )
            add(
                "forget",
                name,
                base + timedelta(hours=7),
                1,
                True,
                details={"groups": [{"database": name, "kept": 14, "removed": ["x" * 64]}]},
            )
            if day % 7 == 0:
                drill = {"database": name, "result": "pass", "rto_seconds": 60 + rng.random() * 30}
                add("drill", name, base + timedelta(hours=6), 70, True, bytes=size,
                    details={"drills": [drill]})  # fmt: skip
        add("prune", "main", base + timedelta(hours=8), 120, True, bytes=1_000_000)
    with sqlite3.connect(catalog) as db:
        db.executemany(
            "INSERT INTO runs (job, kind, target, database, trigger, scheduled_at, started_at, "
            "finished_at, duration_seconds, status, bytes, error, details, actor) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('last_tick', ?)",
            (datetime.now(UTC).isoformat(timespec="seconds"),),
        )
    print(f"catalog: {len(rows)} runs for {databases} databases over {days} days; "
          f"repository: {snapshots} snapshot(s) of each", file=sys.stderr)  # fmt: skip


def measure(root: Path, repeat: int) -> dict[str, Any]:
    from dbfleet.config import load_inventory
    from dbfleet.engines.base import HealthSample
    from dbfleet.observe.metrics import build_registry, render
    from dbfleet.operations.common import Repositories

    inventory = load_inventory(root / "dbfleet.yaml")
    now = datetime.now(UTC)
    samples = {
        name: HealthSample(name, "sqlite", now, True, 0.01, connections=5.0,
                           connections_max=100.0, size_bytes=1e7)
        for name in inventory.databases
    }  # fmt: skip
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    registry = build_registry(
        inventory, inventory.scheduling(), root / "dbfleet.catalog.db",
        health=lambda: samples, repositories=Repositories(inventory),
    )  # fmt: skip
    began = time.perf_counter()
    render(registry)
    cold = time.perf_counter() - began
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        body = render(registry)
        times.append(time.perf_counter() - began)
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    # without the TTL: the repository (and WAL archive) listed on every scrape;
    # manifests are still loaded once each (the index keeps them)
    uncached = build_registry(
        inventory, inventory.scheduling(), root / "dbfleet.catalog.db",
        health=lambda: samples, repositories=Repositories(inventory), ttl=0,
    )  # fmt: skip
    render(uncached)
    relisted = []
    for _ in range(repeat):
        began = time.perf_counter()
        render(uncached)
        relisted.append(time.perf_counter() - began)
    return {
        "databases": len(inventory.databases),
        "series": series,
        "bytes": len(body),
        "first_scrape_seconds": round(cold, 4),
        "scrape_seconds_median": round(statistics.median(times), 4),
        "scrape_seconds_max": round(max(times), 4),
        "scrape_seconds_median_ttl0": round(statistics.median(relisted), 4),
        "scrapes": repeat,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_first_scrape_mib": round(rss_before / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", type=int, default=50)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--snapshots", type=int, default=2, help="snapshots of each database")
    parser.add_argument("--repeat", type=int, default=7, help="warm scrapes (median reported)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault(PASSPHRASE_ENV, "bench-metrics-passphrase")
    if args.measure:
        print(json.dumps(measure(args.measure, args.repeat)))
        return
    with tempfile.TemporaryDirectory(prefix="dbfleet-bench-metrics-") as tmp:
        root = Path(tmp)
        setup(root, args.databases, args.days, args.snapshots)
        with sqlite3.connect(root / "dbfleet.catalog.db") as db:
            runs = db.execute("SELECT count(*) FROM runs").fetchone()[0]
        catalog_mib = (root / "dbfleet.catalog.db").stat().st_size / 2**20
        proc = subprocess.run(
            [sys.executable, __file__, "--measure", str(root), "--repeat", str(args.repeat)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(days=args.days, catalog_runs=runs, catalog_mib=round(catalog_mib, 1),
                  snapshots_per_database=args.snapshots)  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "metrics_scrape.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['databases']} databases, {runs} catalog runs ({result['catalog_mib']} MiB), "
        f"{result['series']} series ({result['bytes']} bytes)\n"
        f"first scrape (repository facts cold): {result['first_scrape_seconds']:.3f}s\n"
        f"scrape, median of {args.repeat} (repository facts cached): "
        f"{result['scrape_seconds_median']:.3f}s (max {result['scrape_seconds_max']:.3f}s); "
        f"with ttl 0 (repository listed every scrape): "
        f"{result['scrape_seconds_median_ttl0']:.3f}s\n"
        f"peak RSS of the scraping process: {result['peak_rss_mib']} MiB "
        f"({result['rss_before_first_scrape_mib']} MiB before the first scrape)"
    )


if __name__ == "__main__":
    main()
