"""Where repository passphrases come from, and that errors never show them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbfleet.config import RepositoryConfig
from dbfleet.errors import EXIT_USAGE, UsageError
from dbfleet.secrets import repository_passphrase, secret_from


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DBFLEET_PASSPHRASE", "DBFLEET_PASSPHRASE_FILE", "REPO_PASS"):
        monkeypatch.delenv(name, raising=False)


def test_repository_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPO_PASS", "from-repo-env")
    monkeypatch.setenv("DBFLEET_PASSPHRASE", "global")
    config = RepositoryConfig(url="file:///x", passphrase_env="REPO_PASS")
    assert repository_passphrase("local", config) == "from-repo-env"


def test_file_with_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("from-file\n")
    config = RepositoryConfig(url="file:///x", passphrase_file=secret)
    assert repository_passphrase("local", config) == "from-file"


def test_global_fallbacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = RepositoryConfig(url="file:///x", passphrase_env="REPO_PASS")
    monkeypatch.setenv("REPO_PASS", "")  # empty counts as unset
    secret = tmp_path / "global"
    secret.write_text("global-file\n")
    monkeypatch.setenv("DBFLEET_PASSPHRASE_FILE", str(secret))
    assert repository_passphrase("local", config) == "global-file"
    monkeypatch.setenv("DBFLEET_PASSPHRASE", "global-env")
    assert repository_passphrase("local", config) == "global-env"


def test_nothing_configured_and_no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    config = RepositoryConfig(url="file:///x", passphrase_env="REPO_PASS")
    with pytest.raises(UsageError) as info:
        repository_passphrase("local", config)
    assert info.value.exit_code == EXIT_USAGE
    assert "$REPO_PASS" in str(info.value) and "$DBFLEET_PASSPHRASE" in str(info.value)


def test_unreadable_file_names_the_file_not_a_value(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read secret file"):
        secret_from(None, tmp_path / "missing")
    assert secret_from(None, None) is None
