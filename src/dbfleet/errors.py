"""One exception tree for dbfleet, each class with a stable process exit code.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``;
nothing below the CLI prints or exits. Exit codes are a documented contract:

====  =====================================================================
0     success
1     an operation failed (dump tool error, server unreachable, repository
      locked by another process, ...)
2     bad usage or bad inventory (config, arguments, snapshot ids)
3     repository or data integrity problem (corruption, wrong passphrase,
      fingerprint mismatch)
128+N stopped by signal N (the CLI unwinds first: locks, staging files)
====  =====================================================================

Messages are one line, and a password that slipped into one (a connection
URL typed where it does not belong, a tool echoing its command line) is
masked by :func:`redact` before anything prints it.
"""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3


# The userinfo of a URL: ``scheme://user:password@`` (the password is
# anything up to the last ``@`` before the host, so ``p@ss`` is covered).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):(?P<pw>[^\s/?#]*)@")
MASK = "***"


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` masked."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)


def one_line(text: str) -> str:
    """Join a multi-line message (a tool's stderr, say) into one line."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


class DbfleetError(Exception):
    """Base of every error dbfleet raises on purpose."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return redact(f"{self.message} ({self.hint})")
        return redact(self.message)


class UsageError(DbfleetError):
    """Bad arguments: unknown database, malformed snapshot id, missing option."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """The inventory file is missing or invalid; ``problems`` lists each one.

    ``str()`` is one line: ``FILE is invalid: PROBLEM`` with one problem,
    ``FILE is invalid (3 problems): A; B; C`` with several (``config check``
    also lists them one per line)."""

    def __init__(
        self, message: str, problems: list[str] | None = None, *, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []

    def __str__(self) -> str:
        head = self.message.rstrip(": ")
        if len(self.problems) == 1:
            return redact(f"{head}: {self.problems[0]}")
        if self.problems:
            return redact(f"{head} ({len(self.problems)} problems): " + "; ".join(self.problems))
        return super().__str__()


class OperationError(DbfleetError):
    """An operation failed: dump tool error, server unreachable, restore failed."""


class EngineError(OperationError):
    """A database engine or its tooling reported an error."""


class ToolMissingError(EngineError):
    """A native tool (pg_dump, mongodump, ...) is not installed."""


class StorageError(OperationError):
    """The storage backend failed (I/O error, permission, network)."""


class NotFoundError(StorageError):
    """A named object does not exist in storage."""


class RepositoryError(DbfleetError):
    """Repository-level problem: integrity, format, keys, locking."""

    exit_code = EXIT_INTEGRITY


class RepositoryNotFoundError(RepositoryError):
    """There is no dbfleet repository at this location."""


class WrongPassphraseError(RepositoryError):
    """No key of the repository opens with the given passphrase."""


class IntegrityError(RepositoryError):
    """Data failed authentication or does not match its id: corruption or tampering."""


class LockedError(RepositoryError):
    """Another process holds a conflicting lock on the repository.

    Exit 1, not 3: nothing is wrong with the repository, the operation could
    not run now and may be tried again (a prune next to a scheduled backup is
    routine; exit 3 is what monitoring treats as "the data is in danger")."""

    exit_code = EXIT_FAILED


class FingerprintMismatchError(RepositoryError):
    """Restored data differs from the fingerprint recorded at backup time."""


class SnapshotNotFoundError(UsageError):
    """No snapshot matches the given id or selector."""


class AmbiguousSnapshotError(SnapshotNotFoundError):
    """A short snapshot id matches more than one snapshot."""
