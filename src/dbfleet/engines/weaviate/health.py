"""Weaviate health sample over its REST API.

Readings: readiness (``/v1/.well-known/ready``: not ready is ``up=False``);
in ``extra`` the node count and statuses, collections in the entry's
namespace and their object count (the nodes API's per-shard estimate).
Weaviate has no connection limit, cache counters, locks, transactions or
size report over its API (``/v1/nodes`` gives objects, not bytes): those
readings are ``None``. Every call is bounded by ``timeout``.
"""

from __future__ import annotations

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.health import take_sample, with_options
from dbfleet.engines.base import HealthSample
from dbfleet.engines.weaviate import WeaviateEngine
from dbfleet.errors import EngineError


class WeaviateHealthSampler:
    """:class:`~dbfleet.engines.base.HealthSampler` for a Weaviate entry."""

    def __init__(self, database: str, config: DatabaseConfig) -> None:
        self.database = database
        self.config = config

    def sample(self, timeout: float) -> HealthSample:
        return take_sample(self.database, "weaviate", self.config, timeout, self._collect)

    def _collect(self, sample: HealthSample, timeout: float) -> None:
        engine = WeaviateEngine(with_options(self.config, timeout=timeout))
        client = engine._client()  # noqa: SLF001 - same package
        try:
            meta = client.meta()
            client.request("GET", "/v1/.well-known/ready")
            collections = engine._collections(client)  # noqa: SLF001
            nodes = client.request("GET", "/v1/nodes", params={"output": "verbose"}) or {}
        finally:
            client.close()
        sample.version = str(meta.get("version"))
        names = {str(c["class"]) for c in collections}
        objects = 0
        statuses = {}
        for node in nodes.get("nodes") or []:
            statuses[str(node.get("name"))] = node.get("status")
            for shard in node.get("shards") or []:
                if shard.get("class") in names:
                    objects += int(shard.get("objectCount") or 0)
        sample.extra.update(collections=len(names), objects_estimate=objects, nodes=statuses)
        unhealthy = [f"{n}: {s}" for n, s in statuses.items() if s != "HEALTHY"]
        if unhealthy:
            raise EngineError(f"Weaviate nodes not healthy: {', '.join(unhealthy)}")
        if engine.location.prefix and not names:
            # as ``dbfleet health`` says: the entry's namespace holds nothing
            raise EngineError(f"no Weaviate collection starts with {engine.location.prefix!r}")
