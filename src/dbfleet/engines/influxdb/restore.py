"""Steps of an InfluxDB restore around ``influxd restore``: the portable
backup directory it reads (and the manifest ``influxd backup`` writes),
waiting for restored shards to load, and copying retention policies."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

from dbfleet.engines.base import StreamSource
from dbfleet.engines.influxdb.api import Client, QueryError, ident, measurements
from dbfleet.errors import EngineError

READY_SECONDS = 60
LOADING_ERRORS = ("shard is disabled", "engine is closed")


def read_manifest(directory: Path) -> dict[str, Any]:
    found = sorted(directory.glob("*.manifest"))
    if len(found) != 1:
        raise EngineError(f"influxd backup wrote {len(found)} manifests into {directory}")
    manifest: dict[str, Any] = json.loads(found[0].read_text())
    return manifest


def materialize(source: StreamSource, document: dict[str, Any], directory: Path) -> None:
    """The portable backup directory ``influxd restore`` reads: every stream
    is read (and verified) here, before the target is touched."""
    stamp = "dbfleet"
    meta = directory / f"{stamp}.meta"
    with open(meta, "wb") as out:
        for chunk in source.open_stream("meta"):
            out.write(chunk)
    files = []
    for entry in document["shards"]:
        name = f"{stamp}.s{entry['shard']}.tar.gz"
        size = 0
        with gzip.open(directory / name, "wb", compresslevel=1) as out:
            for chunk in source.open_stream(entry["stream"]):
                out.write(chunk)
                size += len(chunk)
        files.append({"database": document["database"], "policy": entry["policy"],
                      "shardID": entry["shard"], "fileName": name, "size": size,
                      "lastModified": 0})  # fmt: skip
    manifest = {"meta": {"fileName": meta.name, "size": meta.stat().st_size},
                "limited": False, "files": files}  # fmt: skip
    (directory / f"{stamp}.manifest").write_text(json.dumps(manifest))


def wait_ready(client: Client, database: str) -> None:
    """Restored shards are briefly unusable until influxd has loaded them:
    queries answer "shard is disabled" or, while a shard's storage engine
    is being reopened, "engine is closed"."""
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            measurements(client, database)
            return
        except QueryError as exc:
            loading = any(text in exc.message for text in LOADING_ERRORS)
            if not loading or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def copy_policies(client: Client, source_db: str, target: str, created: bool) -> None:
    have = {str(v[0]) for v in client.values(f"SHOW RETENTION POLICIES ON {ident(target)}")}
    for name, duration, shard_duration, replicas, default in client.values(
        f"SHOW RETENTION POLICIES ON {ident(source_db)}"
    ):
        verb = "ALTER" if name in have else "CREATE"
        if verb == "ALTER" and not created:
            continue  # the target's own policies stay as they are
        statement = (
            f"{verb} RETENTION POLICY {ident(name)} ON {ident(target)} DURATION {duration}"
            f" REPLICATION {replicas} SHARD DURATION {shard_duration}"
        )
        client.query(statement + (" DEFAULT" if default and created else ""))
