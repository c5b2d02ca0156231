"""Shared plumbing for operations: opening repositories, reading snapshots."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

from dbfleet.config import DatabaseConfig, Inventory
from dbfleet.engines.base import ServerEngine
from dbfleet.engines.registry import engine_for
from dbfleet.errors import (
    AmbiguousSnapshotError,
    DbfleetError,
    SnapshotNotFoundError,
    UsageError,
)
from dbfleet.repo import Repository, Snapshot, iter_stream
from dbfleet.repo.cache import default_cache_root
from dbfleet.secrets import repository_passphrase
from dbfleet.storage import LocalStorage, MemoryStorage, open_storage

_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass
class Repositories:
    """Opens each inventory repository once per command (key derivation is
    deliberately slow) and hands out the same object afterwards."""

    inventory: Inventory
    _open: dict[str, Repository] = field(default_factory=dict)

    def get(self, name: str) -> Repository:
        if name not in self._open:
            config = self.inventory.repository(name)
            passphrase = repository_passphrase(name, config)
            storage = open_storage(config.url, config)
            repo = Repository.open(storage, passphrase)
            cache_root = default_cache_root()
            if cache_root is not None and not isinstance(storage, LocalStorage | MemoryStorage):
                repo.use_cache(cache_root)  # remote: save a request per manifest
            self._open[name] = repo
        return self._open[name]

    def for_database(self, database: str) -> Repository:
        db = self.inventory.database(database)
        assert db.repository is not None  # filled in by inventory validation
        return self.get(db.repository)

    def locate(self, selector: str, repository: str | None = None) -> tuple[Repository, Snapshot]:
        """Find a snapshot by ``db:latest``, ``db:<id>``, ``db`` or a bare id
        (searched in ``repository``, else in every repository)."""
        head = selector.partition(":")[0]
        if repository:
            repo = self.get(repository)
            return repo, repo.find_snapshot(selector)
        if self.inventory.split_member(head)[0] in self.inventory.databases:
            repo = self.for_database(head)
            return repo, repo.find_snapshot(selector)
        if ":" in selector:
            raise UsageError(
                f"no database {head!r} in the inventory",
                hint=f"defined: {', '.join(sorted(self.inventory.databases)) or 'none'}",
            )
        if _HEX.fullmatch(selector) and len(selector) < 4:
            raise SnapshotNotFoundError(
                f"{selector!r} is too short for a snapshot id, and no database has that name",
                hint="give at least 4 hex digits of the id; see 'dbfleet snapshots'",
            )
        # Every repository is searched: a prefix found in two of them is
        # ambiguous, not "the first one". One that cannot be opened does not
        # hide a match elsewhere; its error counts only when nothing matched.
        found: list[tuple[str, Repository, Snapshot]] = []
        unusable: DbfleetError | None = None
        for name in self.inventory.repositories:
            try:
                repo = self.get(name)
                found.append((name, repo, repo.find_snapshot(selector)))
            except AmbiguousSnapshotError:
                raise
            except SnapshotNotFoundError:
                continue
            except DbfleetError as exc:
                unusable = unusable or exc
        if len({snap.id for _name, _repo, snap in found}) > 1:
            where = ", ".join(f"{snap.short_id} in {name}" for name, _repo, snap in found)
            raise AmbiguousSnapshotError(
                f"snapshot id {selector!r} is ambiguous: {where}",
                hint="give more characters of the id, or --repo NAME",
            )
        if found:
            return found[0][1], found[0][2]
        if unusable is not None:
            raise unusable
        raise SnapshotNotFoundError(
            f"no snapshot matches {selector!r} in any repository, and no database has that name",
            hint="see 'dbfleet snapshots'",
        )


def no_fingerprint_reason(snapshot: Snapshot) -> str:
    """``": <why>"`` when the engine recorded why a snapshot has no
    fingerprint (option ``fingerprint_unavailable``), else ``""``."""
    reason = snapshot.options.get("fingerprint_unavailable")
    return f" (fingerprint unavailable at backup: {reason})" if reason else ""


def snapshot_caveats(snapshot: Snapshot) -> list[str]:
    """What comparing this snapshot's fingerprint cannot prove, one line
    each, from what the engine recorded at backup (MySQL: columns the dump
    tools carry lossily, tables the dump's fingerprint cannot see). verify
    and drill show them next to a pass, so that a pass is not read as more
    than it proves."""
    lines = []
    lossy: dict[str, dict[str, str]] = snapshot.options.get("lossy_columns") or {}
    for table, columns in sorted(lossy.items()):
        for column, why in sorted(columns.items()):
            lines.append(
                f"{table}.{column} holds {why}: the dump tools restore them changed, "
                "and no fingerprint of the dump can tell"
            )
    unseen: list[str] = snapshot.options.get("unfingerprinted_tables") or []
    if unseen:
        names = ", ".join(repr(n) for n in unseen)
        lines.append(f"not fingerprinted (a name with a line break): {names}")
    return lines


def resolve_database(inventory: Inventory, name: str) -> DatabaseConfig:
    """The config to back up or read ``name``: an inventory entry, or for
    ``<server entry>/<database>`` the server entry pointed at that database."""
    entry, member = inventory.split_member(name)
    config = inventory.database(entry)
    if member is None:
        if config.all_databases:
            raise UsageError(
                f"{name!r} names a whole server",
                hint=f"use '{name}/<database>' for one of its databases",
            )
        return config
    member_config = engine_for(config).target(member)
    return member_config.with_changes(all_databases=False, include=["*"], exclude=[])


def matches_database(database: str, wanted: list[str]) -> bool:
    """Whether a snapshot's database is one of ``wanted`` or a member of a
    server entry in it (``pg-main`` matches ``pg-main/app``)."""
    return any(database == w or database.startswith(f"{w}/") for w in wanted)


def expand_databases(inventory: Inventory, names: list[str]) -> list[str]:
    """Replace each ``all_databases`` entry by ``<entry>/<database>`` for every
    database its server has now, minus ``exclude`` patterns."""
    expanded = []
    for name in names:
        config = inventory.database(name)
        entry, member = inventory.split_member(name)
        if not config.all_databases or member is not None:
            expanded.append(name)
            continue
        engine = engine_for(config)
        if not engine.capabilities.server_entries:
            raise UsageError(
                f"databases.{entry}.all_databases: {config.engine} cannot list databases"
            )
        for database in sorted(cast(ServerEngine, engine).list_databases()):
            included = any(fnmatch.fnmatchcase(database, p) for p in config.include)
            if included and not any(fnmatch.fnmatchcase(database, p) for p in config.exclude):
                expanded.append(f"{entry}/{database}")
    return expanded


class SnapshotSource:
    """A snapshot's streams as an engine's ``StreamSource``."""

    def __init__(
        self,
        repo: Repository,
        snapshot: Snapshot,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.repo = repo
        self.snapshot = snapshot
        self.on_bytes = on_bytes

    def stream_names(self) -> list[str]:
        return [s.name for s in self.snapshot.streams]

    def open_stream(self, name: str) -> Iterator[bytes]:
        return iter_stream(self.repo, self.snapshot, name, on_bytes=self.on_bytes)
