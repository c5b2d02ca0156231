"""What the MongoDB engine does on a live server besides running the tools:
the fingerprint of a collection as it is now, which namespaces a restore
takes and which of them already exist, the ``mongorestore`` command line,
and building the restored indexes. Helpers of :mod:`dbfleet.engines.mongodb`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from blake3 import blake3
from bson import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from dbfleet.engines.mongodb.archive import DIGEST_MOD, CollectionSum, collection_shape
from dbfleet.engines.mongodb.location import prefixed
from dbfleet.errors import EngineError, UsageError

RAW = CodecOptions(document_class=RawBSONDocument)
Namespace = tuple[str, str]


def collection_fingerprint(
    client: MongoClient[Any], namespace: Namespace, info: Mapping[str, Any]
) -> dict[str, Any]:
    """Count and digest of a collection's documents as the server returns
    them (raw BSON, the bytes mongodump would write), with its indexes and
    options (``info``: its ``listCollections`` entry); the same form the
    archive tap gives for a backup."""
    collection = client[namespace[0]].get_collection(namespace[1], codec_options=RAW)
    total = CollectionSum()
    for doc in collection.find({}, batch_size=10000):
        total.count += 1
        digest = int.from_bytes(blake3(doc.raw).digest(), "big")
        total.total = (total.total + digest) % DIGEST_MOD
    shape = collection_shape(list(collection.list_indexes()), info.get("options") or {})
    return total.entry(shape)


def restore_namespaces(
    namespaces: Sequence[str], source_db: str | None, tables: tuple[str, ...]
) -> list[Namespace]:
    """The (database, collection) pairs of the backup (its manifest's
    ``db.collection`` names) to restore: all but ``system.*``, or those
    ``tables`` names (collections; ``db.collection`` for whole instances)."""
    available: set[Namespace] = set()
    for name in namespaces:
        db, dot, coll = name.partition(".")
        if dot:
            available.add((db, coll))
    if not tables:
        return sorted(ns for ns in available if not ns[1].startswith("system."))
    chosen = []
    for table in tables:
        db, _, coll = table.partition(".")
        ns = (source_db, table) if source_db is not None else (db, coll)
        if ns not in available:
            known = sorted(n[1] if source_db else ".".join(n) for n in available)
            raise UsageError(
                f"not in the backup: {table}", hint=f"it has {', '.join(known) or 'no collections'}"
            )
        chosen.append(ns)
    return chosen


def restored_name(db: str, target_db: str | None, prefix: str | None) -> str:
    """The database that a backup's database ``db`` is restored into:
    ``target_db`` (database snapshots), ``<prefix><db>`` (a whole instance
    under a prefix) or ``db`` itself."""
    if target_db is not None:
        return target_db
    return prefixed(prefix, db) if prefix else db


def existing_collections(
    client: MongoClient[Any], wanted: list[Namespace], target_db: str | None,
    prefix: str | None = None,
) -> list[str]:  # fmt: skip
    """Which of ``wanted`` already exist where the restore writes them
    (:func:`restored_name`), by their names in the backup."""
    found = []
    cache: dict[str, set[str]] = {}
    for db, coll in wanted:
        into = restored_name(db, target_db, prefix)
        if into not in cache:
            cache[into] = set(client[into].list_collection_names())
        if coll in cache[into]:
            found.append(coll if target_db is not None else f"{db}.{coll}")
    return found


def ns_pattern(db: str, collection: str) -> str:
    """A mongorestore namespace pattern for a literal database and a literal
    collection (``*``: every collection); ``\\``, ``*`` and ``$`` escaped."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("*", "\\*").replace("$", "\\$")

    return f"{escape(db)}.{'*' if collection == '*' else escape(collection)}"


def restore_argv(
    mongorestore: str, tool_url: str, wanted: list[Namespace], source_db: str | None,
    target_db: str | None, *, clean: bool, oplog_replay: bool, prefix: str | None = None,
) -> list[str]:  # fmt: skip
    """The mongorestore command line (the archive comes on stdin).

    A database snapshot goes into ``target_db`` (renamed when it differs);
    a whole-instance snapshot into the same databases, or with ``prefix``
    each database ``db`` into ``<prefix><db>`` (one ``--nsFrom/--nsTo``
    pair per database; mongorestore refuses renames with ``--oplogReplay``,
    so the two do not go together).

    ``--noIndexRestore``: dbfleet builds the indexes itself afterwards
    (:func:`create_indexes`), from the same metadata, because mongorestore
    100.x adds the legacy ``ns`` field to every index spec, which FerretDB
    refuses. ``--stopOnError``: a document that cannot be inserted fails the
    restore instead of being counted and skipped."""
    argv = [mongorestore, "--uri", tool_url, "--archive", "--stopOnError", "--noIndexRestore"]
    if oplog_replay:
        # mongorestore refuses --oplogReplay with any --nsInclude/--nsExclude/
        # --nsFrom ("cannot use --oplogReplay with includes specified"): a
        # point-in-time restore is the whole archive, as mongorestore
        # restores it (users and roles of admin included).
        if source_db is not None or prefix:
            raise ValueError("oplog replay restores a whole instance, under its own names")
        return [*argv, *(["--drop"] if clean else []), "--oplogReplay"]
    argv += [f"--nsInclude={ns_pattern(db, coll)}" for db, coll in wanted]
    if source_db is not None and target_db is not None and source_db != target_db:
        argv += [f"--nsFrom={ns_pattern(source_db, '*')}", f"--nsTo={ns_pattern(target_db, '*')}"]
    if prefix:
        if source_db is not None:
            raise ValueError("a prefix restores a whole instance")
        for db in sorted({db for db, _ in wanted}):
            argv += [f"--nsFrom={ns_pattern(db, '*')}",
                     f"--nsTo={ns_pattern(prefixed(prefix, db), '*')}"]  # fmt: skip
    if clean:
        argv.append("--drop")
    return argv


def create_indexes(
    client: MongoClient[Any], db: str, collection: str, indexes: list[dict[str, Any]]
) -> None:
    """Build a restored collection's indexes as mongorestore would: its
    ``createIndexes`` with the dumped specs minus ``v`` (the server picks its
    current version), ``ns`` (legacy) and ``background`` (deprecated);
    ``_id_`` exists already."""
    specs = [
        {k: v for k, v in index.items() if k not in ("v", "ns", "background")}
        for index in indexes
        if index.get("name") != "_id_"
    ]
    if not specs:
        return
    try:
        client[db].command("createIndexes", collection, indexes=specs)
    except OperationFailure as exc:
        raise EngineError(f"restoring the indexes of {db}.{collection} failed: {exc}") from None
