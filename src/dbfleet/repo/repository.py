"""The repository: keys, config, index, blobs and snapshots over a Storage.

Layout (see docs/repository-format.md)::

    config              encrypted JSON: format version, repository id, chunker seed
    keys/<id>           key files: the master key wrapped by one passphrase
    data/<xx>/<id>      pack files
    index/<id>          index files
    snapshots/<id>      snapshot manifests
    locks/<id>          locks

Every object except locks is written once under a name derived from its
content and never modified, so a crash leaves at worst unreferenced objects.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import blake3
import zstandard

from dbfleet.errors import (
    AmbiguousSnapshotError,
    IntegrityError,
    NotFoundError,
    RepositoryError,
    RepositoryNotFoundError,
    SnapshotNotFoundError,
    WrongPassphraseError,
)
from dbfleet.repo import compress
from dbfleet.repo.cache import MetadataCache
from dbfleet.repo.crypto import MasterKey, unwrap_master_key, wrap_master_key
from dbfleet.repo.index import Index, decode_index, encode_index
from dbfleet.repo.pack import PackedBlob, pack_name
from dbfleet.repo.snapshot import Snapshot, decode_tree
from dbfleet.storage.base import Storage

FORMAT_VERSION = 1
CONFIG_AAD = b"config"
INDEX_AAD = b"index"
SNAPSHOT_AAD = b"snapshot"

# FastCDC 2020 parameters: min 512 KiB, mean about 1 MiB, max 8 MiB.
CHUNK_MIN = 512 * 1024
CHUNK_AVG = 512 * 1024  # pyfastcdc's mean is avg_size + min_size
CHUNK_MAX = 8 * 1024 * 1024


class Repository:
    """An opened repository. Construct with :meth:`init` or :meth:`open`."""

    def __init__(self, storage: Storage, key: MasterKey, key_name: str, config: dict[str, Any]):
        self.storage = storage
        self.key = key
        self.key_name = key_name
        self.config = config
        self._index: Index | None = None
        self._index_files: set[str] = set()
        """The index files ``_index`` was built from (and those written since)."""
        self.cache: MetadataCache | None = None
        """Set by :meth:`use_cache` (remote repositories)."""

    # -- lifecycle -------------------------------------------------------

    @classmethod
    def init(
        cls, storage: Storage, passphrase: str, kdf: dict[str, int] | None = None
    ) -> Repository:
        if _exists(storage, "config"):
            raise RepositoryError(f"a repository already exists at {storage.url}")
        if not passphrase:
            raise WrongPassphraseError("refusing an empty passphrase")
        key = MasterKey.generate()
        config = {
            "version": FORMAT_VERSION,
            "id": secrets.token_hex(16),
            "chunker": {
                "algorithm": "fastcdc2020",
                "seed": secrets.randbits(63) | 1,
                "min": CHUNK_MIN,
                "avg": CHUNK_AVG,
                "max": CHUNK_MAX,
            },
            "compression": {"algorithm": "zstd", "level": compress.DEFAULT_LEVEL},
            "cipher": "aes-256-gcm",
            "chunk_id": "blake3-keyed",
        }
        document = wrap_master_key(key, passphrase, kdf)
        key_name = _key_name(document)
        storage.put(key_name, json.dumps(document).encode())
        storage.put("config", key.encrypt(json.dumps(config).encode(), CONFIG_AAD))
        return cls(storage, key, key_name, config)

    @classmethod
    def open(cls, storage: Storage, passphrase: str) -> Repository:
        try:
            sealed_config = storage.get("config")
        except NotFoundError as exc:
            raise RepositoryNotFoundError(
                f"no dbfleet repository at {storage.url}",
                hint="create one with 'dbfleet repo init'",
            ) from exc
        damaged: list[str] = []
        for obj in storage.list("keys/"):
            try:
                document = json.loads(storage.get(obj.name))
                master = unwrap_master_key(document, passphrase)
            except (ValueError, KeyError, TypeError, NotFoundError):
                damaged.append(obj.name)
                continue
            if master is None:
                continue
            config = json.loads(master.decrypt(sealed_config, CONFIG_AAD, "config"))
            if config.get("version") != FORMAT_VERSION:
                raise RepositoryError(
                    f"repository format version {config.get('version')} is not supported "
                    f"(this dbfleet reads version {FORMAT_VERSION})"
                )
            return cls(storage, master, obj.name, config)
        raise WrongPassphraseError(
            f"wrong passphrase for the repository at {storage.url}",
            hint="no key of this repository opens with it"
            + (f"; {len(damaged)} damaged key files were skipped" if damaged else ""),
        )

    def use_cache(self, root: Path) -> None:
        """Keep sealed manifests and index files under ``root/<repository id>``
        (see :mod:`dbfleet.repo.cache`)."""
        self.cache = MetadataCache(root / str(self.config["id"]))

    def _get_listed(self, name: str) -> bytes:
        """An object that a listing just returned: from the cache when it
        holds a copy that hashes to the name, else from storage (then cached)."""
        cached = self.cache.get(name) if self.cache else None
        if cached is not None:
            return cached
        data = self.storage.get(name)
        if self.cache:
            self.cache.put(name, data)
        return data

    def _list_cached(self, prefix: str) -> list[str]:
        names = self.list_names(prefix)
        if self.cache:
            self.cache.forget_others(prefix, names)
        return names

    @property
    def chunker_params(self) -> dict[str, int]:
        return dict(self.config["chunker"])

    @property
    def compression_level(self) -> int:
        return int(self.config["compression"]["level"])

    # -- keys ------------------------------------------------------------

    def list_keys(self) -> list[dict[str, Any]]:
        keys = []
        for obj in self.storage.list("keys/"):
            doc = json.loads(self.storage.get(obj.name))
            keys.append(
                {
                    "id": obj.name.removeprefix("keys/"),
                    "current": obj.name == self.key_name,
                    "created": doc.get("created"),
                    "hostname": doc.get("hostname"),
                    "username": doc.get("username"),
                    "role": doc.get("role", "admin"),
                }
            )
        return sorted(keys, key=lambda k: str(k["created"]))

    @property
    def role(self) -> str:
        return self.key.role

    def require_admin(self, operation: str) -> None:
        """Append-only keys may add data, never remove it (see docs/append-only.md)."""
        if self.key.role != "admin":
            raise RepositoryError(
                f"{operation} needs an administrator key; this repository was opened "
                "with an append-only key",
                hint="use the administrator's passphrase",
            )

    def add_key(
        self, passphrase: str, kdf: dict[str, int] | None = None, role: str = "admin"
    ) -> str:
        if role not in ("admin", "append"):
            raise RepositoryError(f"unknown key role {role!r} (admin or append)")
        self.require_admin("adding a key")
        if not passphrase:
            raise WrongPassphraseError("refusing an empty passphrase")
        document = wrap_master_key(replace(self.key, role=role), passphrase, kdf)
        name = _key_name(document)
        self.storage.put(name, json.dumps(document).encode())
        return name.removeprefix("keys/")

    def remove_key(self, key_id: str) -> None:
        self.require_admin("removing a key")
        matches = [k["id"] for k in self.list_keys() if str(k["id"]).startswith(key_id)]
        if len(matches) != 1:
            raise SnapshotNotFoundError(
                f"key {key_id!r} matches {len(matches)} keys", hint="see 'dbfleet repo key list'"
            )
        if f"keys/{matches[0]}" == self.key_name:
            raise RepositoryError(
                "refusing to remove the key in use",
                hint="open the repository with another passphrase to remove this one",
            )
        self.storage.delete(f"keys/{matches[0]}")

    def change_passphrase(self, new_passphrase: str, kdf: dict[str, int] | None = None) -> str:
        """Add a key (same role) for the new passphrase, then remove the current one."""
        if not new_passphrase:
            raise WrongPassphraseError("refusing an empty passphrase")
        document = wrap_master_key(self.key, new_passphrase, kdf)
        name = _key_name(document)
        self.storage.put(name, json.dumps(document).encode())
        new_id = name.removeprefix("keys/")
        old = self.key_name
        self.key_name = f"keys/{new_id}"
        self.storage.delete(old)
        return new_id

    # -- index -----------------------------------------------------------

    @property
    def index(self) -> Index:
        if self._index is None:
            names = self._list_cached("index/")
            self._index = self._index_from(names)
            self._index_files = set(names)
        return self._index

    def load_index(self) -> Index:
        return self._index_from(self._list_cached("index/"))

    def _index_from(self, names: list[str]) -> Index:
        index = Index()
        for name in names:
            for pack_id, size, blobs in self.read_index_file(name, listed=True):
                index.add_pack(pack_id, size, blobs)
        return index

    def adopt_index(self, index: Index, files: set[str]) -> None:
        """Use ``index``, built from the index files ``files`` (``repo check``)."""
        self._index, self._index_files = index, files

    def refresh_index(self) -> None:
        """Bring an index loaded earlier up to date, before writing under a new
        lock: a prune may have run since the last lock was released (``backup
        a b`` takes one per database), and deduplicating against packs it
        deleted would record snapshots whose data is gone. Index files of
        other writers are added; if any file the index came from is gone (a
        prune replaced them), the index is loaded again on next use."""
        if self._index is None:
            return
        names = self._list_cached("index/")
        if not self._index_files.issubset(names):
            self._index = None
            return
        for name in names:
            if name not in self._index_files:
                for pack_id, size, blobs in self.read_index_file(name, listed=True):
                    self._index.add_pack(pack_id, size, blobs)
                self._index_files.add(name)

    def read_index_file(
        self, name: str, *, listed: bool = False
    ) -> list[tuple[str, int, list[PackedBlob]]]:
        """``listed``: the name comes from a listing just made (the cache may
        answer; it never answers for names not known to exist)."""
        sealed = self._get_listed(name) if listed else self.storage.get(name)
        raw = self.key.decrypt(sealed, INDEX_AAD, name)
        return decode_index(zstandard.ZstdDecompressor().decompress(raw))

    def write_index_file(self, packs: list[tuple[str, int, list[PackedBlob]]]) -> str:
        raw = zstandard.ZstdCompressor().compress(encode_index(packs))
        sealed = self.key.encrypt(raw, INDEX_AAD)
        name = f"index/{blake3.blake3(sealed).hexdigest()}"
        self.storage.put(name, sealed)
        if self.cache:
            self.cache.put(name, sealed)
        if self._index is not None:
            self._index_files.add(name)  # the writer adds its packs to the index next
        return name

    def list_names(self, prefix: str) -> list[str]:
        return sorted(o.name for o in self.storage.list(prefix))

    # -- blobs -----------------------------------------------------------

    def seal_blob(self, blob_id: bytes, plaintext: bytes) -> bytes:
        """Compress then encrypt; the id is bound as associated data."""
        return self.key.encrypt(compress.compress(plaintext, self.compression_level), blob_id)

    def open_blob(self, blob_id: bytes, stored: bytes, raw_length: int | None = None) -> bytes:
        """Decrypt, decompress and check that the plaintext hashes to its id."""
        what = f"blob {blob_id.hex()[:16]}"
        plaintext = compress.decompress(self.key.decrypt(stored, blob_id, what), raw_length)
        if self.key.blob_id(plaintext) != blob_id:
            raise IntegrityError(f"{what}: content does not match its id")
        return plaintext

    def load_blob(self, blob_id: bytes) -> bytes:
        loc = self.index.get(blob_id)
        if loc is None:
            raise IntegrityError(f"blob {blob_id.hex()[:16]} is not in the index")
        try:
            stored = self.storage.get(pack_name(loc.pack_id), loc.offset, loc.length)
        except NotFoundError as exc:
            raise IntegrityError(f"pack {loc.pack_id[:16]} is missing") from exc
        if len(stored) != loc.length:
            raise IntegrityError(f"pack {loc.pack_id[:16]} is truncated")
        return self.open_blob(blob_id, stored, loc.raw_length)

    def stream_chunks(self, snapshot: Snapshot, stream: str) -> Iterator[tuple[bytes, int]]:
        """Yield ``(chunk id, length)`` of a stream in order, reading tree blobs."""
        ref = snapshot.stream(stream)
        if ref is None:
            raise IntegrityError(f"snapshot {snapshot.short_id} has no stream {stream!r}")
        for tree_id in ref.trees:
            yield from decode_tree(self.load_blob(bytes.fromhex(tree_id)))

    # -- snapshots -------------------------------------------------------

    def save_snapshot(self, snapshot: Snapshot) -> str:
        sealed = self.key.encrypt(snapshot.model_dump_json().encode(), SNAPSHOT_AAD)
        snapshot_id = blake3.blake3(sealed).hexdigest()
        self.storage.put(f"snapshots/{snapshot_id}", sealed)
        if self.cache:
            self.cache.put(f"snapshots/{snapshot_id}", sealed)
        snapshot.id = snapshot_id
        return snapshot_id

    def load_snapshot(self, snapshot_id: str, *, listed: bool = False) -> Snapshot:
        """``listed``: as for :meth:`read_index_file`."""
        name = f"snapshots/{snapshot_id}"
        try:
            sealed = self._get_listed(name) if listed else self.storage.get(name)
        except NotFoundError as exc:
            raise SnapshotNotFoundError(f"snapshot {snapshot_id[:16]} not found") from exc
        if blake3.blake3(sealed).hexdigest() != snapshot_id:
            raise IntegrityError(f"snapshot {snapshot_id[:16]}: content does not match its id")
        snapshot = Snapshot.model_validate_json(self.key.decrypt(sealed, SNAPSHOT_AAD, name))
        snapshot.id = snapshot_id
        return snapshot

    def list_snapshots(self, database: str | None = None) -> list[Snapshot]:
        snapshots = [
            self.load_snapshot(name.removeprefix("snapshots/"), listed=True)
            for name in self._list_cached("snapshots/")
        ]
        if database is not None:
            snapshots = [s for s in snapshots if s.database == database]
        return sorted(snapshots, key=lambda s: s.finished)

    def find_snapshot(self, selector: str, database: str | None = None) -> Snapshot:
        """Resolve ``<id prefix>``, ``<database>:latest``, ``<database>:<id prefix>``
        or a bare ``<database>`` (its latest snapshot)."""
        if ":" in selector:
            database, _, which = selector.partition(":")
        elif _looks_like_id(selector) and len(selector) >= 4 and self._ids_with(selector):
            which = selector
        else:
            database, which = selector, "latest"
        if which == "latest":
            found = self.list_snapshots(database)
            if not found:
                raise SnapshotNotFoundError(
                    f"no snapshot of {database!r}", hint="see 'dbfleet snapshots'"
                )
            # "latest" is the newest dump: base backups and log archives (options.kind)
            # are restored through point-in-time recovery, not by plain restore
            plain = [s for s in found if "kind" not in s.options]
            return (plain or found)[-1]
        if not _looks_like_id(which) or len(which) < 4:
            raise SnapshotNotFoundError(
                f"{selector!r} is not a snapshot id or '<database>:latest'",
                hint="ids are hexadecimal; give at least 4 characters",
            )
        names = self._ids_with(which)
        if not names:
            raise SnapshotNotFoundError(
                f"no snapshot with id {which!r}", hint="see 'dbfleet snapshots'"
            )
        if len(names) > 1:
            shown = ", ".join(sorted(n[:12] for n in names)[:5])
            raise AmbiguousSnapshotError(
                f"snapshot id {which!r} is ambiguous: {len(names)} snapshots start with it "
                f"({shown}{', ...' if len(names) > 5 else ''})",
                hint="give more characters of the id",
            )
        snapshot = self.load_snapshot(names[0])
        if database and snapshot.database != database:
            raise SnapshotNotFoundError(
                f"snapshot {which} belongs to {snapshot.database!r}, not {database!r}"
            )
        return snapshot

    def _ids_with(self, prefix: str) -> list[str]:
        return [
            n.removeprefix("snapshots/")
            for n in self.list_names("snapshots/")
            if n.removeprefix("snapshots/").startswith(prefix.lower())
        ]

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.require_admin("removing snapshots")
        self.storage.delete(f"snapshots/{snapshot_id}")
        self.storage.delete(f"pins/{snapshot_id}")

    # -- pins: snapshots that retention never removes -----------------------

    def pinned(self) -> set[str]:
        return {name.removeprefix("pins/") for name in self.list_names("pins/")}

    def pin(self, snapshot_id: str) -> None:
        self.load_snapshot(snapshot_id)  # must exist
        self.storage.put(f"pins/{snapshot_id}", b"")

    def unpin(self, snapshot_id: str) -> None:
        self.require_admin("unpinning")
        self.storage.delete(f"pins/{snapshot_id}")


def _looks_like_id(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdefABCDEF" for c in text)


def _exists(storage: Storage, name: str) -> bool:
    try:
        storage.stat(name)
    except NotFoundError:
        return False
    return True


def _key_name(document: dict[str, Any]) -> str:
    return f"keys/{blake3.blake3(json.dumps(document, sort_keys=True).encode()).hexdigest()}"
