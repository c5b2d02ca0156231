"""The streaming backup pipeline: chunk, hash, compress, encrypt, pack, store.

Data flows ``source -> FastCDC -> keyed BLAKE3 -> (new?) -> worker threads
(zstd + AES-GCM) -> pack builder -> uploader threads -> storage``. Only a
bounded number of chunks and packs is in flight at once, so memory does not
grow with the size of the dump. zstd, AES-GCM and BLAKE3 release the GIL, so
the worker threads run in parallel with the dump tool.

Nothing becomes visible until :meth:`BackupWriter.commit`, which writes the
index for the new packs and then the snapshot manifest: a crash before that
leaves only unreferenced packs, which ``repo check`` reports as harmless and
``prune`` removes.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import pyfastcdc

from dbfleet.repo.pack import BLOB_DATA, BLOB_TREE, TARGET_PACK_SIZE, PackBuilder, pack_name
from dbfleet.repo.repository import Repository
from dbfleet.repo.snapshot import TREE_MAX_ENTRIES, Snapshot, StreamRef, encode_tree


@dataclass
class Progress:
    """Running totals of one backup, passed to the progress callback."""

    bytes_read: int = 0
    chunks: int = 0
    new_chunks: int = 0
    added_bytes: int = 0
    stored_bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.bytes_read / elapsed if elapsed > 0 else 0.0

    @property
    def dedup_ratio(self) -> float:
        """Logical bytes per newly stored byte (higher is better)."""
        return self.bytes_read / self.added_bytes if self.added_bytes else float("inf")


ProgressCallback = Callable[[Progress], None]


class BackupWriter:
    """Stores the streams of one backup. Construct it while holding the
    repository lock; use as a context manager; call :meth:`commit` to publish
    the snapshot. Leaving the block without commit publishes nothing."""

    def __init__(
        self,
        repo: Repository,
        *,
        workers: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.repo = repo
        # Deduplicate only against what storage holds now (the caller holds
        # the lock already; see Repository.refresh_index).
        repo.refresh_index()
        self.workers = workers or max(2, os.cpu_count() or 2)
        self.max_in_flight = self.workers * 4
        self.progress = Progress()
        self._on_progress = progress
        self._sealers = ThreadPoolExecutor(self.workers, thread_name_prefix="dbfleet-seal")
        self._uploaders = ThreadPoolExecutor(2, thread_name_prefix="dbfleet-upload")
        self._sealing: deque[tuple[int, bytes, int, Future[bytes]]] = deque()
        self._uploading: deque[Future[tuple[str, int, list[Any]]]] = deque()
        self._pack = PackBuilder()
        self._pending: set[bytes] = set()
        self._written: list[tuple[str, int, list[Any]]] = []
        self._seen_stored: set[bytes] = set()
        self.streams: list[StreamRef] = []

    def __enter__(self) -> BackupWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for *_, fut in self._sealing:
            fut.cancel()
        self._sealers.shutdown(wait=True, cancel_futures=True)
        self._uploaders.shutdown(wait=True, cancel_futures=True)

    # -- public ----------------------------------------------------------

    def write_stream(
        self, name: str, source: BinaryIO, media_type: str = "application/octet-stream"
    ) -> StreamRef:
        """Read ``source`` to its end and store it as stream ``name``."""
        params = self.repo.chunker_params
        chunker = pyfastcdc.FastCDC(
            avg_size=params["avg"],
            min_size=params["min"],
            max_size=params["max"],
            seed=params["seed"],
        )
        return self.write_chunks(
            name, (bytes(c.data) for c in chunker.cut_stream(source)), media_type
        )

    def write_chunks(
        self, name: str, chunks_in: Iterable[bytes], media_type: str = "application/octet-stream"
    ) -> StreamRef:
        """Store already-cut chunks as stream ``name`` (``copy`` keeps the
        source repository's boundaries, so copies of related snapshots dedup)."""
        entries: list[tuple[bytes, int]] = []
        trees: list[str] = []
        size = chunks = 0
        for data in chunks_in:
            blob_id = self._store(BLOB_DATA, data)
            entries.append((blob_id, len(data)))
            size += len(data)
            chunks += 1
            self.progress.bytes_read += len(data)
            self.progress.chunks += 1
            if len(entries) >= TREE_MAX_ENTRIES:
                trees.append(self._store(BLOB_TREE, encode_tree(entries)).hex())
                entries = []
            if self._on_progress:
                self._on_progress(self.progress)
        if entries or not trees:
            trees.append(self._store(BLOB_TREE, encode_tree(entries)).hex())
        ref = StreamRef(name=name, size=size, chunks=chunks, trees=trees, media_type=media_type)
        self.streams.append(ref)
        return ref

    def commit(self, snapshot: Snapshot) -> Snapshot:
        """Flush packs, write the index, then the manifest. Returns the snapshot
        with its id, streams and sizes filled in."""
        self._drain_sealing(0)
        if len(self._pack):
            self._start_upload()
        self._drain_uploads(0)
        if self._written:
            self.repo.write_index_file(self._written)
            for pack_id, size, blobs in self._written:
                self.repo.index.add_pack(pack_id, size, blobs)
        snapshot.streams = list(self.streams)
        snapshot.size = sum(s.size for s in self.streams)
        snapshot.added_bytes = self.progress.added_bytes
        snapshot.stored_size = self.progress.stored_bytes
        self.repo.save_snapshot(snapshot)
        return snapshot

    # -- pipeline --------------------------------------------------------

    def _store(self, blob_type: int, data: bytes) -> bytes:
        blob_id = self.repo.key.blob_id(data)
        self._count_stored(blob_id)
        if blob_id in self._pending or blob_id in self.repo.index:
            return blob_id
        self._pending.add(blob_id)
        self.progress.new_chunks += 1
        fut = self._sealers.submit(self.repo.seal_blob, blob_id, data)
        self._sealing.append((blob_type, blob_id, len(data), fut))
        self._drain_sealing(self.max_in_flight)
        return blob_id

    def _count_stored(self, blob_id: bytes) -> None:
        """Account the stored size of every distinct blob the snapshot uses."""
        if blob_id in self._seen_stored:
            return
        self._seen_stored.add(blob_id)
        loc = self.repo.index.get(blob_id)
        if loc is not None:
            self.progress.stored_bytes += loc.length

    def _drain_sealing(self, keep: int) -> None:
        while len(self._sealing) > keep:
            blob_type, blob_id, raw_length, fut = self._sealing.popleft()
            stored = fut.result()
            self._pack.add(blob_type, blob_id, stored, raw_length)
            self.progress.added_bytes += len(stored)
            self.progress.stored_bytes += len(stored)
            if self._pack.size >= TARGET_PACK_SIZE:
                self._start_upload()

    def _start_upload(self) -> None:
        builder, self._pack = self._pack, PackBuilder()

        def upload() -> tuple[str, int, list[Any]]:
            # Finishing (join, hash, seal the header) happens here too, off
            # the thread that reads the dump.
            pack_id, content = builder.finish(self.repo.key)
            self.repo.storage.put(pack_name(pack_id), content)
            return pack_id, len(content), builder.blobs

        self._uploading.append(self._uploaders.submit(upload))
        self._drain_uploads(2)

    def _drain_uploads(self, keep: int) -> None:
        while len(self._uploading) > keep:
            pack_id, size, blobs = self._uploading.popleft().result()
            self._written.append((pack_id, size, blobs))
            # blob ids stay in _pending: the repository index learns about
            # these packs only in commit, after their index file is stored
