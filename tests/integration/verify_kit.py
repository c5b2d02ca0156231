"""Back an engine's location up and ``verify`` it the way the CLI does:
through an inventory with an in-memory repository (``backup_many``, then
``verify_snapshot``: restore into a scratch target, fingerprint, drop)."""

from __future__ import annotations

import secrets

import pytest

from dbfleet.config import DatabaseConfig, parse_inventory
from dbfleet.operations.backup import BackupResult, backup_many
from dbfleet.operations.common import Repositories
from dbfleet.operations.repository import init_repository
from dbfleet.operations.restore import VerifyResult, verify_snapshot
from dbfleet.repo import Repository, Snapshot
from tests.integration.conftest import FAST_KDF

REPO_PASSPHRASE_ENV = "DBFLEET_TEST_VERIFY_KIT_PW"


def inventory_for(config: DatabaseConfig, monkeypatch: pytest.MonkeyPatch) -> Repositories:
    """An inventory whose one database ``db`` is ``config``, in a new
    in-memory repository ``mem``."""
    monkeypatch.setenv(REPO_PASSPHRASE_ENV, "verify-kit")
    entry = config.model_dump(mode="json", exclude_defaults=True)
    inventory = parse_inventory({
        "repositories": {"mem": {"url": f"memory://verify-{secrets.token_hex(6)}",
                                 "passphrase_env": REPO_PASSPHRASE_ENV}},
        "databases": {"db": entry},
    })  # fmt: skip
    init_repository(inventory, "mem", kdf=FAST_KDF)
    return Repositories(inventory)


def backup_db(repos: Repositories) -> tuple[BackupResult, Repository, Snapshot]:
    """Back ``db`` up as ``dbfleet backup db`` does; the new snapshot."""
    (done,) = backup_many(repos, ["db"])
    assert done.ok, done.error
    repo = repos.for_database("db")
    (snapshot,) = [s for s in repo.list_snapshots() if s.id == done.snapshot]
    return done, repo, snapshot


def backup_and_verify(
    config: DatabaseConfig, monkeypatch: pytest.MonkeyPatch
) -> tuple[BackupResult, VerifyResult]:
    repos = inventory_for(config, monkeypatch)
    done, _, _ = backup_db(repos)
    return done, verify_snapshot(repos, "db:latest")
