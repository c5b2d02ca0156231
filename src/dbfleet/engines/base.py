"""The engine interface: one plug-in per database engine.

An engine object is bound to one location (an inventory entry, or a
restore target derived from one). It never touches the repository: backup
writes named streams into a :class:`StreamSink`, restore reads them from a
:class:`StreamSource`. The conformance suite in
``tests/conformance/test_engines.py`` runs every engine through the same
round trip against a real server.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar, Protocol

from dbfleet.config import DatabaseConfig
from dbfleet.errors import UsageError


@dataclass(frozen=True)
class Capabilities:
    subset_restore: bool = False
    """``restore --table`` works (tables, collections or key patterns)."""
    globals: bool = False
    """Server-wide objects (roles, ...) can be included with ``globals: true``."""
    consistency_point: bool = False
    """Snapshots record an engine position (LSN, binlog, oplog)."""
    scratch_targets: bool = True
    """``verify`` can restore into a scratch target and drop it afterwards."""
    server_entries: bool = False
    """``all_databases: true`` works: ``list_databases`` names the databases."""


@dataclass
class Health:
    ok: bool
    version: str | None = None
    size_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BackupMeta:
    """What an engine reports about a finished backup; goes into the manifest."""

    server_version: str | None = None
    tool: str | None = None
    tool_version: str | None = None
    fingerprint: dict[str, Any] | None = None
    consistency_point: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RestoreOptions:
    tables: tuple[str, ...] = ()
    """Restore only these (engine-specific names, e.g. ``public.orders``)."""
    clean: bool = False
    """Drop objects that the backup contains before recreating them."""
    include_globals: bool = False


class StreamSink(Protocol):
    def write_stream(self, name: str, source: BinaryIO, media_type: str = ...) -> Any:
        """Read ``source`` to EOF and store it as stream ``name``."""


class StreamSource(Protocol):
    def stream_names(self) -> list[str]: ...

    def open_stream(self, name: str) -> Iterator[bytes]:
        """The stream's bytes, in order, verified."""
        ...


class Engine(Protocol):
    """Contract for every engine module.

    - ``backup`` must fail (raise ``EngineError`` with the tool's own message)
      when the dump tool exits non-zero or is killed; the caller then records
      no snapshot. The fingerprint it returns must describe exactly the data
      in the streams (taken in the same snapshot where the engine has them).
    - ``restore`` writes into *this* engine's location, creating the database
      if needed; with ``clean`` it replaces objects the backup contains.
      It must fail loudly, never restore half silently.
    - ``fingerprint`` of a location restored from a backup equals the
      backup's fingerprint (for the restored subset when ``tables`` is given).
    - ``scratch`` returns a config for a throw-away location next to this one
      and ``drop`` removes such a location.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    config: DatabaseConfig

    def health(self) -> Health: ...

    def backup(self, sink: StreamSink) -> BackupMeta: ...

    def restore(self, source: StreamSource, options: RestoreOptions) -> None: ...

    def fingerprint(self, tables: tuple[str, ...] = ()) -> dict[str, Any]: ...

    def scratch(self, label: str) -> DatabaseConfig: ...

    def target(self, name: str) -> DatabaseConfig:
        """A config for restoring next to this location under another name
        (a database on the same server, or a file path for file engines)."""
        ...

    def drop(self) -> None: ...


class ServerEngine(Engine, Protocol):
    """An engine whose entries may name a whole server (``all_databases``)."""

    def list_databases(self) -> list[str]:
        """User databases on the server, now (system databases excluded)."""
        ...


def server_url(config: DatabaseConfig, engine: str, known_options: Collection[str]) -> str:
    """Check a server engine's config: its ``url`` (returned) and that every
    key of ``options`` is one the engine knows (a typo must not be ignored)."""
    if not config.url:
        raise UsageError(f"engine {engine} needs 'url'")
    unknown = set(config.options) - set(known_options)
    if unknown:
        raise UsageError(
            f"unknown {engine} option(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(known_options))})"
        )
    return config.url


def compare_fingerprints(
    expected: dict[str, Any], actual: dict[str, Any], tables: tuple[str, ...] = ()
) -> list[str]:
    """Differences between two fingerprints, one line each (empty: equal).

    Fingerprints are ``{"tables": {name: {...}}, ...}``; other top-level keys
    (sequences, large objects) are compared whole unless ``tables`` restricts
    the comparison to those tables."""
    differences = []
    exp_tables: dict[str, Any] = expected.get("tables", {})
    act_tables: dict[str, Any] = actual.get("tables", {})
    names = set(tables) if tables else set(exp_tables) | set(act_tables)
    for name in sorted(names):
        e, a = exp_tables.get(name), act_tables.get(name)
        if e is None:
            differences.append(f"{name}: present after restore but not in the backup")
        elif a is None:
            differences.append(f"{name}: missing after restore")
        elif e != a:
            diff = ", ".join(f"{k} {e.get(k)} != {a.get(k)}" for k in e if e.get(k) != a.get(k))
            differences.append(f"{name}: {diff}")
    if not tables:
        for key in sorted((set(expected) | set(actual)) - {"tables"}):
            if expected.get(key) != actual.get(key):
                differences.append(
                    f"{key}: backup {expected.get(key)} != restored {actual.get(key)}"
                )
    return differences
