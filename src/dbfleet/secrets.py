"""Resolve secrets from environment variables, files or a terminal prompt.

Secrets never come from the command line (they would show in ``ps``) and
are never logged; error messages name *where* a secret was looked for,
never its value.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from dbfleet.config import RepositoryConfig
from dbfleet.errors import UsageError

GLOBAL_PASSPHRASE_ENV = "DBFLEET_PASSPHRASE"
GLOBAL_PASSPHRASE_FILE_ENV = "DBFLEET_PASSPHRASE_FILE"


def read_secret_file(path: Path) -> str:
    try:
        return path.expanduser().read_text().rstrip("\r\n")
    except OSError as exc:
        raise UsageError(f"cannot read secret file {path}: {exc.strerror}") from None


def secret_from(env: str | None, file: Path | None) -> str | None:
    """The secret from ``env`` (if set and non-empty) or ``file``; ``None`` if neither."""
    if env:
        value = os.environ.get(env)
        if value:
            return value
    if file:
        return read_secret_file(file)
    return None


def repository_passphrase(
    name: str, repo: RepositoryConfig | None, *, confirm: bool = False
) -> str:
    """Passphrase for a repository: its configured env/file, then
    ``$DBFLEET_PASSPHRASE`` / ``$DBFLEET_PASSPHRASE_FILE``, then a prompt on a terminal."""
    value = None
    if repo is not None:
        value = secret_from(repo.passphrase_env, repo.passphrase_file)
    if value is None:
        global_file = os.environ.get(GLOBAL_PASSPHRASE_FILE_ENV)
        value = secret_from(GLOBAL_PASSPHRASE_ENV, Path(global_file) if global_file else None)
    if value is not None:
        return value
    if sys.stdin.isatty():
        return prompt_passphrase(f"passphrase for repository {name}", confirm=confirm)
    where = []
    if repo is not None and repo.passphrase_env:
        where.append(f"${repo.passphrase_env}")
    if repo is not None and repo.passphrase_file:
        where.append(str(repo.passphrase_file))
    where += [f"${GLOBAL_PASSPHRASE_ENV}", f"${GLOBAL_PASSPHRASE_FILE_ENV}"]
    raise UsageError(
        f"no passphrase for repository {name}",
        hint=f"set one of {', '.join(where)} (no terminal to prompt on)",
    )


def prompt_passphrase(label: str, *, confirm: bool = False) -> str:
    value = getpass.getpass(f"{label}: ")
    if confirm and getpass.getpass(f"{label} (again): ") != value:
        raise UsageError("the passphrases do not match")
    if not value:
        raise UsageError("empty passphrase")
    return value
