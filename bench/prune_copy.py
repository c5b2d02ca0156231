"""Benchmark: prune on a repository with many snapshots, and copy's upload
savings. Prints the figures; not part of the test run.

    python bench/prune_copy.py [--snapshots 200] [--size-mib 8] [--workdir DIR]

Builds a local repository with N snapshots of one synthetic database (each
backup changes ~2% of a mostly-compressible stream and appends a little),
forgets all but a GFS-like subset, then times ``dbfleet prune`` in a fresh
process and reads its peak RSS. Then copies the two newest snapshots to a
second repository and reports the bytes the second copy uploaded.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dbfleet.repo import BackupWriter, Repository, Snapshot
from dbfleet.storage import LocalStorage

KDF = {"n": 2**14, "r": 8, "p": 1}
PASSPHRASE = "bench-prune-passphrase"


def dataset(size: int, generation: int) -> bytes:
    rng = random.Random(42)
    words = [f"w{i}".encode() for i in range(3000)]
    lines = []
    total = 0
    while total < size:
        line = b" ".join(rng.choices(words, k=12)) + b"\n"
        lines.append(line)
        total += len(line)
    edit = random.Random(generation)
    window = max(1, len(lines) // 50)  # ~2% of the lines, in one region (like recent rows)
    first = edit.randrange(len(lines) - window)
    for i in range(first, first + window):
        lines[i] = f"gen {generation} {edit.random()}\n".encode()
    lines.append(f"appended in generation {generation}\n".encode() * 50)
    return b"".join(lines)


def build(workdir: Path, snapshots: int, size: int) -> Path:
    path = workdir / "repo"
    shutil.rmtree(path, ignore_errors=True)
    repo = Repository.init(LocalStorage(path), PASSPHRASE, KDF)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(snapshots):
        when = start + timedelta(hours=12 * i)
        with BackupWriter(repo) as writer:
            writer.write_stream("dump", io.BytesIO(dataset(size, i)))
            writer.commit(
                Snapshot(
                    database="bench", engine="raw", hostname="bench", started=when, finished=when
                )
            )
    return path


def inventory(workdir: Path) -> Path:
    config = workdir / "dbfleet.yaml"
    config.write_text(
        "repositories:\n"
        f"  main:\n    url: file://{workdir / 'repo'}\n"
        "    retention: {keep_last: 3, keep_daily: 7, keep_weekly: 4, keep_monthly: 12}\n"
        f"  offsite:\n    url: file://{workdir / 'offsite'}\n"
        "databases: {}\n"
    )
    return config


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) of the child, stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    began = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before), proc.stdout


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=200)
    parser.add_argument("--size-mib", type=float, default=8.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dbfleet-bench-prune"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DBFLEET_PASSPHRASE": PASSPHRASE}
    dbfleet = [sys.executable, "-m", "dbfleet", "--config", str(inventory(args.workdir))]

    began = time.monotonic()
    build(args.workdir, args.snapshots, int(args.size_mib * 1024 * 1024))
    print(
        f"built {args.snapshots} snapshots of {args.size_mib} MiB in "
        f"{time.monotonic() - began:.1f}s; repository {du(args.workdir / 'repo') / 2**20:.1f} MiB"
    )

    wall, _, out = run([*dbfleet, "forget", "--repo", "main", "--json"], env)
    (group,) = json.loads(out)
    print(f"forget: kept {len(group['keep'])}, removed {len(group['remove'])} in {wall:.2f}s")

    before = du(args.workdir / "repo")
    wall, peak, out = run([*dbfleet, "prune", "main", "--json"], env)
    (stats,) = json.loads(out)
    after = du(args.workdir / "repo")
    print(
        f"prune: {wall:.2f}s wall, peak RSS {peak / 1024:.1f} MiB; packs {stats['packs_total']} "
        f"-> kept {stats['packs_kept']}, deleted {stats['packs_deleted']}, repacked "
        f"{stats['packs_repacked']}; repository {before / 2**20:.1f} -> {after / 2**20:.1f} MiB"
    )
    run([*dbfleet, "repo", "check", "main", "--read-data"], env)
    print("repo check --read-data after prune: ok")

    shutil.rmtree(args.workdir / "offsite", ignore_errors=True)
    run([*dbfleet, "repo", "init", "offsite"], env)
    listed = json.loads(run([*dbfleet, "snapshots", "--repo", "main", "--json"], env)[2])
    older, newer = listed[-2]["id"], listed[-1]["id"]
    first = json.loads(
        run([*dbfleet, "copy", older, "--from", "main", "--to", "offsite", "--json"], env)[2]
    )[0]
    second = json.loads(
        run([*dbfleet, "copy", newer, "--from", "main", "--to", "offsite", "--json"], env)[2]
    )[0]
    print(
        f"copy: first snapshot uploaded {first['added_bytes'] / 2**20:.2f} MiB of "
        f"{first['size'] / 2**20:.2f} MiB; second (shares most chunks) uploaded "
        f"{second['added_bytes'] / 2**20:.2f} MiB of {second['size'] / 2**20:.2f} MiB"
    )


if __name__ == "__main__":
    main()
