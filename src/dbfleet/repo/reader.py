"""Read a stored stream back in order, verifying every chunk.

Chunks are fetched, decrypted, decompressed and checked against their ids by
worker threads, a bounded number ahead of the consumer, so a restore keeps
the restore tool busy without holding the whole stream in memory. Any chunk
that fails authentication raises :class:`dbfleet.errors.IntegrityError`
before a single byte of it is handed on.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from dbfleet.errors import IntegrityError
from dbfleet.repo.repository import Repository
from dbfleet.repo.snapshot import Snapshot


def iter_stream(
    repo: Repository,
    snapshot: Snapshot,
    stream: str,
    *,
    workers: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Yield the plaintext of ``stream`` chunk by chunk."""
    workers = workers or max(2, os.cpu_count() or 2)
    ahead: deque[tuple[int, Future[bytes]]] = deque()
    total = 0

    def next_ready() -> bytes:
        length, fut = ahead.popleft()
        data = fut.result()
        if len(data) != length:
            raise IntegrityError(f"chunk length {len(data)} differs from the recorded {length}")
        if on_bytes:
            on_bytes(len(data))
        return data

    with ThreadPoolExecutor(workers, thread_name_prefix="dbfleet-read") as pool:
        try:
            for blob_id, length in repo.stream_chunks(snapshot, stream):
                ahead.append((length, pool.submit(repo.load_blob, blob_id)))
                if len(ahead) > workers * 2:
                    data = next_ready()
                    total += len(data)
                    yield data
            while ahead:
                data = next_ready()
                total += len(data)
                yield data
        finally:
            for _, fut in ahead:
                fut.cancel()
    ref = snapshot.stream(stream)
    if ref is not None and total != ref.size:
        raise IntegrityError(
            f"stream {stream!r} of snapshot {snapshot.short_id} restored {total} bytes, "
            f"expected {ref.size}"
        )
