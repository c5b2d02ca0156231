"""The PostgreSQL WAL archive: ``wal-push`` (archive_command) and ``wal-fetch``
(restore_command), and which archived files a base backup needs.

Layout: each archived file is one object, next to the repository's packs::

    wal/<database>/<group>/<file name>.<content id>

``<group>`` is the first 16 hex digits of a segment name (timeline and log:
at most 256 segments of 16 MiB per directory) or ``history`` for timeline
history files. ``<content id>`` is the first 32 hex digits of the keyed BLAKE3
of the file's bytes (the repository's blob id): equal content gives the same
name, different content a different one. So a push never replaces an object
whose content differs, a retried push of the same segment is a no-op, and two
pushes racing on one segment can at worst write the same bytes twice.

The object is ``AES-256-GCM(0x01 || zstd(file))`` with associated data
``dbfleet-wal:`` + its own name, so an object moved to another name (another
segment, another database) fails authentication. WAL does not deduplicate
(every segment is new data), so packs and indexes would only add cost:
one object per segment costs a single ``put``.

Speed: a ``wal-push`` process pays Python start-up and the passphrase's
key derivation (about 0.5 s together) however small its work. PostgreSQL
calls ``archive_command`` once per segment, one at a time, so each call also
pushes up to ``ahead`` other segments that wait in ``archive_status/`` as
``.ready``, in parallel threads, and renames their status files to ``.done``
once they are stored (what WAL-G does; PostgreSQL's archiver re-checks the
``.ready`` file before each call for exactly this reason). PostgreSQL then
skips those segments.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import zstandard

from dbfleet.errors import IntegrityError, NotFoundError, RepositoryError, UsageError
from dbfleet.repo import Repository

WAL_PREFIX = "wal/"
FORMAT_ZSTD = 1
CONTENT_ID_HEX = 32
DEFAULT_AHEAD = 16
DEFAULT_WORKERS = 4
DEFAULT_PREFETCH = 8
PREFETCH_DIR = "dbfleet-prefetch"
ZSTD_LEVEL = 1  # WAL (page images, zero-filled tails) compresses well at the fastest level

_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
_PARTIAL = re.compile(r"^[0-9A-F]{24}\.partial$")
_BACKUP = re.compile(r"^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$")
_HISTORY = re.compile(r"^[0-9A-F]{8}\.history$")


class WalConflictError(RepositoryError):
    """The archive already holds different content under this WAL file name."""


@dataclass(frozen=True)
class WalObject:
    """One archived file, as named in storage."""

    name: str
    file: str
    content_id: str
    size: int

    @property
    def position(self) -> tuple[int, int] | None:
        """``(log, segment)`` of segment-like files; ``None`` for history files."""
        return segment_position(self.file)


@dataclass
class PushResult:
    file: str
    stored: bool
    """False when the archive already held identical content."""
    size: int
    stored_bytes: int
    seconds: float
    ahead: list[str] = field(default_factory=list)
    """Other ``.ready`` files pushed and marked ``.done`` by this call."""


def check_wal_name(file: str) -> str:
    """``file`` if it is a WAL file name PostgreSQL archives, else ``UsageError``."""
    if any(p.match(file) for p in (_SEGMENT, _PARTIAL, _BACKUP, _HISTORY)):
        return file
    raise UsageError(
        f"{file!r} is not a WAL file name",
        hint="expected e.g. 000000010000000000000003, 00000002.history, "
        "000000010000000000000003.00000028.backup",
    )


def segment_position(file: str) -> tuple[int, int] | None:
    """``(log, seg)`` from a segment, partial or backup-history name. Order is
    WAL order whatever the segment size; the timeline is left out."""
    if _HISTORY.match(file):
        return None
    return int(file[8:16], 16), int(file[16:24], 16)


def database_prefix(database: str) -> str:
    return f"{WAL_PREFIX}{quote(database, safe='')}/"


def _group(file: str) -> str:
    return "history" if _HISTORY.match(file) else file[:16]


def _object_name(database: str, file: str, content_id: str) -> str:
    return f"{database_prefix(database)}{_group(file)}/{file}.{content_id}"


def _aad(name: str) -> bytes:
    return b"dbfleet-wal:" + name.encode()


def parse_object_name(name: str, size: int) -> WalObject | None:
    file, dot, content_id = name.rpartition("/")[2].rpartition(".")
    if not dot or len(content_id) != CONTENT_ID_HEX:
        return None
    try:
        check_wal_name(file)
    except UsageError:
        return None
    return WalObject(name, file, content_id, size)


def archived(repo: Repository, database: str, file: str) -> list[WalObject]:
    """The objects stored for one WAL file name (normally zero or one)."""
    prefix = f"{database_prefix(database)}{_group(file)}/{file}."
    found = (parse_object_name(o.name, o.size) for o in repo.storage.list(prefix))
    return sorted((o for o in found if o is not None and o.file == file), key=lambda o: o.name)


def list_wal(repo: Repository, database: str) -> list[WalObject]:
    """Every archived file of ``database``, in WAL order (history files last)."""
    listed = repo.storage.list(database_prefix(database))
    found = (parse_object_name(o.name, o.size) for o in listed)
    objects = [o for o in found if o is not None]
    return sorted(objects, key=lambda o: (o.position or (1 << 32, 0), o.file, o.name))


def _content_id(repo: Repository, data: bytes) -> str:
    return repo.key.blob_id(data).hex()[:CONTENT_ID_HEX]


def system_identifier(segment: bytes) -> int | None:
    """The cluster's system identifier from a segment's long page header."""
    if len(segment) < 32 or int.from_bytes(segment[2:4], "little") & 0x0002 == 0:
        return None  # not a long header (XLP_LONG_HEADER)
    return int.from_bytes(segment[24:32], "little")


# -- push ----------------------------------------------------------------------


def push_file(repo: Repository, database: str, path: Path) -> tuple[bool, int, int]:
    """Archive one file. Returns ``(stored, size, stored bytes)``; ``stored`` is
    False when identical content was already archived. ``WalConflictError``
    when different content is archived under the same name."""
    return store(repo, database, check_wal_name(path.name), path.read_bytes())


def store(repo: Repository, database: str, file: str, data: bytes) -> tuple[bool, int, int]:
    """Archive ``data`` as WAL file ``file`` (see :func:`push_file`)."""
    content_id = _content_id(repo, data)
    existing = archived(repo, database, file)
    if any(o.content_id == content_id for o in existing):
        return False, len(data), 0
    if existing:
        raise _conflict(repo, database, file, data, existing)
    name = _object_name(database, file, content_id)
    body = bytes([FORMAT_ZSTD]) + zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    sealed = repo.key.encrypt(body, _aad(name))
    repo.storage.put(name, sealed)
    others = [o for o in archived(repo, database, file) if o.content_id != content_id]
    if others:  # another writer raced us with different bytes: both stay, fetch refuses
        raise _conflict(repo, database, file, data, others)
    return True, len(data), len(sealed)


def _conflict(
    repo: Repository, database: str, file: str, data: bytes, existing: list[WalObject]
) -> WalConflictError:
    ours = system_identifier(data)
    theirs: int | None = None
    with contextlib.suppress(RepositoryError):
        theirs = system_identifier(read_object(repo, existing[0]))
    detail = ""
    if ours is not None and theirs is not None and ours != theirs:
        detail = f" by another cluster (system identifier {theirs}, this one is {ours})"
    return WalConflictError(
        f"{file} of {database} is already archived with different content{detail}; "
        "refusing to overwrite it",
        hint="two servers archive under one inventory name, or the cluster was re-created: "
        "give each cluster its own database entry",
    )


def push(
    repo: Repository,
    database: str,
    path: Path,
    *,
    ahead: int = DEFAULT_AHEAD,
    workers: int = DEFAULT_WORKERS,
) -> PushResult:
    """``archive_command``: archive ``path``, and up to ``ahead`` other files
    that wait in ``archive_status`` (marked ``.done`` once stored)."""
    began = time.monotonic()
    check_wal_name(path.name)
    if not path.is_file():
        raise UsageError(f"{path} does not exist")
    extra = ready_files(path.parent, exclude=path.name, limit=ahead)
    with ThreadPoolExecutor(max(1, min(workers, 1 + len(extra)))) as pool:
        mine = pool.submit(push_file, repo, database, path)
        others = [(f, pool.submit(push_file, repo, database, path.parent / f)) for f in extra]
        stored, size, stored_bytes = mine.result()
        done = []
        for file, fut in others:
            if fut.exception() is None and _mark_done(path.parent, file):
                done.append(file)
    return PushResult(
        path.name, stored, size, stored_bytes, round(time.monotonic() - began, 3), done
    )


def ready_files(wal_dir: Path, *, exclude: str, limit: int) -> list[str]:
    """Names of files PostgreSQL still has to archive, oldest first (history
    files first, as PostgreSQL itself orders them)."""
    if limit <= 0:
        return []
    try:
        entries = os.listdir(wal_dir / "archive_status")
    except OSError:
        return []
    names = []
    for entry in entries:
        file, dot, status = entry.rpartition(".")
        if dot and status == "ready" and file != exclude:
            try:
                names.append(check_wal_name(file))
            except UsageError:
                continue
    names.sort(key=lambda f: (not _HISTORY.match(f), f))
    return [f for f in names if (wal_dir / f).is_file()][:limit]


def _mark_done(wal_dir: Path, file: str) -> bool:
    status = wal_dir / "archive_status"
    try:
        os.replace(status / f"{file}.ready", status / f"{file}.done")
    except FileNotFoundError:
        return False  # PostgreSQL (or another wal-push) got there first
    return True


# -- fetch ---------------------------------------------------------------------


def read_object(repo: Repository, obj: WalObject) -> bytes:
    """Decrypt, decompress and verify one archived file."""
    try:
        sealed = repo.storage.get(obj.name)
    except NotFoundError as exc:
        raise IntegrityError(f"{obj.file}: archived object vanished") from exc
    body = repo.key.decrypt(sealed, _aad(obj.name), f"WAL {obj.file}")
    if not body or body[0] != FORMAT_ZSTD:
        raise IntegrityError(f"WAL {obj.file}: unknown format {body[:1].hex()}")
    try:
        data: bytes = zstandard.ZstdDecompressor().decompress(body[1:])
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"WAL {obj.file}: does not decompress: {exc}") from exc
    if _content_id(repo, data) != obj.content_id:
        raise IntegrityError(f"WAL {obj.file}: content does not match its id")
    return data


def load(repo: Repository, database: str, file: str) -> bytes | None:
    """The verified bytes of an archived file; ``None`` when not archived."""
    found = archived(repo, database, file)
    if not found:
        return None
    if len(found) > 1:
        raise WalConflictError(
            f"{file} of {database} is archived {len(found)} times with different content",
            hint="two clusters archived under one name; restore cannot tell which is right",
        )
    return read_object(repo, found[0])


def _write(data: bytes, destination: Path) -> None:
    tmp = destination.with_name(f".{destination.name}.dbfleet-tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, destination)


def next_segments(file: str, segment_size: int, count: int) -> list[str]:
    """The ``count`` segment names after ``file`` on its timeline."""
    per_log = (1 << 32) // segment_size
    segno = int(file[8:16], 16) * per_log + int(file[16:24], 16)
    return [
        f"{file[:8]}{n // per_log:08X}{n % per_log:08X}"
        for n in range(segno + 1, segno + 1 + count)
    ]


def fetch(
    repo: Repository,
    database: str,
    file: str,
    destination: Path,
    *,
    prefetch: int = 0,
    workers: int = DEFAULT_WORKERS,
) -> int | None:
    """``restore_command``: write ``file`` to ``destination`` (temporary name,
    then rename). ``None`` when it is not archived, which PostgreSQL expects
    for timeline probes and the end of the archive.

    With ``prefetch``, the next segments are fetched in parallel into
    ``PREFETCH_DIR`` beside ``destination`` (complete files only), where the
    ``restore_command`` that :func:`dbfleet.engines.postgresql.pitr.restore_command`
    writes picks them up without starting dbfleet; older ones are removed."""
    check_wal_name(file)
    if prefetch <= 0 or not _SEGMENT.match(file):
        data = load(repo, database, file)
        if data is not None:
            _write(data, destination)
        return None if data is None else len(data)
    spool = destination.parent / PREFETCH_DIR
    _clean_spool(spool, file)
    data = load(repo, database, file)
    if data is None:
        return None
    _write(data, destination)
    spool.mkdir(mode=0o700, exist_ok=True)
    wanted = [n for n in next_segments(file, len(data), prefetch) if not (spool / n).exists()]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        futures = [(n, pool.submit(load, repo, database, n)) for n in wanted]
        for name, fut in futures:
            # a failure here is reported when PostgreSQL asks for that segment
            got = None if fut.exception() is not None else fut.result()
            if got is not None:
                _write(got, spool / name)
    return len(data)


def _clean_spool(spool: Path, current: str) -> None:
    """Drop prefetched segments PostgreSQL has gone past, and torn writes."""
    try:
        entries = os.listdir(spool)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry < current or entry.endswith(".dbfleet-tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spool / entry)


# -- copy ----------------------------------------------------------------------


@dataclass
class WalCopyResult:
    database: str
    destination: str
    wal_files: int
    """Files in the source's archive of ``database``."""
    copied_files: int
    """Files the destination lacked, now stored there."""
    added_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def copy_archive(
    source: Repository, destination: Repository, database: str, destination_name: str
) -> WalCopyResult:
    """Copy the files of ``database``'s archive that ``destination`` lacks
    (by file name: a file it holds already is never replaced). Each object is
    verified in the source, then sealed under the destination's key and name;
    one file is in memory at a time."""
    have = {o.file for o in list_wal(destination, database)}
    objects = list_wal(source, database)
    copied = added = 0
    for obj in objects:
        if obj.file in have:
            continue
        stored, _size, stored_bytes = store(
            destination, database, obj.file, read_object(source, obj)
        )
        copied += stored
        added += stored_bytes
    return WalCopyResult(database, destination_name, len(objects), copied, added)


def archived_databases(repo: Repository) -> list[str]:
    """Databases with a WAL archive in ``repo``."""
    names = {
        o.name.removeprefix(WAL_PREFIX).partition("/")[0] for o in repo.storage.list(WAL_PREFIX)
    }
    return sorted(unquote(n) for n in names if n)


# -- retention -----------------------------------------------------------------


def wal_needed_from(start_files: Iterable[str]) -> tuple[int, int] | None:
    """Position of the oldest of the base backups' first WAL files."""
    positions = [p for p in (segment_position(f) for f in start_files) if p is not None]
    return min(positions) if positions else None


def wal_to_forget(objects: Iterable[WalObject], oldest: tuple[int, int] | None) -> list[WalObject]:
    """Archived files older than ``oldest`` (the first segment the oldest kept
    base backup needs). History files are always kept (tiny, and needed to
    follow timelines); with no kept base backup nothing is forgotten."""
    if oldest is None:
        return []
    return [o for o in objects if o.position is not None and o.position < oldest]
