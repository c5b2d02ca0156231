"""Repository administration: init, check, keys, unlock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbfleet.config import Inventory
from dbfleet.engines.registry import change_archives
from dbfleet.errors import RepositoryError
from dbfleet.operations.common import Repositories
from dbfleet.repo import Repository
from dbfleet.repo.check import CheckReport, check_repository
from dbfleet.repo.debris import DebrisRemoval, remove_stale_unfinished
from dbfleet.repo.lock import LockInfo, remove_stale_locks, repository_lock
from dbfleet.secrets import repository_passphrase
from dbfleet.storage import Storage, open_storage


def repository_names(inventory: Inventory, name: str | None) -> list[str]:
    if name:
        inventory.repository(name)
        return [name]
    if not inventory.repositories:
        raise RepositoryError("the inventory defines no repositories")
    return list(inventory.repositories)


def init_repository(
    inventory: Inventory, name: str, kdf: dict[str, int] | None = None
) -> dict[str, Any]:
    config = inventory.repository(name)
    passphrase = repository_passphrase(name, config, confirm=True)
    storage = open_storage(config.url, config)
    _create_bucket_if_missing(storage)
    repo = Repository.init(storage, passphrase, kdf)
    return {"repository": name, "url": config.url, "id": repo.config["id"]}


def _create_bucket_if_missing(storage: Storage) -> None:
    """S3: create the bucket at init (restic does too). Checked first, because
    credentials limited to objects may not create buckets."""
    from dbfleet.storage.s3 import S3Storage

    inner = getattr(storage, "inner", storage)
    if isinstance(inner, S3Storage) and not inner.bucket_exists():
        inner.create_bucket()


def check(
    repos: Repositories,
    name: str,
    *,
    read_data: bool = False,
    on_pack: Callable[[int, int], None] | None = None,
) -> CheckReport:
    repo = repos.get(name)
    with repository_lock(repo.storage, exclusive=False, operation="check"):
        report = check_repository(repo, read_data=read_data, on_pack=on_pack)
        for archive in change_archives():
            archive.check(repo, report, read_data=read_data)
        return report


@dataclass
class UnlockResult:
    locks: list[LockInfo] = field(default_factory=list)
    unfinished: DebrisRemoval = field(default_factory=DebrisRemoval)


def unlock(repos: Repositories, name: str) -> UnlockResult:
    """Remove stale locks, and the stale unfinished writes (temporary files,
    incomplete uploads) that killed processes left (see repo.debris)."""
    storage = repos.get(name).storage
    return UnlockResult(remove_stale_locks(storage), remove_stale_unfinished(storage))
