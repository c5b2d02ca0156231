"""Benchmark: ``dbfleet snapshots`` on an S3 repository with many snapshots,
without and with the local manifest/index cache. Prints the figures; not part
of the test run.

    source /tmp/dbfleet-test-servers/env.sh   # the MinIO test server
    python bench/metadata_cache.py [--snapshots 300]

Fills a fresh prefix of the test bucket with N small snapshots (through the
repository API, fast), then times ``dbfleet snapshots --json`` in fresh
processes: with ``DBFLEET_NO_CACHE=1`` (one GET per manifest, as before the
cache), then a first cached run (fills the cache) and a warm one. Each
figure is the median of three runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dbfleet.config import S3Options
from dbfleet.repo import BackupWriter, Repository, Snapshot
from dbfleet.storage.s3 import S3Storage, resolve_credentials

PASSPHRASE = "bench-cache-passphrase"
KDF = {"n": 2**14, "r": 8, "p": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshots", type=int, default=300)
    args = parser.parse_args()
    endpoint = os.environ.get("DBFLEET_TEST_S3_ENDPOINT")
    if not endpoint:
        sys.exit(
            "source /tmp/dbfleet-test-servers/env.sh first (scripts/test-servers.sh start minio)"
        )
    bucket = os.environ.get("DBFLEET_TEST_S3_BUCKET", "dbfleet-test")
    prefix = f"bench/cache-{secrets.token_hex(4)}"
    options = S3Options(
        endpoint=endpoint,
        region="us-east-1",
        access_key_env="DBFLEET_TEST_S3_ACCESS_KEY",
        secret_key_env="DBFLEET_TEST_S3_SECRET_KEY",
        path_style=True,
    )
    storage = S3Storage(bucket, prefix, resolve_credentials(options), endpoint=endpoint)
    try:
        repo = Repository.init(storage, PASSPHRASE, KDF)
        began = time.monotonic()
        for n in range(args.snapshots):
            now = datetime.now(UTC)
            with BackupWriter(repo, workers=1) as writer:
                writer.write_stream("data", io.BytesIO(n.to_bytes(4, "big") * 1000))
                writer.commit(
                    Snapshot(database=f"db{n % 10}", engine="raw", hostname="bench",
                             started=now, finished=now)
                )  # fmt: skip
        print(f"{args.snapshots} snapshots written in {time.monotonic() - began:.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            inventory = Path(tmp) / "dbfleet.yaml"
            inventory.write_text(
                json.dumps(
                    {
                        "repositories": {
                            "s3": {
                                "url": f"s3://{bucket}/{prefix}",
                                "passphrase_env": "BENCH_PASSPHRASE",
                                "s3": options.model_dump(exclude_none=True),
                            }
                        },
                        "databases": {},
                    }
                )
            )
            env = {**os.environ, "BENCH_PASSPHRASE": PASSPHRASE,
                   "DBFLEET_CACHE_DIR": str(Path(tmp) / "cache")}  # fmt: skip
            argv = ["dbfleet", "--config", str(inventory), "snapshots", "--repo", "s3", "--json"]

            def timed(extra: dict[str, str]) -> float:
                began = time.monotonic()
                proc = subprocess.run(argv, env={**env, **extra}, capture_output=True, text=True)
                elapsed = time.monotonic() - began
                if proc.returncode != 0 or len(json.loads(proc.stdout)) != args.snapshots:
                    sys.exit(f"snapshots failed: {proc.stderr.strip()}")
                return elapsed

            uncached = statistics.median(timed({"DBFLEET_NO_CACHE": "1"}) for _ in range(3))
            first = timed({})
            warm = statistics.median(timed({}) for _ in range(3))
            print(f"dbfleet snapshots, {args.snapshots} snapshots on MinIO (loopback):")
            print(f"  no cache    {uncached:6.2f} s")
            print(f"  cold cache  {first:6.2f} s (fills it)")
            print(f"  warm cache  {warm:6.2f} s  ({uncached / warm:.1f}x faster)")
    finally:
        for info in list(storage.list()):
            storage.delete(info.name)
        storage.close()


if __name__ == "__main__":
    main()
