"""S3-compatible object storage (AWS S3, MinIO, Ceph RGW, Cloudflare R2,
Backblaze B2, ...) through boto3.

A repository lives under ``s3://bucket/prefix``: object ``data/ab/ab12...``
is the key ``prefix/data/ab/ab12...``. Contracts (see :mod:`dbfleet.storage.base`):

- ``put`` is atomic by S3 semantics: an object appears whole or not at all.
  Bodies above :data:`MULTIPART_THRESHOLD` upload in parts; any failure of a
  part (or an interrupt) aborts the multipart upload, and S3 never shows an
  unfinished multipart upload as an object, so ``list`` and ``repo check``
  never see half a pack. If even the abort fails (the server or network is
  gone), the parts stay, invisible; the writer notes the upload in its
  journal (:mod:`dbfleet.storage.s3_journal`), and :meth:`S3Storage.unfinished_writes`
  finds it (with the ones a killed process left) for ``repo check``, ``repo
  unlock`` and prune (see :mod:`dbfleet.repo.debris`), as does a bucket
  lifecycle rule (``AbortIncompleteMultipartUpload``).
- ``get`` uses an HTTP Range; a range past the end returns what exists.
- Each HTTP request is retried by botocore ("standard" mode: connection
  errors, 5xx, throttling); wrap the storage in
  :class:`dbfleet.storage.retry.RetryingStorage` to also retry whole
  operations (a multipart upload whose part kept failing, a body cut off
  mid-read).

Credentials come from the environment variables that :class:`S3Options`
names, else from the AWS shared credentials file and profile. Nothing else is
consulted (no instance metadata service, no SSO): a machine without
credentials gets a :class:`~dbfleet.errors.UsageError` saying where dbfleet
looked. Error messages never contain the access key or the secret.
"""

from __future__ import annotations

import base64
import builtins
import configparser
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from dbfleet.config import S3Options
from dbfleet.errors import NotFoundError, StorageError, UsageError
from dbfleet.storage.base import ObjectInfo, UnfinishedWrite
from dbfleet.storage.retry import PermanentStorageError
from dbfleet.storage.s3_journal import AbortJournal

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        CreateBucketRequestTypeDef,
        GetObjectRequestTypeDef,
    )

__all__ = ["MULTIPART_THRESHOLD", "PART_SIZE", "S3Credentials", "S3Storage"]

log = logging.getLogger("dbfleet.storage")

MiB = 1024 * 1024
MULTIPART_THRESHOLD = 8 * MiB
"""Bodies larger than this upload in parts (a 16 MiB pack: two parts)."""
PART_SIZE = 8 * MiB
"""Size of each part but the last (S3's minimum is 5 MiB)."""

DEFAULT_REGION = "us-east-1"
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
}
# 4xx answers that a retry can fix: the body was damaged or slow in transit.
_TRANSIENT_4XX = {
    "RequestTimeout",
    "BadDigest",
    "IncompleteBody",
    "XAmzContentSHA256Mismatch",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeTooSkewed",
}
_NETWORK_ERRORS = (BotoCoreError, urllib3.exceptions.HTTPError, OSError)


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None
    source: str = ""
    """Where they came from, e.g. ``environment (AWS_ACCESS_KEY_ID)``; no secrets."""

    def __repr__(self) -> str:  # never show the secret, not even in a traceback
        return f"S3Credentials(source={self.source!r})"


def resolve_credentials(options: S3Options, url: str = "") -> S3Credentials:
    """The credentials for ``options``: the two named environment variables if
    both are set, else ``options.profile`` (or ``$AWS_PROFILE``, or
    ``default``) from ``options.credentials_file`` (or
    ``$AWS_SHARED_CREDENTIALS_FILE``, or ``~/.aws/credentials``)."""
    access = os.environ.get(options.access_key_env)
    secret = os.environ.get(options.secret_key_env)
    if access and secret:
        default_names = options.access_key_env == "AWS_ACCESS_KEY_ID"
        token = os.environ.get("AWS_SESSION_TOKEN") if default_names else None
        return S3Credentials(
            access, secret, token or None, f"environment ({options.access_key_env})"
        )
    if access or secret:
        missing = options.secret_key_env if access else options.access_key_env
        raise UsageError(
            f"incomplete S3 credentials for {url or 'the repository'}: {missing} is not set",
            hint=f"set both {options.access_key_env} and {options.secret_key_env}",
        )
    path = Path(
        options.credentials_file
        or os.environ.get("AWS_SHARED_CREDENTIALS_FILE")
        or Path.home() / ".aws" / "credentials"
    ).expanduser()
    profile = options.profile or os.environ.get("AWS_PROFILE") or "default"
    looked = (
        f"set {options.access_key_env} and {options.secret_key_env}, or add a "
        f"[{profile}] section with aws_access_key_id and aws_secret_access_key to {path} "
        "(s3.credentials_file and s3.profile in the inventory choose another file or profile)"
    )
    parser = configparser.RawConfigParser()
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except FileNotFoundError:
        raise UsageError(f"no S3 credentials for {url or 'the repository'}", hint=looked) from None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise UsageError(f"cannot read S3 credentials file {path}: {reason}") from None
    if not parser.has_section(profile):
        raise UsageError(
            f"no S3 credentials for {url or 'the repository'}: {path} has no profile [{profile}]",
            hint=looked,
        )
    section = parser[profile]
    access = section.get("aws_access_key_id", "").strip()
    secret = section.get("aws_secret_access_key", "").strip()
    if not access or not secret:
        raise UsageError(
            f"profile [{profile}] in {path} lacks aws_access_key_id or aws_secret_access_key",
            hint=looked,
        )
    token = section.get("aws_session_token", "").strip() or None
    return S3Credentials(access, secret, token, f"{path} [{profile}]")


class S3Storage:
    """Objects under ``prefix/`` in one bucket. Construct with :meth:`from_url`
    (inventory settings) or directly. The bucket must exist: call
    :meth:`create_bucket` to create it (``dbfleet repo init`` does)."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        credentials: S3Credentials,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        path_style: bool = True,
        verify_tls: bool = True,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
        list_page_size: int = 1000,
        abort_journal: Path | None = None,
    ) -> None:
        """``abort_journal``: where to remember uploads whose abort failed
        (see :mod:`dbfleet.storage.s3_journal`); ``None``: nowhere."""
        if not bucket:
            raise UsageError("an S3 repository url needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._root = f"{self.prefix}/" if self.prefix else ""
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.region = region or DEFAULT_REGION
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.list_page_size = list_page_size
        self._journal = AbortJournal(abort_journal, endpoint, bucket) if abort_journal else None
        self._credential_source = credentials.source
        self._redact = tuple(
            s
            for s in (credentials.access_key, credentials.secret_key, credentials.session_token)
            if s
        )
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "virtual"},
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=16,
            tcp_keepalive=True,
            # Send no flexible (CRC) checksums unless an operation requires one:
            # several S3-compatible stores reject them. Every body carries a
            # Content-MD5 instead, which all of them check.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            user_agent_extra="dbfleet",
        )
        session = boto3.session.Session(
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            aws_session_token=credentials.session_token,
            region_name=self.region,
        )
        self.client: S3Client = session.client(
            "s3", endpoint_url=self.endpoint, verify=verify_tls, config=config
        )
        for operation in ("PutObject", "UploadPart"):
            self.client.meta.events.register(f"before-send.s3.{operation}", _no_expect_continue)

    @classmethod
    def from_url(
        cls, url: str, options: S3Options | None = None, abort_journal: Path | None = None
    ) -> S3Storage:
        """``s3://bucket/prefix`` with the inventory's ``s3:`` settings."""
        options = options or S3Options()
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise UsageError(f"not an S3 url: {url!r}", hint="use s3://bucket/prefix")
        if "@" in parts.netloc:
            raise UsageError(
                "an S3 repository url must not contain credentials",
                hint=f"put them in {options.access_key_env}/{options.secret_key_env} "
                "or a credentials file",
            )
        if parts.query or parts.fragment:
            raise UsageError(
                f"S3 repository url {url!r} has a query or fragment",
                hint="settings go in the repository's s3: section",
            )
        bucket = parts.netloc
        if not bucket:
            raise UsageError(f"S3 repository url {url!r} has no bucket", hint="s3://bucket/prefix")
        if options.endpoint is not None and urlsplit(options.endpoint).scheme not in (
            "http",
            "https",
        ):
            raise UsageError(
                f"s3.endpoint {options.endpoint!r} must start with http:// or https://"
            )
        region = (
            options.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        )
        return cls(
            bucket,
            unquote(parts.path),
            resolve_credentials(options, url),
            endpoint=options.endpoint,
            region=region,
            path_style=options.path_style,
            verify_tls=options.verify_tls,
            abort_journal=abort_journal,
        )

    # -- names -----------------------------------------------------------

    def _key(self, name: str) -> str:
        if not name or name.startswith("/") or ".." in name.split("/") or name.endswith("/"):
            raise PermanentStorageError(f"invalid object name {name!r}")
        return self._root + name

    def _where(self) -> str:
        return f"{self.url} ({self.endpoint})" if self.endpoint else self.url

    # -- errors ----------------------------------------------------------

    def _clean(self, text: str) -> str:
        """One line, bounded, and without any credential in it."""
        for secret in self._redact:
            text = text.replace(secret, "***")
        text = re.sub(r"\s+", " ", text).strip()
        return text if len(text) <= 300 else text[:297] + "..."

    def _error(self, exc: Exception, op: str, name: str) -> StorageError:
        """Translate a boto/network failure into dbfleet's storage errors."""
        what = f"S3 {op} {name!r}" if name else f"S3 {op}"
        if isinstance(exc, ClientError):
            error: dict[str, Any] = dict(exc.response.get("Error", {}))
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            message = self._clean(str(error.get("Message", "")))
            if code in _NOT_FOUND:
                return NotFoundError(f"{name} not found in {self.url}")
            if code == "NoSuchBucket":
                return PermanentStorageError(
                    f"bucket {self.bucket!r} does not exist at {self.endpoint or 'AWS S3'}",
                    hint="create it with 'dbfleet repo init' or in the provider's console",
                )
            if code in _DENIED or status == 403:
                return PermanentStorageError(
                    f"{what} in {self._where()} was refused: {code or status}"
                    + (f": {message}" if message else ""),
                    hint=f"check the credentials from {self._credential_source} "
                    "and their permissions on the bucket",
                )
            detail = f"{code or 'HTTP ' + str(status)}" + (f": {message}" if message else "")
            if 400 <= status < 500 and status not in (408, 429) and code not in _TRANSIENT_4XX:
                return PermanentStorageError(f"{what} in {self._where()} failed: {detail}")
            return StorageError(f"{what} in {self._where()} failed: {detail}")
        return StorageError(
            f"{what} in {self._where()} failed: {self._clean(str(exc)) or type(exc).__name__}"
        )

    # -- Storage ---------------------------------------------------------

    def put(self, name: str, data: bytes) -> None:
        key = self._key(name)
        try:
            if len(data) > self.multipart_threshold:
                self._put_multipart(key, data)
            else:
                self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=bytes(data), ContentMD5=_md5(data)
                )
        except (ClientError, *_NETWORK_ERRORS) as exc:
            raise self._error(exc, "put", name) from exc

    def _put_multipart(self, key: str, data: bytes) -> None:
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        try:
            view = memoryview(data)
            parts: builtins.list[CompletedPartTypeDef] = []
            for number, start in enumerate(range(0, len(data), self.part_size), start=1):
                body = bytes(view[start : start + self.part_size])
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ContentMD5=_md5(body),
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:  # a failed part, a timeout, Ctrl-C: leave no parts behind
            self._abort(key, upload_id)
            raise

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, *_NETWORK_ERRORS) as exc:
            if self._journal:
                self._journal.add(key, upload_id)
            log.warning(
                "could not abort the unfinished upload of %s in %s (%s); its parts stay "
                "(invisible) until 'dbfleet repo unlock' or prune on this host aborts it "
                "once the server answers, or a lifecycle rule removes it",
                key,
                self._where(),
                self._error(exc, "abort", key),
            )

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        key = self._key(name)
        if length == 0:
            self.stat(name)  # NotFoundError for a missing name
            return b""
        request: GetObjectRequestTypeDef = {"Bucket": self.bucket, "Key": key}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            request["Range"] = f"bytes={offset}-{end}"
        try:
            answer = self.client.get_object(**request)
            body = answer["Body"]
            try:
                return body.read()  # botocore checks the length against Content-Length
            finally:
                body.close()
        except ClientError as exc:
            if _code(exc) == "InvalidRange":  # 416: the range starts at or past the end
                return b""
            raise self._error(exc, "get", name) from exc
        except _NETWORK_ERRORS as exc:
            raise self._error(exc, "get", name) from exc

    def stat(self, name: str) -> ObjectInfo:
        key = self._key(name)
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except (ClientError, *_NETWORK_ERRORS) as exc:
            raise self._error(exc, "stat", name) from exc
        return ObjectInfo(name, int(answer["ContentLength"]))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if prefix.startswith("/"):
            raise PermanentStorageError(f"invalid list prefix {prefix!r}")
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self._root + prefix,
            PaginationConfig={"PageSize": self.list_page_size},
        )
        cut = len(self._root)
        iterator = iter(pages)
        while True:
            try:
                page = next(iterator)
            except StopIteration:
                return
            except (ClientError, *_NETWORK_ERRORS) as exc:
                raise self._error(exc, "list", prefix) from exc
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):  # a "folder" marker made by a console: no object
                    continue
                modified = obj.get("LastModified")
                when = modified.timestamp() if modified is not None else None
                yield ObjectInfo(key[cut:], int(obj["Size"]), when)

    def delete(self, name: str) -> None:
        key = self._key(name)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return
            raise self._error(exc, "delete", name) from exc
        except _NETWORK_ERRORS as exc:
            raise self._error(exc, "delete", name) from exc

    def close(self) -> None:
        self.client.close()

    # -- bucket and upload housekeeping ------------------------------------

    def bucket_exists(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND | {"NoSuchBucket"}:
                return False
            raise self._error(exc, "head bucket", "") from exc
        except _NETWORK_ERRORS as exc:
            raise self._error(exc, "head bucket", "") from exc
        return True

    def create_bucket(self) -> bool:
        """Create the bucket; ``False`` if it already exists and is ours.
        ``dbfleet repo init`` calls this; nothing else creates buckets."""
        request: CreateBucketRequestTypeDef = {"Bucket": self.bucket}
        if self.region != DEFAULT_REGION:  # AWS wants the region spelled out elsewhere
            request["CreateBucketConfiguration"] = {
                "LocationConstraint": cast(Any, self.region),
            }
        try:
            self.client.create_bucket(**request)
        except ClientError as exc:
            code = _code(exc)
            if code == "BucketAlreadyOwnedByYou":
                return False
            if code == "BucketAlreadyExists":
                raise PermanentStorageError(
                    f"bucket name {self.bucket!r} is taken by another account",
                    hint="bucket names are global on AWS: choose another",
                ) from exc
            raise self._error(exc, "create bucket", "") from exc
        except _NETWORK_ERRORS as exc:
            raise self._error(exc, "create bucket", "") from exc
        return True

    def incomplete_uploads(self, prefix: str = "") -> builtins.list[tuple[str, str, datetime]]:
        """Unfinished multipart uploads below ``prefix``: ``(name, upload id,
        initiated)``. They are invisible to ``list`` but cost storage.

        Lists the whole bucket's uploads and filters here: MinIO answers a
        ``Prefix`` only when it is empty or a complete object name."""
        wanted = self._root + prefix
        found: builtins.list[tuple[str, str, datetime]] = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket):
                for upload in page.get("Uploads", []):
                    key = upload["Key"]
                    if key.startswith(wanted):
                        found.append(
                            (key[len(self._root) :], upload["UploadId"], upload["Initiated"])
                        )
        except (ClientError, *_NETWORK_ERRORS) as exc:
            raise self._error(exc, "list uploads", prefix) from exc
        return found

    def abort_incomplete_uploads(self, older_than: float = 24 * 3600.0, prefix: str = "") -> int:
        """Abort unfinished multipart uploads started more than ``older_than``
        seconds ago (left by a killed process); returns how many. Younger ones
        may belong to a backup that is still running."""
        cutoff = time.time() - older_than
        aborted = 0
        for write in self.unfinished_writes(prefix):
            if write.started <= cutoff:
                self.remove_unfinished(write)
                aborted += 1
        return aborted

    def unfinished_writes(self, prefix: str = "") -> builtins.list[UnfinishedWrite]:
        """:meth:`incomplete_uploads`, and the uploads whose abort failed on
        this host (:mod:`dbfleet.storage.s3_journal`), as the storage
        interface's debris (:class:`dbfleet.storage.base.UnfinishedWrites`)."""
        journal = {e.upload_id: e for e in self._journal.entries()} if self._journal else {}
        found = [
            UnfinishedWrite(name, initiated.timestamp(), upload_id, upload_id in journal)
            for name, upload_id, initiated in self.incomplete_uploads(prefix)
        ]
        listed = {w.token for w in found}
        wanted = self._root + prefix
        for entry in journal.values():
            if entry.upload_id in listed or not entry.key.startswith(wanted):
                continue
            if self._upload_exists(entry.key, entry.upload_id):
                found.append(
                    UnfinishedWrite(
                        entry.key[len(self._root) :], entry.recorded, entry.upload_id, True
                    )
                )
            else:
                assert self._journal is not None
                self._journal.remove(entry.upload_id)  # completed, or aborted elsewhere
        return found

    def _upload_exists(self, key: str, upload_id: str) -> bool:
        """Asked by exact key, which every server answers (see the journal)."""
        try:
            answer = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        except (ClientError, *_NETWORK_ERRORS) as exc:
            raise self._error(exc, "list uploads", key) from exc
        return any(u["UploadId"] == upload_id for u in answer.get("Uploads", []))

    def remove_unfinished(self, write: UnfinishedWrite) -> bool:
        """Abort the upload. S3 cannot tell whether its writer still lives:
        the caller's age rule (:mod:`dbfleet.repo.debris`) decides."""
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self._root + write.name, UploadId=write.token
            )
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":  # else: completed or aborted meanwhile
                raise self._error(exc, "abort upload", write.name) from exc
        except _NETWORK_ERRORS as exc:
            raise self._error(exc, "abort upload", write.name) from exc
        if self._journal:
            self._journal.remove(write.token)
        return True


def _no_expect_continue(request: Any, **_kwargs: Any) -> None:
    """Drop the ``Expect: 100-continue`` that botocore puts on every upload.

    After a zero-length PUT (an empty object) botocore leaves the kept-alive
    connection in a state where the *next* request on it stalls until the
    read timeout and is then silently sent again (boto/botocore#3755; seen
    here with MinIO), and against servers that answer ``100 Continue`` late
    it waits up to a second per upload. The header is not signed, so removing
    it is safe; the cost is that a refused upload sends its body (one part at
    most) before the refusal arrives."""
    request.headers.pop("Expect", None)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
