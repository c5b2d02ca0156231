"""MinIO fixtures (a pytest plugin, registered in ``tests/conftest.py``) for the
S3 storage backend: the storage conformance suite and the integration tests.

``s3_server`` describes the MinIO server that ``scripts/test-servers.sh start
minio`` runs (settings from ``DBFLEET_TEST_S3_*``, else the script's env file)
and creates the test bucket with :meth:`S3Storage.create_bucket`. Locally a
missing server skips with a hint; under CI (``CI`` set) it fails.

``s3_storage`` hands out fresh ``S3Storage`` instances, each under its own
random prefix of the bucket, and deletes everything below those prefixes
afterwards (objects and unfinished multipart uploads).
"""

from __future__ import annotations

import os
import secrets
import shlex
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dbfleet.config import S3Options
from dbfleet.storage.s3 import S3Storage, resolve_credentials
from tests.integration.conftest import _unavailable as unavailable

STATE = Path(os.environ.get("DBFLEET_TEST_STATE", "/tmp/dbfleet-test-servers"))
ACCESS_KEY_ENV = "DBFLEET_TEST_S3_ACCESS_KEY"
SECRET_KEY_ENV = "DBFLEET_TEST_S3_SECRET_KEY"


def _load_env_file() -> None:
    """Export the variables of the script's env file that are not set yet."""
    path = STATE / "env.sh"
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            os.environ.setdefault(name, value)


def _unavailable(what: str) -> None:
    unavailable(what, "run scripts/test-servers.sh start minio")


@dataclass
class S3Server:
    """The MinIO test server and its bucket. Credentials stay in the
    environment variables ``ACCESS_KEY_ENV``/``SECRET_KEY_ENV``, which is how
    a dbfleet inventory names them too."""

    endpoint: str
    bucket: str

    def options(self, **changes: Any) -> S3Options:
        settings: dict[str, Any] = {
            "endpoint": self.endpoint,
            "region": "us-east-1",
            "access_key_env": ACCESS_KEY_ENV,
            "secret_key_env": SECRET_KEY_ENV,
            "path_style": True,
        }
        settings.update(changes)
        return S3Options(**settings)

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def storage(self, prefix: str, **kwargs: Any) -> S3Storage:
        """An ``S3Storage`` for ``prefix``; ``kwargs`` go to its constructor
        (``part_size``, ``list_page_size``, ...)."""
        settings: dict[str, Any] = {"endpoint": self.endpoint, "region": "us-east-1"}
        settings.update(kwargs)
        return S3Storage(self.bucket, prefix, resolve_credentials(self.options()), **settings)

    def purge(self, prefix: str) -> None:
        """Delete every object and unfinished upload below ``prefix``."""
        assert prefix.strip("/"), "refusing to purge the whole bucket"
        storage = self.storage(prefix)
        try:
            for info in list(storage.list()):
                storage.delete(info.name)
            storage.abort_incomplete_uploads(older_than=0)
        finally:
            storage.close()


def new_prefix(label: str) -> str:
    return f"tests/{label}-{secrets.token_hex(6)}"


@pytest.fixture(scope="session")
def s3_server() -> S3Server:
    if not os.environ.get("DBFLEET_TEST_S3_ENDPOINT"):
        _load_env_file()
    endpoint = os.environ.get("DBFLEET_TEST_S3_ENDPOINT")
    bucket = os.environ.get("DBFLEET_TEST_S3_BUCKET", "dbfleet-test")
    if not endpoint or not os.environ.get(ACCESS_KEY_ENV) or not os.environ.get(SECRET_KEY_ENV):
        _unavailable("MinIO test server not configured (DBFLEET_TEST_S3_ENDPOINT)")
    assert endpoint is not None
    try:
        with urllib.request.urlopen(f"{endpoint}/minio/health/live", timeout=5) as answer:
            answer.read()
    except (urllib.error.URLError, OSError) as exc:
        _unavailable(f"MinIO test server at {endpoint} unreachable ({exc})")
    server = S3Server(endpoint, bucket)
    storage = server.storage("")
    try:
        storage.create_bucket()
    finally:
        storage.close()
    return server


@pytest.fixture
def s3_storage(s3_server: S3Server) -> Iterator[Callable[..., S3Storage]]:
    """Makes fresh S3Storage instances under unique prefixes; purges them after."""
    made: list[tuple[str, S3Storage]] = []

    def make(label: str = "store", **kwargs: Any) -> S3Storage:
        prefix = new_prefix(label)
        storage = s3_server.storage(prefix, **kwargs)
        made.append((prefix, storage))
        return storage

    yield make
    for prefix, storage in made:
        storage.close()
        s3_server.purge(prefix)
