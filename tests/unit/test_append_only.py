"""Append-only keys: they back up and restore, but cannot remove anything."""

from __future__ import annotations

import json

import pytest
from repokit import FAST_KDF, RepoKit

from dbfleet.errors import RepositoryError
from dbfleet.repo import Repository
from dbfleet.repo.prune import prune


def test_append_key_adds_and_reads_but_never_removes(kit: RepoKit) -> None:
    admin = kit.init()
    kept = kit.backup(admin, kit.random(1 << 20, seed=1))
    admin.add_key("append-only secret", FAST_KDF, role="append")

    backup_host = Repository.open(admin.storage, "append-only secret")
    assert backup_host.role == "append"
    new = kit.backup(backup_host, kit.random(1 << 20, seed=2))
    assert kit.restore(backup_host, backup_host.load_snapshot(kept.id)) == kit.random(1 << 20)
    backup_host.pin(new.id)  # adding protection is allowed

    for forbidden in (
        lambda: backup_host.delete_snapshot(kept.id),
        lambda: prune(backup_host),
        lambda: backup_host.add_key("another", FAST_KDF, role="admin"),
        lambda: backup_host.remove_key(admin.key_name.removeprefix("keys/")),
        lambda: backup_host.unpin(new.id),
    ):
        with pytest.raises(RepositoryError, match="administrator key"):
            forbidden()
    assert {s.id for s in kit.reopen(admin).list_snapshots()} == {kept.id, new.id}
    prune(backup_host, dry_run=True)  # looking is fine


def test_role_is_authenticated_not_taken_from_the_plaintext_field(kit: RepoKit) -> None:
    admin = kit.init()
    key_id = admin.add_key("append-only secret", FAST_KDF, role="append")
    name = f"keys/{key_id}"
    document = json.loads(admin.storage.get(name))
    document["role"] = "admin"  # an attacker edits the informational field
    admin.storage.put(name, json.dumps(document).encode())
    assert Repository.open(admin.storage, "append-only secret").role == "append"


def test_change_passphrase_keeps_the_role(kit: RepoKit) -> None:
    admin = kit.init()
    admin.add_key("append-only secret", FAST_KDF, role="append")
    host = Repository.open(admin.storage, "append-only secret")
    host.change_passphrase("new append secret", FAST_KDF)
    assert Repository.open(admin.storage, "new append secret").role == "append"
    roles = {k["role"] for k in admin.list_keys()}
    assert roles == {"admin", "append"}
