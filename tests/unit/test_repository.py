"""Repository lifecycle: init, open, passphrases and keys."""

from __future__ import annotations

import json

import pytest
from repokit import FAST_KDF, PASSPHRASE, RepoKit

from dbfleet.errors import (
    EXIT_INTEGRITY,
    EXIT_USAGE,
    DbfleetError,
    IntegrityError,
    RepositoryError,
    RepositoryNotFoundError,
    SnapshotNotFoundError,
    WrongPassphraseError,
)
from dbfleet.repo import Repository


def test_init_then_open(kit: RepoKit) -> None:
    storage = kit.local()
    created = kit.init(storage)
    opened = Repository.open(kit.local(), PASSPHRASE)
    assert opened.config == created.config
    assert opened.key == created.key
    assert opened.key_name == created.key_name
    assert {o.name.split("/")[0] for o in storage.list()} == {"config", "keys"}


def test_config_is_encrypted_and_describes_the_format(kit: RepoKit) -> None:
    storage = kit.memory()
    repo = kit.init(storage)
    assert repo.config["version"] == 1
    assert repo.chunker_params["min"] <= repo.chunker_params["max"]
    assert b"fastcdc" not in storage.get("config")
    key_file = json.loads(storage.get(repo.key_name))
    assert key_file["kdf"]["n"] == FAST_KDF["n"]
    assert PASSPHRASE.encode() not in storage.get(repo.key_name)


def test_two_repositories_have_different_ids_and_keys(kit: RepoKit) -> None:
    a, b = kit.init(), kit.init()
    assert a.config["id"] != b.config["id"]
    assert a.chunker_params["seed"] != b.chunker_params["seed"]
    assert a.key != b.key


def test_init_twice_is_refused(kit: RepoKit) -> None:
    storage = kit.memory()
    kit.init(storage)
    with pytest.raises(RepositoryError, match="already exists"):
        kit.init(storage)


def test_empty_passphrase_is_refused(kit: RepoKit) -> None:
    with pytest.raises(WrongPassphraseError):
        kit.init(kit.memory(), passphrase="")
    repo = kit.init()
    with pytest.raises(WrongPassphraseError):
        repo.add_key("", FAST_KDF)


def test_wrong_passphrase(kit: RepoKit) -> None:
    repo = kit.init()
    with pytest.raises(WrongPassphraseError) as info:
        Repository.open(repo.storage, "not the passphrase")
    assert info.value.exit_code == EXIT_INTEGRITY == 3
    assert "not the passphrase" not in str(info.value)
    assert PASSPHRASE not in str(info.value)


def test_open_empty_directory(kit: RepoKit) -> None:
    (kit.tmp_path / "empty").mkdir()
    with pytest.raises(RepositoryNotFoundError) as info:
        Repository.open(kit.local("empty"), PASSPHRASE)
    assert info.value.exit_code == EXIT_INTEGRITY
    assert "repo init" in str(info.value)


def test_open_missing_directory(kit: RepoKit) -> None:
    with pytest.raises(RepositoryNotFoundError):
        Repository.open(kit.local("nowhere"), PASSPHRASE)


def test_damaged_config_is_an_integrity_error(kit: RepoKit) -> None:
    repo = kit.init()
    sealed = bytearray(repo.storage.get("config"))
    sealed[20] ^= 0x01
    repo.storage.put("config", bytes(sealed))
    with pytest.raises(IntegrityError):
        Repository.open(repo.storage, PASSPHRASE)


def test_damaged_key_file_is_reported_not_a_crash(kit: RepoKit) -> None:
    """A garbage key file (listed first) must neither crash open with a raw
    ValueError nor stop a good key from opening the repository."""
    storage = kit.memory()
    storage.put("keys/0000damaged", b'{"version": 1, "kdf": trunc')
    kit.init(storage)
    assert Repository.open(storage, PASSPHRASE).key_name != "keys/0000damaged"
    with pytest.raises(DbfleetError) as info:
        Repository.open(storage, "wrong passphrase")
    assert info.value.exit_code == EXIT_INTEGRITY


# -- keys -----------------------------------------------------------------


def test_key_add_and_list(kit: RepoKit) -> None:
    repo = kit.init()
    first_id = repo.key_name.removeprefix("keys/")
    second_id = repo.add_key("second passphrase", FAST_KDF)
    keys = repo.list_keys()
    assert {k["id"] for k in keys} == {first_id, second_id}
    assert [k["id"] for k in keys if k["current"]] == [first_id]
    assert all(k["created"] and k["hostname"] and k["username"] for k in keys)
    other = Repository.open(repo.storage, "second passphrase")
    assert other.key == repo.key
    assert other.key_name == f"keys/{second_id}"
    assert [k["id"] for k in other.list_keys() if k["current"]] == [second_id]


def test_key_remove(kit: RepoKit) -> None:
    repo = kit.init()
    second_id = repo.add_key("second passphrase", FAST_KDF)
    repo.remove_key(second_id[:8])
    with pytest.raises(WrongPassphraseError):
        Repository.open(repo.storage, "second passphrase")
    assert Repository.open(repo.storage, PASSPHRASE).key == repo.key


def test_cannot_remove_the_current_key(kit: RepoKit) -> None:
    repo = kit.init()
    repo.add_key("second passphrase", FAST_KDF)
    with pytest.raises(RepositoryError, match="in use"):
        repo.remove_key(repo.key_name.removeprefix("keys/"))
    assert len(repo.list_keys()) == 2
    # ... but another passphrase can remove it
    other = Repository.open(repo.storage, "second passphrase")
    other.remove_key(repo.key_name.removeprefix("keys/"))
    with pytest.raises(WrongPassphraseError):
        Repository.open(repo.storage, PASSPHRASE)


def test_remove_unknown_or_ambiguous_key(kit: RepoKit) -> None:
    repo = kit.init()
    repo.add_key("second passphrase", FAST_KDF)
    with pytest.raises(SnapshotNotFoundError) as info:
        repo.remove_key("zz-no-such-key")
    assert info.value.exit_code == EXIT_USAGE
    with pytest.raises(SnapshotNotFoundError, match="2 keys"):
        repo.remove_key("")
    assert len(repo.list_keys()) == 2


def test_passwd(kit: RepoKit) -> None:
    repo = kit.init()
    snapshot = kit.backup(repo, b"data that must survive a passphrase change")
    new_id = repo.change_passphrase("brand new passphrase", FAST_KDF)
    assert repo.key_name == f"keys/{new_id}"
    assert [k["id"] for k in repo.list_keys()] == [new_id]
    with pytest.raises(WrongPassphraseError):
        Repository.open(repo.storage, PASSPHRASE)
    reopened = Repository.open(repo.storage, "brand new passphrase")
    assert kit.restore(reopened, reopened.find_snapshot(snapshot.id)) == (
        b"data that must survive a passphrase change"
    )
