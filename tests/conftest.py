"""Fixtures shared across test folders: each engine's server fixtures live in
``tests/integration/fixtures_<engine>.py`` and are registered here, so the
integration tests and the engine conformance suite both see them."""

import importlib.util
import os
import tempfile

_PLUGINS = [
    "tests.integration.fixtures_mysql",
    "tests.integration.fixtures_redis",
    "tests.integration.fixtures_clickhouse",
    "tests.integration.fixtures_influxdb",
    "tests.integration.fixtures_mongodb",
    "tests.integration.fixtures_neo4j",
    "tests.integration.fixtures_weaviate",
    "tests.integration.fixtures_s3",
]
pytest_plugins = [name for name in _PLUGINS if importlib.util.find_spec(name) is not None]

# Remote repositories cache their manifests under ~/.cache/dbfleet; tests (and
# the CLI processes they start, which inherit this) use a private directory.
os.environ.setdefault("DBFLEET_CACHE_DIR", tempfile.mkdtemp(prefix="dbfleet-test-cache-"))
