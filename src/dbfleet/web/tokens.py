"""API tokens: random bearer tokens with a role, stored as SHA-256 hashes.

The tokens file (YAML, mode 0600, replaced atomically on every change)::

    tokens:
      - name: grafana
        role: viewer
        sha256: 3f1c...            # hex digest of the token; the token itself is never stored
        created_at: "2026-12-03T19:30:00+00:00"

A token is ``secrets.token_urlsafe(32)`` (256 random bits), shown once by
``dbfleet token add``. An unsalted SHA-256 is enough for tokens that random
(there is nothing to guess from a dictionary); it is compared with
:func:`hmac.compare_digest` so the comparison time tells nothing either.

Roles are ordered ``viewer < operator < admin``: a route that needs
``viewer`` accepts any token, one that needs ``operator`` accepts operators
and admins.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args

import yaml

from dbfleet.errors import ConfigError, UsageError
from dbfleet.validation import NAME_RE, NAME_RULE

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)


def role_rank(role: str) -> int:
    """0 for viewer, 1 for operator, 2 for admin."""
    return ROLES.index(cast(Role, role))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Token:
    name: str
    role: Role
    sha256: str
    created_at: str

    def public(self) -> dict[str, str]:
        """What ``token list`` shows: never the hash."""
        return {"name": self.name, "role": self.role, "created_at": self.created_at}


def _parse(path: Path, document: Any) -> list[Token]:
    if document is None:
        return []
    entries = document.get("tokens") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: not a tokens file (expected a 'tokens:' list)")
    tokens = []
    for index, entry in enumerate(entries):
        try:
            name, role, sha = str(entry["name"]), str(entry["role"]), str(entry["sha256"])
        except (KeyError, TypeError):
            raise ConfigError(f"{path}: tokens.{index}: needs name, role and sha256") from None
        if role not in ROLES:
            raise ConfigError(f"{path}: tokens.{index}.role: {role!r} is not one of {ROLES}")
        if len(sha) != 64:
            raise ConfigError(f"{path}: tokens.{index}.sha256: not a SHA-256 hex digest")
        tokens.append(Token(name, role, sha, str(entry.get("created_at", ""))))
    return tokens


class TokenStore:
    """The tokens file. Reads it again whenever its modification time or
    size changes, so a token added or removed while serve runs takes effect
    on the next request. Safe to share between threads (reads replace a
    tuple in one assignment)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._tokens: tuple[Token, ...] = ()

    def tokens(self) -> list[Token]:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._tokens = None, ()
            return []
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            try:
                document = yaml.safe_load(self.path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read tokens file {self.path}: {exc}") from None
            self._tokens = tuple(_parse(self.path, document))
            self._stamp = stamp
        return list(self._tokens)

    def verify(self, presented: str) -> Token | None:
        """The token whose hash matches ``presented``, or ``None``. Every
        stored hash is compared (constant time each), match or not."""
        wanted = digest(presented)
        found = None
        for token in self.tokens():
            if hmac.compare_digest(wanted, token.sha256):
                found = token
        return found

    def _write(self, tokens: list[Token]) -> None:
        document = {
            "tokens": [
                {"name": t.name, "role": t.role, "sha256": t.sha256, "created_at": t.created_at}
                for t in tokens
            ]
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write("# dbfleet API tokens (SHA-256 hashes; see docs/observability.md)\n")
                yaml.safe_dump(document, handle, sort_keys=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, self.path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise

    def add(self, name: str, role: str, now: datetime | None = None) -> str:
        """Store a new token and return it (the only time it exists in clear)."""
        if not NAME_RE.match(name):
            raise UsageError(f"token name {name!r}: {NAME_RULE}")
        if role not in ROLES:
            raise UsageError(f"role {role!r}: use one of {', '.join(ROLES)}")
        tokens = self.tokens()
        if any(t.name == name for t in tokens):
            raise UsageError(
                f"a token named {name!r} exists already", hint="dbfleet token remove it first"
            )
        token = secrets.token_urlsafe(32)
        created = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        self._write([*tokens, Token(name, role, digest(token), created)])
        return token

    def remove(self, name: str) -> None:
        tokens = self.tokens()
        kept = [t for t in tokens if t.name != name]
        if len(kept) == len(tokens):
            known = ", ".join(t.name for t in tokens) or "none"
            raise UsageError(f"no token named {name!r} in {self.path} (defined: {known})")
        self._write(kept)
