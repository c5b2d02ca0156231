"""Benchmark dbfleet's MongoDB, Neo4j and Weaviate backups against the anchors, in one run.

Per engine: loads a deterministic sample, then measures

- dbfleet's first backup (wall time, peak RSS, logical and stored size from
  ``dbfleet backup --json``, repository size);
- the anchor, the native glue people use instead:
  MongoDB ``mongodump --archive --gzip > file``;
  Neo4j a plain driver export to a gzip'd JSON-lines file ("script it yourself");
  Weaviate the server's own ``backup-filesystem`` module (on a private second
  weaviate-server started by this script, since the test server has no backup module);
- then changes ~1 % of the documents / nodes / objects and measures both again:
  dbfleet's added bytes against the anchor's second backup (a full dump for
  mongodump and the driver export, an incremental backup where Weaviate offers one).

Prints a table with the ratios dbfleet / anchor and writes
``bench/results/sample_engines-<timestamp>.json``. The sample data are dropped at
the end, also on failure. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PASSPHRASE = "dbfleet-bench-passphrase"
TIME_BIN = "/usr/bin/time"
MiB = 1024 * 1024
ENGINES = ("mongodb", "neo4j", "neo4j-offline", "weaviate")

MONGO_DB = "dbfleet_bench_engines"
NEO4J_LABEL, NEO4J_REL, NEO4J_INDEX = "BenchItem", "BENCH_LINKS", "bench_item_id"
WEAVIATE_PREFIX = "Bench_"
WEAVIATE_COLLECTION = f"{WEAVIATE_PREFIX}Docs"
WEAVIATE_NS = uuid.UUID("0d9b3c57-52a4-4f4e-9a7e-6a3f1c2b8e11")
WEAVIATE_BIN = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "dbfleet-test-servers/weaviate-v1.35.2/weaviate-server"
)

# Used when /usr/bin/time is missing: a fresh interpreter runs the command and
# writes "<elapsed s> <max RSS KiB>" like `time -f '%e %M'` (RUSAGE_CHILDREN:
# the command and its descendants, not the wrapper).
RUSAGE_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "e = time.perf_counter() - t\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open(sys.argv[1], 'w').write(f'{e:.2f} {r.ru_maxrss}\\n')\n"
    "sys.exit(rc if rc >= 0 else 128 - rc)\n"
)

_WORDS = (
    "the quick brown fox delivery order invoice shipped returned customer parcel warehouse "
    "express standard priority gift wrap fragile handle with care leave at door neighbour "
    "signed tracking update delayed weather customs cleared label printed pickup scheduled "
    "refund credit note exchange size colour small medium large blue green red black white "
    "cotton wool leather steel glass paper wooden ceramic bamboo recycled organic premium"
)
_FIRST = "Anna Ben Clara David Emma Felix Greta Hugo Ida Jonas Karla Leo Mia Noah Olga Paul"
_LAST = "Adler Bauer Schmidt Fischer Weber Wagner Becker Hoffmann Koch Richter Klein Wolf"
WORDS, FIRST, LAST = _WORDS.split(), _FIRST.split(), _LAST.split()
COUNTRIES = ("DE", "FR", "NL", "AT", "CH", "PL", "IT", "ES", "SE", "DK")
STATUSES = ("new", "paid", "packed", "shipped", "delivered", "returned")


class BenchError(RuntimeError):
    pass


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Proc:
    argv: list[str]
    returncode: int
    wall_s: float
    max_rss_kib: int
    stdout: str = ""


def _time_prefix(time_file: Path) -> list[str]:
    if os.access(TIME_BIN, os.X_OK):
        return [TIME_BIN, "-f", "%e %M", "-o", str(time_file)]
    return [sys.executable, "-c", RUSAGE_WRAPPER, str(time_file)]


def timed(
    argv: Sequence[str],
    env: dict[str, str],
    logs: Path,
    label: str,
    output: Path | None = None,
    check: bool = True,
) -> Proc:
    """Run ``argv`` under ``time``: stdout into ``output``, else captured.
    With ``check``, a non-zero exit raises BenchError with stderr's tail."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
    time_file, err_path = logs / f"{slug}.time", logs / f"{slug}.stderr"
    out_path = output or logs / f"{slug}.stdout"
    os.sync()
    started = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        code = subprocess.call(
            [*_time_prefix(time_file), *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
        )
    wall = time.perf_counter() - started
    rss = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = [ln for ln in time_file.read_text().splitlines() if ln.strip()]
        rss = int(lines[-1].split()[1])
    text = "" if output else out_path.read_text(errors="replace")
    proc = Proc(argv=list(argv), returncode=code, wall_s=wall, max_rss_kib=rss, stdout=text)
    if check and code != 0:
        tail = err_path.read_text(errors="replace")[-600:].strip()
        raise BenchError(f"{shlex.join(argv[:4])}... exited {code}: {tail}")
    return proc


def tree_bytes(path: Path) -> int:
    """Apparent size of all files below ``path`` (a file: its size)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def version_of(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def picked(i: int, n: int, percent: float, salt: int, mode: str) -> bool:
    """Deterministic choice of ``percent`` % of the ids ``0..n-1``: ``spread``
    hash-picks them all over; ``recent`` takes the highest ids (the newest)."""
    if mode == "recent":
        return i >= n - round(n * percent / 100)
    return ((i * 2654435761 + salt * 40503) % 1_000_003) % 10_000 < percent * 100


# --- results ------------------------------------------------------------------------------


@dataclass
class Row:
    tool: str
    command: str = ""
    wall_s: float | None = None
    peak_rss_mib: float | None = None
    logical_bytes: int | None = None
    stored_bytes: int | None = None
    """First backup: what it stored (the file, the backup directory, the repository)."""
    added_bytes: int | None = None
    """Second backup: what it added to the storage (repository growth, or the new file)."""
    reported_bytes: int | None = None
    """dbfleet's own figure: stored_size (first) or added_bytes (second)."""
    tool_s: float | None = None
    """dbfleet's own duration_seconds (without interpreter start-up)."""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class EngineResult:
    engine: str
    sample: dict[str, Any] = field(default_factory=dict)
    anchor: str = ""
    first: list[Row] = field(default_factory=list)
    second: list[Row] = field(default_factory=list)
    change: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Context:
    workdir: Path
    logs: Path
    env: dict[str, str]
    dbfleet: list[str]
    config: Path
    args: argparse.Namespace


def measure(row: Row, fn: Callable[[], None]) -> Row:
    print(f"  {row.tool} ...", flush=True)
    try:
        fn()
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        row.error = str(exc)
        print(f"    FAILED: {row.error}")
    else:
        rss = f", peak {row.peak_rss_mib:.1f} MiB" if row.peak_rss_mib else ""
        print(f"    {row.wall_s:.2f} s{rss}")
    return row


# --- dbfleet ------------------------------------------------------------------------------


def write_inventory(ctx: Context, databases: dict[str, dict[str, Any]]) -> None:
    """One file:// repository per engine, passphrase from DBFLEET_PASSPHRASE."""
    repos = {
        f"repo-{name}": {
            "url": (ctx.workdir / f"repo-{name}").resolve().as_uri(),
            "passphrase_env": "DBFLEET_PASSPHRASE",
        }
        for name in databases
    }
    dbs = {name: {**entry, "repository": f"repo-{name}"} for name, entry in databases.items()}
    doc = {"version": 1, "repositories": repos, "databases": dbs}
    ctx.config.write_text("# generated by bench/sample_engines.py\n" + json.dumps(doc, indent=2))


def dbfleet_init(ctx: Context, name: str) -> Path:
    repo = ctx.workdir / f"repo-{name}"
    shutil.rmtree(repo, ignore_errors=True)
    argv = [*ctx.dbfleet, "--config", str(ctx.config), "repo", "init", f"repo-{name}"]
    proc = subprocess.run(argv, env=ctx.env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"dbfleet repo init: {(proc.stderr or proc.stdout)[-600:]}")
    return repo


def dbfleet_backup(ctx: Context, name: str, label: str) -> tuple[Proc, dict[str, Any]]:
    argv = [*ctx.dbfleet, "--config", str(ctx.config), "backup", name, "--json"]
    proc = timed(argv, ctx.env, ctx.logs, label, check=False)
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        err = (ctx.logs / f"{label}.stderr").read_text(errors="replace")[-600:]
        raise BenchError(
            f"dbfleet backup printed no JSON (exit {proc.returncode}): {err}"
        ) from None
    items = doc if isinstance(doc, list) else [doc]
    item = next((d for d in items if isinstance(d, dict) and d.get("database") == name), None)
    if item is None or not item.get("ok"):
        raise BenchError(f"dbfleet backup failed: {(item or {}).get('error')}")
    return proc, item


def dbfleet_rows(ctx: Context, name: str) -> tuple[Row, Callable[[Row], None]]:
    """The first-backup row (measured now) and a function measuring the second."""
    repo = ctx.workdir / f"repo-{name}"
    cmd = shlex.join([*ctx.dbfleet, "--config", str(ctx.config), "backup", name, "--json"])
    first = Row(tool="dbfleet backup", command=cmd)

    def run_first() -> None:
        dbfleet_init(ctx, name)
        proc, item = dbfleet_backup(ctx, name, f"{name}-dbfleet-first")
        first.wall_s, first.peak_rss_mib = proc.wall_s, proc.max_rss_kib / 1024
        first.logical_bytes, first.reported_bytes = item["size"], item["stored_size"]
        first.tool_s = item.get("duration_seconds")
        first.stored_bytes = tree_bytes(repo)
        first.extra["report"] = item

    def run_second(row: Row) -> None:
        row.command = cmd
        before = tree_bytes(repo)
        proc, item = dbfleet_backup(ctx, name, f"{name}-dbfleet-second")
        row.wall_s, row.peak_rss_mib = proc.wall_s, proc.max_rss_kib / 1024
        row.logical_bytes, row.reported_bytes = item["size"], item["added_bytes"]
        row.tool_s = item.get("duration_seconds")
        row.added_bytes = tree_bytes(repo) - before
        row.extra["report"] = item

    measure(first, run_first)
    return first, run_second


# --- MongoDB ------------------------------------------------------------------------------


def mongo_url(database: str = "") -> str:
    url = os.environ.get("DBFLEET_TEST_MONGODB_URL")
    if not url:
        raise BenchError("DBFLEET_TEST_MONGODB_URL is not set (. /tmp/dbfleet-test-servers/env.sh)")
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, f"/{database}", p.query, p.fragment))


def mongo_customer(i: int, rng: random.Random) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {
        "_id": i,
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}.{i}@example.org",
        "country": rng.choice(COUNTRIES),
        "created_at": datetime(2020, 1, 1, tzinfo=UTC) + timedelta(minutes=i * 37),
        "profile": {
            "address": {
                "street": f"{rng.choice(LAST)}straße {rng.randint(1, 200)}",
                "city": f"city-{rng.randint(1, 500)}",
                "zip": f"{rng.randint(10000, 99999)}",
            },
            "tags": rng.sample(WORDS, rng.randint(0, 4)),
            "preferences": {"newsletter": rng.random() < 0.4, "language": rng.choice(COUNTRIES)},
            "phone": f"+49 {rng.randint(100, 999)} {rng.randint(100000, 9999999)}",
            "lifetime_value": round(rng.lognormvariate(5, 1.2), 2),
        },
    }


def mongo_order(i: int, customers: int, rng: random.Random) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {
            "sku": f"SKU-{rng.randint(1, 5000):05d}",
            "qty": rng.randint(1, 5),
            "price": round(rng.lognormvariate(3, 0.8), 2),
        }
        for _ in range(rng.randint(1, 6))
    ]
    return {
        "_id": i,
        "customer_id": rng.randrange(customers),
        "status": rng.choice(STATUSES),
        "amount": round(sum(it["qty"] * it["price"] for it in items), 2),
        "currency": "EUR",
        "items": items,
        "tracking_number": f"TRK{rng.getrandbits(48):012X}",
        "note": " ".join(rng.choices(WORDS, k=rng.randint(3, 30))) if rng.random() < 0.6 else None,
        "created_at": datetime(2023, 1, 1, tzinfo=UTC) + timedelta(seconds=i * 613),
    }


def mongo_client() -> Any:
    from pymongo import MongoClient

    password = os.environ.get("DBFLEET_TEST_MONGODB_PASSWORD")
    return MongoClient(mongo_url(), password=password, serverSelectionTimeoutMS=10000)


def mongo_load(docs: int) -> dict[str, Any]:
    from pymongo import ASCENDING, DESCENDING

    customers = max(1, docs // 6)
    orders = max(1, docs - customers)
    rng = random.Random(20261125)
    started = time.perf_counter()
    with mongo_client() as client:
        client.drop_database(MONGO_DB)
        db = client[MONGO_DB]
        for start in range(0, customers, 1000):
            batch = [mongo_customer(i, rng) for i in range(start, min(customers, start + 1000))]
            db.customers.insert_many(batch, ordered=False)
        for start in range(0, orders, 1000):
            batch = [
                mongo_order(i, customers, rng) for i in range(start, min(orders, start + 1000))
            ]
            db.orders.insert_many(batch, ordered=False)
        db.customers.create_index("email", unique=True)
        db.orders.create_index([("customer_id", ASCENDING), ("created_at", DESCENDING)])
        stats = db.command("dbStats")
    return {
        "database": MONGO_DB,
        "customers": customers,
        "orders": orders,
        "documents": customers + orders,
        "data_size": stats.get("dataSize"),
        "storage_size": stats.get("storageSize"),
        "load_s": round(time.perf_counter() - started, 2),
    }


def mongo_change(percent: float, mode: str) -> dict[str, Any]:
    with mongo_client() as client:
        db = client[MONGO_DB]
        n_c = db.customers.estimated_document_count()
        n_o = db.orders.estimated_document_count()
        c_ids = [i for i in range(n_c) if picked(i, n_c, percent, 1, mode)]
        o_ids = [i for i in range(n_o) if picked(i, n_o, percent, 2, mode)]
        when = datetime(2026, 11, 25, tzinfo=UTC)
        c = db.customers.update_many(
            {"_id": {"$in": c_ids}}, {"$set": {"last_login": when, "profile.tier": "gold"}}
        )
        o = db.orders.update_many(
            {"_id": {"$in": o_ids}}, {"$set": {"status": "delivered", "delivered_at": when}}
        )
    return {
        "percent": percent,
        "mode": mode,
        "customers_modified": c.modified_count,
        "orders_modified": o.modified_count,
        "documents_modified": c.modified_count + o.modified_count,
    }


def mongo_drop() -> None:
    with mongo_client() as client:
        client.drop_database(MONGO_DB)


def mongodump_row(ctx: Context, label: str, tool: str) -> Row:
    tools = os.environ.get("DBFLEET_MONGODB_TOOLS", "")
    mongodump = os.path.join(tools, "mongodump") if tools else shutil.which("mongodump")
    if not mongodump or not os.access(mongodump, os.X_OK):
        raise BenchError("mongodump not found in $DBFLEET_MONGODB_TOOLS or PATH")
    # The password in a 0600 YAML file (--config), never argv; yaml would
    # quote it, JSON is valid YAML.
    secret = ctx.workdir / "mongodump-config.yaml"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"password: {json.dumps(os.environ.get('DBFLEET_TEST_MONGODB_PASSWORD', ''))}\n")
    archive = ctx.workdir / f"mongodump-{label}.archive.gz"
    argv = [
        mongodump,
        "--uri",
        mongo_url(),
        "--db",
        MONGO_DB,
        "--archive",
        "--gzip",
        "--numParallelCollections=1",
        "--config",
        str(secret),
    ]
    row = Row(tool=tool, command=shlex.join(argv) + f" > {archive}")

    def run() -> None:
        try:
            proc = timed(argv, ctx.env, ctx.logs, f"mongodb-mongodump-{label}", output=archive)
        finally:
            secret.unlink(missing_ok=True)
        row.wall_s, row.peak_rss_mib = proc.wall_s, proc.max_rss_kib / 1024
        size = archive.stat().st_size
        if label == "first":
            row.stored_bytes = size
        else:
            row.added_bytes = size
            row.note = "a full dump again: mongodump does not deduplicate"
        archive.unlink()

    return measure(row, run)


def bench_mongodb(ctx: Context, res: EngineResult) -> None:
    args = ctx.args
    res.anchor = "mongodump --archive --gzip > file (what gobackup / Databasus run)"
    write_inventory(
        ctx,
        {
            "mongodb": {
                "engine": "mongodb",
                "url": mongo_url(MONGO_DB),
                "password_env": "DBFLEET_TEST_MONGODB_PASSWORD",
            }
        },
    )
    try:
        print(f"loading {args.mongo_docs:,} documents into {MONGO_DB} ...", flush=True)
        res.sample = mongo_load(args.mongo_docs)
        print(f"  {res.sample}")
        res.first.append(mongodump_row(ctx, "first", "mongodump --archive --gzip > file"))
        first, second = dbfleet_rows(ctx, "mongodb")
        res.first.append(first)
        print(f"changing {args.change_percent:g} % of the documents ...", flush=True)
        res.change = mongo_change(args.change_percent, args.change_mode)
        print(f"  {res.change}")
        res.second.append(mongodump_row(ctx, "second", "mongodump --archive --gzip (again)"))
        if first.error is None:
            row = Row(tool="dbfleet backup (second)")
            print(f"  {row.tool} ...", flush=True)
            measure_second(row, second)
            res.second.append(row)
    finally:
        if not args.keep_data:
            with contextlib.suppress(Exception):
                mongo_drop()


def measure_second(row: Row, second: Callable[[Row], None]) -> None:
    try:
        second(row)
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        row.error = str(exc)
        print(f"    FAILED: {row.error}")
    else:
        print(
            f"    {row.wall_s:.2f} s, peak {row.peak_rss_mib or 0:.1f} MiB, "
            f"{_mib(row.added_bytes)} added"
        )


# --- Neo4j --------------------------------------------------------------------------------


def neo4j_driver(url: str) -> Any:
    import neo4j

    p = urlsplit(url)
    return neo4j.GraphDatabase.driver(
        f"bolt://{p.hostname}:{p.port}",
        auth=(p.username or "neo4j", os.environ.get("DBFLEET_TEST_NEO4J_PASSWORD", "")),
        notifications_min_severity="OFF",
    )


def neo4j_run(url: str, query: str, **params: Any) -> list[dict[str, Any]]:
    with neo4j_driver(url) as driver, driver.session() as session:
        return [r.data() for r in session.run(query, params)]


def neo4j_drop(url: str) -> None:
    neo4j_run(
        url,
        f"MATCH (n:{NEO4J_LABEL}) CALL {{ WITH n DETACH DELETE n }} IN TRANSACTIONS OF 10000 ROWS",
    )
    neo4j_run(url, f"DROP INDEX {NEO4J_INDEX} IF EXISTS")


def neo4j_load(url: str, nodes: int, rels: int) -> dict[str, Any]:
    """Like tests/integration/fixtures_neo4j.py:create_bulk_graph, own labels."""
    neo4j_drop(url)
    others = neo4j_run(url, "MATCH (n) RETURN count(n) AS c")[0]["c"]
    started = time.perf_counter()
    neo4j_run(
        url,
        f"UNWIND range(0, $n - 1) AS i CALL {{ WITH i CREATE (:{NEO4J_LABEL} {{id: i, "
        "name: 'item-' + i, price: i * 0.25, tags: ['t' + (i % 7), 't' + (i % 11)], "
        "added: date('2024-01-01') + duration({days: i % 365}), "
        "description: 'item ' + i + ' of kind ' + (i % 13) + ' in shelf ' + (i % 101)}) } "
        "IN TRANSACTIONS OF 20000 ROWS",
        n=nodes,
    )
    neo4j_run(url, f"MATCH (n:{NEO4J_LABEL}) WHERE n.id % 3 = 1 SET n:BenchBook")
    neo4j_run(url, f"MATCH (n:{NEO4J_LABEL}) WHERE n.id % 3 = 2 SET n:BenchMusic")
    neo4j_run(url, f"CREATE INDEX {NEO4J_INDEX} FOR (n:{NEO4J_LABEL}) ON (n.id)")
    neo4j_run(url, "CALL db.awaitIndexes(300)")
    neo4j_run(
        url,
        f"UNWIND range(0, $r - 1) AS j CALL {{ WITH j MATCH (a:{NEO4J_LABEL} {{id: j % $n}}) "
        f"MATCH (b:{NEO4J_LABEL} {{id: (j * 7919 + 13) % $n}}) CREATE (a)-[:{NEO4J_REL} "
        "{w: j % 100, kind: 'k' + (j % 5)}]->(b) } IN TRANSACTIONS OF 20000 ROWS",
        r=rels,
        n=nodes,
    )
    return {
        "nodes": nodes,
        "relationships": rels,
        "other_nodes_in_database": others,
        "load_s": round(time.perf_counter() - started, 2),
    }


def neo4j_change(url: str, nodes: int, percent: float, mode: str) -> dict[str, Any]:
    # picked() in Cypher: the same choice as the other engines.
    where = (
        "n.id >= $n - round($n * $p / 100)"
        if mode == "recent"
        else "((n.id * 2654435761 + 3 * 40503) % 1000003) % 10000 < $p * 100"
    )
    rows = neo4j_run(
        url,
        f"MATCH (n:{NEO4J_LABEL}) WHERE {where} SET n.price = n.price + 1.0, "
        "n.updated = date('2026-11-25') RETURN count(n) AS c",
        p=percent,
        n=nodes,
    )
    return {"percent": percent, "mode": mode, "nodes_modified": rows[0]["c"]}


def neo4j_export(url: str, out: Path) -> int:
    """The glue script: every node and relationship as gzip'd JSON lines
    (what "script it yourself with the driver" looks like). Returns lines."""

    def plain(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, bool | int | float | str) or value is None:
            return value
        return str(value)  # dates, times, durations, points

    lines = 0
    with (
        neo4j_driver(url) as driver,
        driver.session(fetch_size=2000) as session,
        gzip.open(out, "wt", compresslevel=6, encoding="utf-8") as f,
    ):
        nodes = session.run(
            "MATCH (n) RETURN elementId(n) AS id, labels(n) AS l, properties(n) AS p"
        )
        for rec in nodes:
            props = {k: plain(v) for k, v in rec["p"].items()}
            f.write(json.dumps(["n", rec["id"], rec["l"], props]) + "\n")
            lines += 1
        rels = session.run(
            "MATCH (a)-[r]->(b) RETURN type(r) AS t, elementId(a) AS s, elementId(b) AS e, "
            "properties(r) AS p"
        )
        for rec in rels:
            props = {k: plain(v) for k, v in rec["p"].items()}
            f.write(json.dumps(["r", rec["t"], rec["s"], rec["e"], props]) + "\n")
            lines += 1
    return lines


def neo4j_export_row(ctx: Context, url: str, label: str, tool: str) -> Row:
    out = ctx.workdir / f"neo4j-export-{label}.jsonl.gz"
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--neo4j-export",
        str(out),
        "--neo4j-url",
        url,
    ]
    row = Row(tool=tool, command=shlex.join(argv))

    def run() -> None:
        proc = timed(argv, ctx.env, ctx.logs, f"neo4j-export-{label}")
        row.wall_s, row.peak_rss_mib = proc.wall_s, proc.max_rss_kib / 1024
        if label == "first":
            row.stored_bytes = out.stat().st_size
        else:
            row.added_bytes = out.stat().st_size
            row.note = "a full export again: no deduplication"
        out.unlink()

    return measure(row, run)


def bench_neo4j(ctx: Context, res: EngineResult) -> None:
    args = ctx.args
    url = os.environ.get("DBFLEET_TEST_NEO4J_URL")
    scratch = os.environ.get("DBFLEET_TEST_NEO4J_SCRATCH_URL")
    if not url or not scratch:
        raise BenchError("DBFLEET_TEST_NEO4J_URL / _SCRATCH_URL not set (test-servers env.sh)")
    res.anchor = (
        "driver export of all nodes and relationships to gzip'd JSON lines "
        "(bench/sample_engines.py --neo4j-export)"
    )
    write_inventory(
        ctx,
        {
            "neo4j": {
                "engine": "neo4j",
                "url": url,
                "password_env": "DBFLEET_TEST_NEO4J_PASSWORD",
                "options": {"scratch_url": scratch},
            }
        },
    )
    try:
        print(
            f"loading {args.neo4j_nodes:,} nodes / {args.neo4j_rels:,} relationships ...",
            flush=True,
        )
        res.sample = neo4j_load(url, args.neo4j_nodes, args.neo4j_rels)
        print(f"  {res.sample}")
        if res.sample["other_nodes_in_database"]:
            print("  note: the database holds other nodes too; both tools back them up")
        res.first.append(neo4j_export_row(ctx, url, "first", "driver export | gzip > file"))
        first, second = dbfleet_rows(ctx, "neo4j")
        res.first.append(first)
        print(f"changing {args.change_percent:g} % of the nodes ...", flush=True)
        res.change = neo4j_change(url, args.neo4j_nodes, args.change_percent, args.change_mode)
        print(f"  {res.change}")
        res.second.append(neo4j_export_row(ctx, url, "second", "driver export (again)"))
        if first.error is None:
            row = Row(tool="dbfleet backup (second)")
            print(f"  {row.tool} ...", flush=True)
            measure_second(row, second)
            res.second.append(row)
    finally:
        if not args.keep_data:
            with contextlib.suppress(Exception):
                neo4j_drop(url)


@contextlib.contextmanager
def private_neo4j(ctx: Context, home: Path, port: int) -> Iterator[str]:
    """A Neo4j DBMS of the bench's own (the test launcher, one instance on
    ``home``, like tests/integration/fixtures_neo4j.py:own_dbms), stopped
    cleanly (SIGTERM) when the block ends. The password reaches it through a
    0600 file, never argv."""
    classpath = os.environ.get("DBFLEET_TEST_NEO4J_HOME")
    if not classpath:
        raise BenchError("DBFLEET_TEST_NEO4J_HOME (the launcher's classpath) is not set")
    if neo4j_bolt_open(port):
        raise BenchError(f"something listens on 127.0.0.1:{port}: choose --neo4j-offline-port")
    secret = home.parent / f".{home.name}.password"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(os.environ.get("DBFLEET_TEST_NEO4J_PASSWORD", ""))
    log = home.parent / f"{home.name}.log"
    cp = f"{classpath}/neo4j-launcher.jar:{classpath}/lib/*"
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                "java",
                "-Xmx512m",
                "-XX:+UseSerialGC",
                "-cp",
                cp,
                "dbfleet.testserver.Launcher",
                str(home),
                str(port),
            ],
            env={**os.environ, "NEO4J_LAUNCHER_PASSWORD_FILE": str(secret)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while b"launcher: all ready" not in log.read_bytes()[offset:]:
            if proc.poll() is not None:
                raise BenchError(f"the Neo4j launcher exited: {log.read_text()[-1500:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"the Neo4j launcher was not ready in 180 s (log: {log})")
            time.sleep(0.3)
        yield f"bolt://neo4j@127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        secret.unlink(missing_ok=True)


def neo4j_bolt_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def neo4j_admin_dump_row(ctx: Context, home: Path, label: str, tool: str) -> Row:
    admin = os.environ.get("DBFLEET_TEST_NEO4J_ADMIN") or shutil.which("neo4j-admin")
    if not admin:
        raise BenchError("neo4j-admin not found (DBFLEET_TEST_NEO4J_ADMIN or PATH)")
    target = ctx.workdir / f"neo4j-admin-dump-{label}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    argv = [
        admin,
        "database",
        "dump",
        "neo4j",
        f"--to-path={target}",
        "--overwrite-destination=true",
    ]
    env = {**ctx.env, "NEO4J_HOME": str(home), "NEO4J_CONF": str(home / "conf")}
    row = Row(tool=tool, command=f"NEO4J_HOME={home} {shlex.join(argv)}")

    def run() -> None:
        proc = timed(argv, env, ctx.logs, f"neo4j-offline-admin-dump-{label}")
        row.wall_s, row.peak_rss_mib = proc.wall_s, proc.max_rss_kib / 1024
        size = tree_bytes(target)
        if label == "first":
            row.stored_bytes = size
        else:
            row.added_bytes = size
            row.note = "a full dump again: neo4j-admin dumps do not deduplicate"
        shutil.rmtree(target, ignore_errors=True)

    return measure(row, run)


def bench_neo4j_offline(ctx: Context, res: EngineResult) -> None:
    """dbfleet's offline mode against ``neo4j-admin database dump``, both of a
    stopped private DBMS with the same sample as the logical benchmark."""
    args = ctx.args
    admin = os.environ.get("DBFLEET_TEST_NEO4J_ADMIN") or shutil.which("neo4j-admin") or ""
    res.anchor = (
        "neo4j-admin database dump neo4j --to-path (Neo4j's own offline dump) of a stopped "
        "private DBMS started by the bench (the test launcher)"
    )
    base = ctx.workdir / "neo4j-offline"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    home, port = base / "home", args.neo4j_offline_port
    write_inventory(
        ctx,
        {
            "neo4j-offline": {
                "engine": "neo4j",
                "url": f"bolt://neo4j@127.0.0.1:{port}",
                "password_env": "DBFLEET_TEST_NEO4J_PASSWORD",
                "options": {"mode": "offline", "neo4j_admin": admin, "neo4j_home": str(home)},
            }
        },
    )
    try:
        print(
            f"starting a private Neo4j DBMS on 127.0.0.1:{port} and loading "
            f"{args.neo4j_nodes:,} nodes / {args.neo4j_rels:,} relationships ...",
            flush=True,
        )
        with private_neo4j(ctx, home, port) as url:
            res.sample = neo4j_load(url, args.neo4j_nodes, args.neo4j_rels)
        print(f"  {res.sample} (DBMS stopped)")
        res.first.append(neo4j_admin_dump_row(ctx, home, "first", "neo4j-admin database dump"))
        first, second = dbfleet_rows(ctx, "neo4j-offline")
        first.tool = "dbfleet backup (mode: offline)"
        res.first.append(first)
        print(
            f"changing {args.change_percent:g} % of the nodes (DBMS started and stopped) ...",
            flush=True,
        )
        with private_neo4j(ctx, home, port) as url:
            res.change = neo4j_change(url, args.neo4j_nodes, args.change_percent, args.change_mode)
        print(f"  {res.change}")
        res.second.append(neo4j_admin_dump_row(ctx, home, "second", "neo4j-admin dump (again)"))
        if first.error is None:
            row = Row(tool="dbfleet backup (offline, second)")
            print(f"  {row.tool} ...", flush=True)
            measure_second(row, second)
            res.second.append(row)
    finally:
        if not args.keep_data:
            shutil.rmtree(base, ignore_errors=True)


# --- Weaviate -----------------------------------------------------------------------------


class Weaviate:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def request(self, method: str, path: str, body: Any = None, timeout: float = 300) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise BenchError(f"{method} {path}: {exc.code} {exc.read().decode()[:600]}") from None
        return json.loads(raw) if raw.strip() else None

    def ready(self) -> bool:
        try:
            self.request("GET", "/v1/.well-known/ready", timeout=2)
        except (OSError, BenchError):
            return False
        return True

    def batch(self, objects: list[dict[str, Any]]) -> None:
        results = self.request("POST", "/v1/batch/objects", {"objects": objects})
        errors = [r["result"]["errors"] for r in results if (r.get("result") or {}).get("errors")]
        if errors:
            raise BenchError(f"batch import: {errors[:3]}")


@contextlib.contextmanager
def private_weaviate(ctx: Context) -> Iterator[tuple[Weaviate, Path]]:
    """A second weaviate-server with backup-filesystem, settings as in
    scripts/servers/weaviate.sh, other ports, data in the workdir; stopped
    (SIGTERM, then SIGKILL after 60 s) when the block ends."""
    a = ctx.args
    binary = Path(a.weaviate_bin)
    if not os.access(binary, os.X_OK):
        raise BenchError(f"{binary} not found: run scripts/test-servers.sh start weaviate once")
    base = ctx.workdir / "weaviate"
    shutil.rmtree(base, ignore_errors=True)
    data, backups = base / "data", base / "backups"
    data.mkdir(parents=True, mode=0o700)
    backups.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "true",
        "AUTHENTICATION_APIKEY_ENABLED": "false",
        "PERSISTENCE_DATA_PATH": str(data),
        "DEFAULT_VECTORIZER_MODULE": "none",
        "ENABLE_MODULES": "backup-filesystem",
        "BACKUP_FILESYSTEM_PATH": str(backups),
        "API_BASED_MODULES_DISABLED": "true",
        "DISABLE_TELEMETRY": "true",
        "GO_PROFILING_DISABLE": "true",
        "QUERY_DEFAULTS_LIMIT": "25",
        "LOG_LEVEL": "warning",
        "CLUSTER_HOSTNAME": "node1",
        "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
        "CLUSTER_BIND_ADDR": "127.0.0.1",
        "CLUSTER_GOSSIP_BIND_PORT": str(a.weaviate_gossip_port),
        "CLUSTER_DATA_BIND_PORT": str(a.weaviate_gossip_port + 1),
        "RAFT_PORT": str(a.weaviate_raft_port),
        "RAFT_INTERNAL_RPC_PORT": str(a.weaviate_raft_port + 1),
        "RAFT_BOOTSTRAP_EXPECT": "1",
        "RAFT_JOIN": f"node1:{a.weaviate_raft_port + 1}",
        "GRPC_PORT": str(a.weaviate_grpc_port),
        "GO_MEMLIMIT": "2GiB",
    }
    url = f"http://127.0.0.1:{a.weaviate_port}"
    server = Weaviate(url)
    if server.ready():
        raise BenchError(f"something already answers on {url}: choose --weaviate-port")
    log = base / "weaviate.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "--host",
                "127.0.0.1",
                "--port",
                str(a.weaviate_port),
                "--scheme",
                "http",
            ],
            cwd=base,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while not server.ready():
            if proc.poll() is not None:
                raise BenchError(f"weaviate-server exited: {log.read_text()[-1500:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"weaviate-server not ready in 120 s (log: {log})")
            time.sleep(0.25)
        yield server, backups
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def weaviate_object(i: int, dims: int, version: int = 0) -> dict[str, Any]:
    rng = random.Random(i)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    props: dict[str, Any] = {
        "title": " ".join(rng.choices(WORDS, k=rng.randint(4, 12))),
        "n": i,
        "score": round(rng.random() * 100, 3),
        "tags": rng.sample(WORDS, 3),
        "created": (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=i * 7)).isoformat(),
    }
    if version:
        props["score"] = round(props["score"] + version, 3)
        props["tags"] = [*props["tags"], "updated"]
    return {
        "class": WEAVIATE_COLLECTION,
        "id": str(uuid.uuid5(WEAVIATE_NS, f"doc-{i}")),
        "vector": [round(v / norm, 7) for v in vector],
        "properties": props,
    }


def weaviate_load(server: Weaviate, objects: int, dims: int) -> dict[str, Any]:
    started = time.perf_counter()
    with contextlib.suppress(BenchError):
        server.request("DELETE", f"/v1/schema/{WEAVIATE_COLLECTION}")
    server.request(
        "POST",
        "/v1/schema",
        {
            "class": WEAVIATE_COLLECTION,
            "vectorizer": "none",
            "vectorIndexType": "hnsw",
            "vectorIndexConfig": {"distance": "cosine"},
            "properties": [
                {"name": "title", "dataType": ["text"]},
                {"name": "n", "dataType": ["int"]},
                {"name": "score", "dataType": ["number"]},
                {"name": "tags", "dataType": ["text[]"]},
                {"name": "created", "dataType": ["date"]},
            ],
        },
    )
    for start in range(0, objects, 200):
        server.batch([weaviate_object(i, dims) for i in range(start, min(objects, start + 200))])
    meta = server.request("GET", "/v1/meta")
    return {
        "collection": WEAVIATE_COLLECTION,
        "objects": objects,
        "dims": dims,
        "server_version": meta.get("version"),
        "load_s": round(time.perf_counter() - started, 2),
    }


def weaviate_change(
    server: Weaviate, objects: int, dims: int, percent: float, mode: str
) -> dict[str, Any]:
    """Re-imports the picked objects (same id and vector) with changed properties."""
    ids = [i for i in range(objects) if picked(i, objects, percent, 4, mode)]
    for start in range(0, len(ids), 200):
        server.batch([weaviate_object(i, dims, version=1) for i in ids[start : start + 200]])
    return {"percent": percent, "mode": mode, "objects_modified": len(ids)}


def weaviate_backup_row(
    server: Weaviate, backups: Path, label: str, tool: str, base: str | None
) -> Row:
    backup_id = f"bench-{label}-{int(time.time())}"
    body: dict[str, Any] = {"id": backup_id, "include": [WEAVIATE_COLLECTION]}
    if base:
        body["incremental_base_backup_id"] = base
    row = Row(tool=tool, command=f"POST /v1/backups/filesystem {json.dumps(body)}, poll status")

    def run() -> None:
        os.sync()
        started = time.perf_counter()
        server.request("POST", "/v1/backups/filesystem", body)
        while True:
            status = server.request("GET", f"/v1/backups/filesystem/{backup_id}")
            if status.get("status") == "SUCCESS":
                break
            if status.get("status") in ("FAILED", "CANCELED"):
                raise BenchError(f"backup {backup_id}: {status}")
            time.sleep(0.1)
        row.wall_s = time.perf_counter() - started
        size = tree_bytes(backups / backup_id)
        if label in ("first", "warmup"):
            row.stored_bytes = size
        else:
            row.added_bytes = size
        row.note = "server-side (no client process)"
        row.command += f" -> {backups / backup_id}"
        if base:
            # Weaviate ignores an unknown field: did it really build on the base?
            config = (backups / backup_id / "backup_config.json").read_text(errors="replace")
            if base not in config:
                row.tool = "backup-filesystem (full again)"
                row.note += (
                    "; the server ignored incremental_base_backup_id (no incremental "
                    "backups in this version), so this is a full backup"
                )

    row.extra["backup_id"] = backup_id
    return measure(row, run)


def bench_weaviate(ctx: Context, res: EngineResult) -> None:
    args = ctx.args
    res.anchor = (
        "Weaviate's backup-filesystem module (POST /v1/backups/filesystem until "
        "SUCCESS) on a private weaviate-server started by the bench"
    )
    write_inventory(
        ctx,
        {
            "weaviate": {
                "engine": "weaviate",
                "url": f"http://127.0.0.1:{args.weaviate_port}/{WEAVIATE_PREFIX}",
            }
        },
    )
    print(f"starting a private weaviate-server on 127.0.0.1:{args.weaviate_port} ...", flush=True)
    with private_weaviate(ctx) as (server, backups):
        print(
            f"loading {args.weaviate_objects:,} objects ({args.weaviate_dims} dims) ...", flush=True
        )
        res.sample = weaviate_load(server, args.weaviate_objects, args.weaviate_dims)
        print(f"  {res.sample}")
        # The first module backup after a bulk load also flushes the server's
        # memtables and commit logs; an untimed one first (like the PostgreSQL
        # benchmark's warm-up pg_dump), so both tools see a settled server.
        print("  warm-up (untimed): one backup-filesystem backup, then deleted", flush=True)
        warm = weaviate_backup_row(server, backups, "warmup", "backup-filesystem warm-up", None)
        res.sample["warmup_backup"] = {
            "wall_s": warm.wall_s,
            "bytes": warm.stored_bytes,
            "error": warm.error,
        }
        shutil.rmtree(backups / warm.extra["backup_id"], ignore_errors=True)
        anchor = weaviate_backup_row(server, backups, "first", "backup-filesystem", None)
        res.first.append(anchor)
        first, second = dbfleet_rows(ctx, "weaviate")
        res.first.append(first)
        print(f"changing {args.change_percent:g} % of the objects ...", flush=True)
        res.change = weaviate_change(
            server, args.weaviate_objects, args.weaviate_dims, args.change_percent, args.change_mode
        )
        print(f"  {res.change}")
        base = anchor.extra["backup_id"] if anchor.error is None else None
        row = weaviate_backup_row(server, backups, "second", "backup-filesystem, incremental", base)
        if row.error and base:
            row.note = f"incremental refused ({row.error}); full backup instead"
            full = weaviate_backup_row(
                server, backups, "second-full", "backup-filesystem (full)", None
            )
            full.note = row.note
            row = full
        res.second.append(row)
        if first.error is None:
            drow = Row(tool="dbfleet backup (second)")
            print(f"  {drow.tool} ...", flush=True)
            measure_second(drow, second)
            res.second.append(drow)
        res.sample["backups_dir_bytes"] = tree_bytes(backups)
        with contextlib.suppress(BenchError):
            server.request("DELETE", f"/v1/schema/{WEAVIATE_COLLECTION}")
    if not args.keep_data:
        shutil.rmtree(ctx.workdir / "weaviate", ignore_errors=True)


# --- output -------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    width = int(re.match(r"\d*", spec).group() or 0)  # type: ignore[union-attr]
    return "-".rjust(width) if value is None else format(value, spec)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MiB:,.2f} MiB"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(res: EngineResult) -> dict[str, float | None]:
    def pick(rows: list[Row], dbfleet: bool) -> Row | None:
        return next(
            (r for r in rows if r.tool.startswith("dbfleet") == dbfleet and not r.error), None
        )

    def ratio(attr: str, rows: list[Row]) -> float | None:
        d, a = pick(rows, True), pick(rows, False)
        if d is None or a is None:
            return None
        return _ratio(getattr(d, attr), getattr(a, attr))

    return {
        "first_wall": ratio("wall_s", res.first),
        "first_stored": ratio("stored_bytes", res.first),
        "first_peak_rss": ratio("peak_rss_mib", res.first),
        "second_wall": ratio("wall_s", res.second),
        "second_added": ratio("added_bytes", res.second),
    }


def _row(engine: str, r: Row, size: int | None, reported: int | None) -> str:
    if r.error:
        return f"{engine:<13} {r.tool:<34} FAILED: {r.error[:300]}"
    return (
        f"{engine:<13} {r.tool:<34} {_fmt(r.wall_s, '7.2f')} {_fmt(r.tool_s, '8.2f')} "
        f"{_fmt(r.peak_rss_mib, '9.1f')} {_mib(r.logical_bytes):>12} {_mib(size):>12} "
        f"{_mib(reported):>12}"
    )


def _ratio_row(engine: str, wall: float | None, rss: float | None, size: float | None) -> str:
    def x(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}x"

    return (
        f"{engine:<13} {'dbfleet / anchor':<34} {x(wall):>7} {'':>8} {x(rss):>9} {'':>12} "
        f"{x(size):>12}"
    )


def print_report(results: list[EngineResult]) -> None:
    cols = (
        f"{'engine':<13} {'tool':<34} {'wall s':>7} {'in-tool':>8} {'peak MiB':>9} "
        f"{'logical':>12} {{:>12}} {'reported':>12}"
    )
    print()
    print("first backup")
    header = cols.format("stored")
    print(header)
    print("-" * len(header))
    for res in results:
        if res.error and not res.first:
            print(f"{res.engine:<13} FAILED: {res.error}")
        for r in res.first:
            print(_row(res.engine, r, r.stored_bytes, r.reported_bytes))
        if res.first:
            q = ratios(res)
            print(_ratio_row(res.engine, q["first_wall"], q["first_peak_rss"], q["first_stored"]))
    print()
    print("second backup, after the change")
    header = cols.format("added")
    print(header)
    print("-" * len(header))
    for res in results:
        for r in res.second:
            print(_row(res.engine, r, r.added_bytes, r.reported_bytes))
        if res.second:
            q = ratios(res)
            print(_ratio_row(res.engine, q["second_wall"], None, q["second_added"]))
    print()
    for res in results:
        print(f"{res.engine}: anchor: {res.anchor}")
        print(f"  sample: {res.sample}")
        print(f"  change: {res.change}")
        for r in res.first + res.second:
            if r.note:
                print(f"  {r.tool}: {r.note}")
        if res.error:
            print(f"  FAILED: {res.error}")
    print()


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Compare dbfleet's MongoDB, Neo4j and Weaviate backups with the native tools."
    )
    p.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="comma-separated subset of " + ",".join(ENGINES) + " (default: all)",
    )
    p.add_argument(
        "--mongo-docs",
        type=int,
        default=30_000,
        help="documents (1/6 customers, 5/6 orders; default 30000)",
    )
    p.add_argument("--neo4j-nodes", type=int, default=50_000, help="nodes (default 50000)")
    p.add_argument("--neo4j-rels", type=int, default=150_000, help="relationships (default 150000)")
    p.add_argument("--weaviate-objects", type=int, default=20_000, help="objects (default 20000)")
    p.add_argument("--weaviate-dims", type=int, default=384, help="vector dimensions (384)")
    p.add_argument(
        "--change-percent",
        type=float,
        default=1.0,
        help="share changed before the second backup (default 1)",
    )
    p.add_argument(
        "--change-mode",
        choices=("spread", "recent"),
        default="spread",
        help="which records change: spread (hash-picked all over, default) or recent "
        "(the highest ids)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/dbfleet-bench-engines"),
        help="repositories, dumps, logs, the private Weaviate's data",
    )
    p.add_argument("--dbfleet", default="dbfleet", help="dbfleet command (default: dbfleet)")
    p.add_argument(
        "--neo4j-offline-port",
        type=int,
        default=37687,
        help="Bolt port of the private DBMS of neo4j-offline (37687)",
    )
    p.add_argument("--weaviate-bin", default=str(WEAVIATE_BIN), help="weaviate-server binary")
    p.add_argument("--weaviate-port", type=int, default=28080, help="private REST port (28080)")
    p.add_argument("--weaviate-grpc-port", type=int, default=25051)
    p.add_argument(
        "--weaviate-gossip-port",
        type=int,
        default=27946,
        help="gossip port; the data port is the next one (27946/27947)",
    )
    p.add_argument(
        "--weaviate-raft-port",
        type=int,
        default=28300,
        help="Raft port; its RPC port is the next one (28300/28301)",
    )
    p.add_argument(
        "--keep-data",
        action="store_true",
        help="leave the sample data in the servers (default: dropped)",
    )
    p.add_argument(
        "--output",
        type=Path,
        help="results JSON (default bench/results/sample_engines-<timestamp>.json)",
    )
    # internal: the Neo4j anchor, run as its own timed process
    p.add_argument("--neo4j-export", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--neo4j-url", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.neo4j_export:
        lines = neo4j_export(args.neo4j_url, args.neo4j_export)
        print(f"{lines} lines")
        return 0
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"unknown engines: {sorted(unknown)}")
    workdir: Path = args.workdir.resolve()
    logs = workdir / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    env = dict(os.environ)
    env.setdefault("DBFLEET_PASSPHRASE", PASSPHRASE)
    env["LC_ALL"] = "C"
    ctx = Context(
        workdir=workdir,
        logs=logs,
        env=env,
        dbfleet=shlex.split(args.dbfleet),
        config=workdir / "dbfleet.yaml",
        args=args,
    )
    stamp = time.strftime("%Y%m%dT%H%M%S")
    benches = {
        "mongodb": bench_mongodb,
        "neo4j": bench_neo4j,
        "neo4j-offline": bench_neo4j_offline,
        "weaviate": bench_weaviate,
    }
    results: list[EngineResult] = []
    started = time.perf_counter()
    for engine in engines:
        print(f"== {engine}", flush=True)
        res = EngineResult(engine=engine)
        try:
            benches[engine](ctx, res)
        except Exception as exc:  # one engine failing must not stop the others
            res.error = f"{type(exc).__name__}: {exc}"
            print(f"  FAILED: {res.error}")
        results.append(res)
    total = time.perf_counter() - started
    tools = os.environ.get("DBFLEET_MONGODB_TOOLS", "")
    result = {
        "benchmark": "sample_engines",
        "timestamp": stamp,
        "command": shlex.join([sys.executable, *sys.argv]),
        "total_s": round(total, 1),
        "machine": {
            "hostname": platform.node(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {
            "dbfleet": version_of([*ctx.dbfleet, "--version"]),
            "mongodump": version_of([os.path.join(tools, "mongodump"), "--version"])
            if tools
            else "unknown",
            "time": "GNU time" if os.access(TIME_BIN, os.X_OK) else "getrusage wrapper",
        },
        "memory_note": "peak = max RSS of the process and its waited-for children (GNU time "
        "%M); the Weaviate module's backup runs inside the server (no client process)",
        "engines": [{**asdict(r), "ratios": ratios(r)} for r in results],
    }
    print_report(results)
    print(f"total {total:.0f} s")
    out = args.output or RESULTS_DIR / f"sample_engines-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results written to {out}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
