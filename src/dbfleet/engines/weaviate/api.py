"""Weaviate's REST API over http.client, and the engine's locations.

A location is ``http(s)://host:port`` (the whole instance) or
``http(s)://host:port/Prefix`` (a *namespace*: the collections whose names
start with ``Prefix``). The API key, when there is one, travels in an
``Authorization: Bearer`` header: never in a URL, a command line, a log line
or an error message.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit, urlunsplit

from dbfleet.errors import EngineError, UsageError

DEFAULT_PORTS = {"http": 8080, "https": 443}
# Weaviate's own rule for collection (class) names.
NAME_RE = re.compile(r"^[A-Z][_0-9A-Za-z]*$")
PREFIX_RE = re.compile(r"^([A-Z][_0-9A-Za-z]*)?$")
IDLE_SECONDS = 2.0
SCRATCH_MARK = "Dbfleet_"
"""Collections of scratch and drill targets start with this; a namespace
whose prefix does not start with it never includes them."""


@dataclass(frozen=True)
class Location:
    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Location:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise UsageError(
                f"weaviate url must start with http:// or https://, got {parts.scheme}://"
            )
        if parts.query or parts.fragment:
            raise UsageError("weaviate url takes no query parameters; use 'options:'")
        if parts.username:
            raise UsageError(
                "weaviate url takes no user; the API key comes from password_env/password_file"
            )
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise UsageError("weaviate url has an invalid port") from None
        prefix = unquote(parts.path.strip("/"))
        if not PREFIX_RE.match(prefix):
            raise UsageError(
                f"weaviate url path {prefix!r} is not a collection-name prefix",
                hint="http://host:8080 for the whole instance, or http://host:8080/Prefix_ "
                "(starts with A-Z, then letters, digits and _)",
            )
        return cls(parts.scheme, parts.hostname or "localhost", port, prefix)

    def describe(self) -> str:
        where = f"{self.host}:{self.port}"
        return f"{where}/{self.prefix}" if self.prefix else where

    def owns(self, collection: str) -> bool:
        """Whether ``collection`` belongs to this namespace."""
        if not collection.startswith(self.prefix):
            return False
        return self.prefix.startswith(SCRATCH_MARK) or not collection.startswith(SCRATCH_MARK)

    def logical(self, collection: str) -> str:
        return collection[len(self.prefix) :]

    def physical(self, logical: str) -> str:
        name = self.prefix + logical
        if not NAME_RE.match(name):
            raise UsageError(
                f"collection {logical!r} needs a prefix in the target url to be a valid "
                "Weaviate name (it must start with A-Z)"
            )
        return name


def with_prefix(url: str, prefix: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + prefix if prefix else "", "", ""))


class ApiError(EngineError):
    """The server answered with an error status."""

    def __init__(self, message: str, status: int, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


class Client:
    """A keep-alive connection to one Weaviate server; every call raises
    ``EngineError`` (``ApiError`` for error statuses) saying what to check."""

    def __init__(
        self,
        location: Location,
        api_key: str | None,
        *,
        timeout: float = 600,
        ca_file: str | None = None,
        key_hint: str = "",
    ) -> None:
        self.location = location
        self._key = api_key
        self._timeout = timeout
        self._ca_file = ca_file
        self._key_hint = key_hint
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def copy(self) -> Client:
        """Another client to the same server, with a connection of its own
        (a ``Client`` is not shared between threads)."""
        return Client(
            self.location, self._key, timeout=self._timeout, ca_file=self._ca_file,
            key_hint=self._key_hint,
        )  # fmt: skip

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            loc = self.location
            if loc.scheme == "https":
                context = ssl.create_default_context(cafile=self._ca_file)
                self._conn = http.client.HTTPSConnection(
                    loc.host, loc.port, timeout=self._timeout, context=context
                )
            else:
                self._conn = http.client.HTTPConnection(loc.host, loc.port, timeout=self._timeout)
        return self._conn

    def _clean(self, text: str) -> str:
        if self._key:
            text = text.replace(self._key, "***")
        return " ".join(text.split())

    def request(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """One call; the decoded JSON answer (``None`` for an empty body)."""
        if params:
            path = f"{path}?{urlencode({k: v for k, v in params.items() if v is not None})}"
        headers = {"User-Agent": "dbfleet", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        # A keep-alive connection the server closed meanwhile fails on first
        # use. Requests that are safe to repeat (reads, and object batches,
        # which write by id) get one retry on a fresh connection; others
        # (reference batches append) get a fresh connection after an idle
        # spell instead, so that they are never sent twice.
        repeatable = method == "GET" or path == "/v1/batch/objects"
        if not repeatable and time.monotonic() - self._last_used > IDLE_SECONDS:
            self.close()
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                self._last_used = time.monotonic()
                break
            except (http.client.HTTPException, OSError) as exc:
                self.close()
                stale = isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError)
                if attempt == 0 and stale and repeatable:
                    continue
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                raise EngineError(
                    f"cannot reach Weaviate at {self.location.host}:{self.location.port}: "
                    f"{self._clean(reason)}",
                    hint="check that the server is running and the url's host and port",
                ) from None
        status = response.status
        if status in (401, 403):
            hint = (
                f"check the API key in {self._key_hint}"
                if self._key_hint
                else "no API key configured: set password_env or password_file"
            )
            raise ApiError(f"Weaviate refused {method} {path.split('?')[0]}: HTTP {status}",
                           status, hint=hint)  # fmt: skip
        if status >= 300:
            text = self._clean(raw[:2000].decode(errors="replace"))
            try:
                errors = json.loads(raw).get("error") or []
                text = self._clean("; ".join(str(e.get("message", e)) for e in errors)) or text
            except (ValueError, AttributeError):
                pass
            raise ApiError(f"Weaviate {method} {path.split('?')[0]}: HTTP {status}: {text}", status)
        return json.loads(raw) if raw.strip() else None

    # -- helpers for the calls the engine makes --------------------------

    def meta(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/v1/meta")
        return result

    def classes(self) -> list[dict[str, Any]]:
        doc = self.request("GET", "/v1/schema") or {}
        classes: list[dict[str, Any]] = doc.get("classes") or []
        return classes

    def tenants(self, collection: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (
            self.request("GET", f"/v1/schema/{quote(collection)}/tenants") or []
        )
        return result

    def objects_page(
        self, collection: str, tenant: str | None, after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """One page of the cursor API: objects in id order after ``after``."""
        doc = self.request(
            "GET",
            "/v1/objects",
            params={
                "class": collection,
                "tenant": tenant,
                "after": after or "",
                "limit": limit,
                "include": "vector",
            },
        )
        objects: list[dict[str, Any]] = (doc or {}).get("objects") or []
        return objects
