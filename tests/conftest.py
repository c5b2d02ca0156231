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

# Generated-data suites (tests/generated/) draw their cases with Hypothesis.
# "ci" (the default) is small and derandomized so CI is repeatable and stays
# within a few minutes; `pytest --hypothesis-profile=deep` draws many more,
# random cases on demand. A failing case found there is kept as an
# `@example` (or a seed) in the test that found it.
from hypothesis import HealthCheck, settings  # noqa: E402

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=10, deadline=None, derandomize=True, suppress_health_check=_SLOW_OK
)
settings.register_profile("deep", max_examples=200, deadline=None, suppress_health_check=_SLOW_OK)
settings.load_profile("ci")


def generated_examples(ci: int) -> int:
    """How many cases a generated-data test draws: ``ci`` under the default
    profile (each case is a real backup and restore, so keep it small), 20x
    that under ``--hypothesis-profile=deep``."""
    return ci if settings.default.max_examples <= 10 else ci * 20
