"""Logical Redis backups and restores: ``SCAN`` + ``DUMP`` out, ``RESTORE`` in.

See :mod:`dbfleet.engines.redis` for the semantics and
:mod:`dbfleet.engines.redis.keys` for the stream format.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, cast

import redis as redis_client

from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.redis.encodings import RdbFormatError
from dbfleet.engines.redis.keys import (
    FingerprintBuilder,
    KeySelector,
    Record,
    encode_header,
    encode_record,
    encode_trailer,
    key_text,
    read_stream,
)
from dbfleet.engines.redis.rdb import digest_payload, payload_rdb_version
from dbfleet.errors import EngineError, UsageError

log = logging.getLogger(__name__)

ErrorFn = Callable[[BaseException, str], EngineError]
PIECE_BYTES = 1 << 20
RESTORE_BATCH_KEYS = 1000
RESTORE_BATCH_BYTES = 8 << 20
EXAMPLES = 3


def _ms(reply: Any) -> int:
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


# One atomic read per batch of keys: each key's expiry time and DUMP. A
# script (unlike MULTI) costs one reply per key instead of three, about 2.5x
# faster. It blocks the server like MULTI, and past busy-reply-threshold (5 s)
# other clients would get BUSY errors, so each call stops after BATCH_BUDGET
# bytes (-4: call again) and leaves values above BIG_VALUE (-3) to a MULTI of
# their own. PEXPIRETIME (Redis 7) is the exact expiry time, so an unchanged
# key is stored as the same bytes every time (deduplication).
_READ_SCRIPT = """#!lua flags=no-writes
local limit, budget = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
local total = 0
for _, key in ipairs(KEYS) do
  local size = redis.call('MEMORY', 'USAGE', key)
  if size and (size > limit or total > budget) then
    out[#out + 1] = (size > limit) and -3 or -4
    out[#out + 1] = false
  else
    total = total + (size or 0)
    out[#out + 1] = redis.call('PEXPIRETIME', key)
    out[#out + 1] = redis.call('DUMP', key)
  end
end
return out
"""
BIG_VALUE = 32 << 20
BATCH_BUDGET = 64 << 20
Payload = tuple[bytes, int | None, bytes]


class _BatchReader:
    def __init__(self, client: redis_client.Redis, error: ErrorFn) -> None:
        self.client = client
        self.error = error
        self.script: Any = client.register_script(_READ_SCRIPT)
        try:
            version = str(client.info("server").get("redis_version", "0"))
        except redis_client.RedisError as exc:
            raise error(exc, "INFO failed") from None
        self.exact = int(version.split(".")[0]) >= 7  # has PEXPIRETIME and script flags
        self.use_script = self.exact

    def read(self, keys: list[bytes]) -> Iterator[Payload]:
        pending = keys
        while pending and self.use_script:
            try:
                reply = self.script(keys=pending, args=[BIG_VALUE, BATCH_BUDGET])
            except redis_client.ResponseError as exc:
                # scripting forbidden (ACL, managed services): MULTI does the same
                log.info("reading keys with MULTI instead of a script: %s", exc)
                self.use_script = False
                break
            except redis_client.RedisError as exc:
                raise self.error(exc, "reading keys failed") from None
            rest = []
            for i, key in enumerate(pending):
                expire, payload = reply[2 * i], reply[2 * i + 1]
                if expire == -3:
                    yield from self._multi([key])
                elif expire == -4:
                    rest.append(key)
                elif payload is not None and expire != -2:
                    yield key, (int(expire) if expire >= 0 else None), payload
            pending = rest
        if pending:
            yield from self._multi(pending)

    def _multi(self, keys: list[bytes]) -> Iterator[Payload]:
        pipe = self.client.pipeline(transaction=True)
        pipe.time()
        for key in keys:
            if self.exact:
                cast(Any, pipe).pexpiretime(key)  # typed for str keys only
            else:
                pipe.pttl(key)
            pipe.dump(key)
        try:
            replies = pipe.execute()
        except redis_client.RedisError as exc:
            raise self.error(exc, "reading keys failed") from None
        base = 0 if self.exact else _ms(replies[0])  # PTTL is relative to TIME
        for i, key in enumerate(keys):
            expire, payload = replies[1 + 2 * i], replies[2 + 2 * i]
            if payload is not None and expire != -2:  # else gone since SCAN saw it
                yield key, (base + int(expire) if expire >= 0 else None), payload


def scan_payloads(
    client: redis_client.Redis, error: ErrorFn, *, match: bytes | None = None, count: int = 1000
) -> Iterator[Payload]:
    """Every key of the client's database (``match``: a glob) as
    ``(key, expire_at_ms or None, DUMP payload)``, each key once.

    A key's value and expiry time are read atomically (per batch, in one
    script or ``MULTI``). ``SCAN`` may return a key twice; a set of 96-bit key
    hashes (about 80 bytes per key) drops the repeats."""
    reader = _BatchReader(client, error)
    seen: set[bytes] = set()
    cursor = 0
    while True:
        try:
            cursor, keys = cast(
                tuple[int, list[bytes]], client.scan(cursor, match=match, count=count)
            )
        except redis_client.RedisError as exc:
            raise error(exc, "SCAN failed") from None
        fresh = []
        for key in keys:
            mark = hashlib.blake2b(key, digest_size=12).digest()
            if mark not in seen:
                seen.add(mark)
                fresh.append(key)
        if fresh:
            yield from reader.read(fresh)
        if cursor == 0:
            return


_warned: set[str] = set()


def value_digest(payload: bytes) -> tuple[str, bytes]:
    """Type and canonical digest of a DUMP payload; a value dbfleet cannot
    decode (a new encoding) is digested as its raw serialization, which may
    differ after a restore into another server version."""
    try:
        return digest_payload(payload)
    except RdbFormatError as exc:
        type_name = f"raw:{payload[0] if payload else 0}"
        if type_name not in _warned:
            _warned.add(type_name)
            log.warning("cannot decode a value of RDB type %s (%s): digesting its bytes",
                        type_name, exc)  # fmt: skip
        return type_name, hashlib.blake2b(payload[:-10], digest_size=16).digest()


def fingerprint_db(
    client: redis_client.Redis, builder: FingerprintBuilder, error: ErrorFn
) -> FingerprintBuilder:
    for key, expire, payload in scan_payloads(client, error, match=builder_match(builder)):
        builder.add(key, *value_digest(payload), expire is not None)
    return builder


def builder_match(builder: FingerprintBuilder) -> bytes | None:
    if not builder.patterns:
        return None
    return KeySelector(builder.patterns, builder.separator).scan_match()


class LogicalBackup:
    """The ``keys`` stream of one database, and its fingerprint."""

    def __init__(
        self, client: redis_client.Redis, separator: bytes, scan_count: int, error: ErrorFn
    ) -> None:
        self.client = client
        self.error = error
        self.scan_count = scan_count
        self.fingerprint = FingerprintBuilder(separator)
        self.count = 0
        self.rdb_version: int | None = None

    def pieces(self, header: dict[str, Any]) -> Iterator[bytes]:
        try:
            started = _ms(self.client.time())
        except redis_client.RedisError as exc:
            raise self.error(exc, "TIME failed") from None
        yield encode_header({**header, "started_ms": started})
        batch: list[bytes] = []
        size = 0
        for key, expire, payload in scan_payloads(self.client, self.error, count=self.scan_count):
            if self.rdb_version is None:
                self.rdb_version = payload_rdb_version(payload)
            self.fingerprint.add(key, *value_digest(payload), expire is not None)
            self.count += 1
            record = encode_record(key, expire, payload)
            batch.append(record)
            size += len(record)
            if size >= PIECE_BYTES:
                yield b"".join(batch)
                batch, size = [], 0
        yield b"".join(batch) + encode_trailer(self.count)


class LogicalRestore:
    """Pipelined ``RESTORE`` of a ``keys`` stream into one database."""

    def __init__(
        self,
        client: redis_client.Redis,
        where: str,
        separator: bytes,
        error: ErrorFn,
        *,
        on_existing: str,
        relative_ttl: bool,
    ) -> None:
        self.client = client
        self.where = where
        self.separator = separator
        self.error = error
        self.on_existing = on_existing
        self.relative_ttl = relative_ttl

    def run(self, open_stream: Callable[[], Iterator[bytes]], options: RestoreOptions) -> None:
        selector = KeySelector(options.tables, self.separator) if options.tables else None
        keep = self.on_existing == "keep" and not options.clean
        try:
            occupied = int(self.client.dbsize()) > 0
        except redis_client.RedisError as exc:
            raise self.error(exc, "DBSIZE failed") from None
        check = occupied and not options.clean and not keep
        if selector is not None or check:
            self._check(open_stream(), selector, check)
        self._restore(open_stream(), selector, replace=options.clean, keep=keep)

    def _check(self, chunks: Iterator[bytes], selector: KeySelector | None, check: bool) -> None:
        """First pass: every pattern matches a key; no key exists already."""
        _, records = read_stream(chunks)
        matched = dict.fromkeys(selector.patterns if selector else (), 0)
        existing: list[bytes] = []
        pending: list[bytes] = []
        count = 0

        def flush() -> None:
            nonlocal count
            pipe = self.client.pipeline(transaction=False)
            for key in pending:
                pipe.exists(key)
            try:
                replies = pipe.execute()
            except redis_client.RedisError as exc:
                raise self.error(exc, "EXISTS failed") from None
            for key, found in zip(pending, replies, strict=True):
                if found:
                    count += 1
                    if len(existing) < EXAMPLES:
                        existing.append(key)
            pending.clear()

        for record in records:
            if selector is not None:
                patterns = selector.matching(record.key)
                if not patterns:
                    continue
                for pattern in patterns:
                    matched[pattern] += 1
            if check:
                pending.append(record.key)
                if len(pending) >= RESTORE_BATCH_KEYS:
                    flush()
        if pending:
            flush()
        unmatched = [p for p, n in matched.items() if n == 0]
        if unmatched:
            raise UsageError(
                f"no key in the backup matches {', '.join(map(repr, unmatched))}",
                hint="--table takes Redis glob patterns such as 'user:*'; the snapshot's "
                "fingerprint lists its tables",
            )
        if count:
            examples = ", ".join(repr(key_text(k)) for k in existing)
            raise EngineError(
                f"{count} key(s) of the backup already exist in {self.where} (e.g. {examples}); "
                "nothing was restored",
                hint="--clean replaces them; options.on_existing: keep keeps them",
            )

    def _restore(
        self, chunks: Iterator[bytes], selector: KeySelector | None, *, replace: bool, keep: bool
    ) -> None:
        meta, records = read_stream(chunks)
        started = int(meta["started_ms"])
        try:
            now = _ms(self.client.time())
        except redis_client.RedisError as exc:
            raise self.error(exc, "TIME failed") from None
        counts = {"restored": 0, "kept": 0, "expired": 0}
        batch: list[Record] = []
        size = 0

        def flush() -> None:
            pipe = self.client.pipeline(transaction=False)
            for rec in batch:
                ttl, absolute = 0, False
                if rec.expire_at_ms is not None and self.relative_ttl:
                    ttl = max(1, rec.expire_at_ms - started)
                elif rec.expire_at_ms is not None:
                    ttl, absolute = rec.expire_at_ms, True
                pipe.restore(rec.key, ttl, rec.payload, replace=replace, absttl=absolute)
            try:
                replies = pipe.execute(raise_on_error=False)
            except redis_client.RedisError as exc:
                raise self._failed(exc, counts["restored"], meta) from None
            for rec, reply in zip(batch, replies, strict=True):
                if isinstance(reply, Exception):
                    if keep and "BUSYKEY" in str(reply):
                        counts["kept"] += 1
                        continue
                    raise self._failed(reply, counts["restored"], meta, rec)
                counts["restored"] += 1
            batch.clear()

        for record in records:
            if selector is not None and not selector.matching(record.key):
                continue
            expire = record.expire_at_ms
            if not self.relative_ttl and expire is not None and expire <= now:
                counts["expired"] += 1
                continue
            batch.append(record)
            size += len(record.payload)
            if len(batch) >= RESTORE_BATCH_KEYS or size >= RESTORE_BATCH_BYTES:
                flush()
                size = 0
        if batch:
            flush()
        log.info("restored %d keys into %s", counts["restored"], self.where)
        if counts["kept"]:
            log.warning("kept %d existing keys in %s (on_existing: keep)", counts["kept"],
                        self.where)  # fmt: skip
        if counts["expired"]:
            log.warning("skipped %d keys whose expiry time has passed (restore_ttl: absolute)",
                        counts["expired"])  # fmt: skip

    def _failed(
        self, exc: BaseException, restored: int, meta: dict[str, Any], rec: Record | None = None
    ) -> EngineError:
        key = f" at key {key_text(rec.key)!r}" if rec is not None else ""
        error = self.error(exc, f"restore into {self.where} failed{key} after {restored} keys")
        text = str(exc)
        if "BUSYKEY" in text:
            error.hint = "the key was created in the target during the restore"
        elif "payload version" in text and rec is not None:
            error.hint = (
                f"the backup's values are RDB version {payload_rdb_version(rec.payload)} "
                f"(Redis {meta.get('server_version')}): the target server is older"
            )
        return error
