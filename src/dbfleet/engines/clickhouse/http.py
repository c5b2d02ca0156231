"""ClickHouse's HTTP interface, spoken with the standard library's http.client.

Why not a driver: clickhouse-connect needs server features that 18.16 lacks,
clickhouse-driver speaks the native TCP protocol. The HTTP interface is the
same on every version since 2016 and needs nothing but http.client: queries
go in the POST body, settings in the URL, credentials in the
``X-ClickHouse-User``/``X-ClickHouse-Key`` headers (never the URL, never a
command line). Result bodies are read as streams and request bodies (INSERT
data) are sent with chunked transfer encoding, so memory stays bounded.

One caveat of the protocol: once ClickHouse has sent ``200 OK`` and some
data, an error later in the query is *appended to the body as text*
(``Code: 241, e.displayText() = DB::Exception: ...``; newer releases end
the stream with ``__exception__`` and abort the connection).
:class:`ResultStream` keeps the tail of every body and fails when it ends
in such a message, or when the connection breaks before the final chunk.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from io import RawIOBase
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from dbfleet.engines._shared.http_url import parse_http_url
from dbfleet.errors import EngineError

DEFAULT_PORTS = {"http": 8123, "https": 8443}
TAIL_BYTES = 64 * 1024
ERROR_BODY_BYTES = 64 * 1024
# "Code: 60, e.displayText() = DB::Exception: ..., e.what() = DB::Exception" (18.x, 19.x)
# "Code: 60. DB::Exception: ... (UNKNOWN_TABLE) (version 23.8.1.1)" (20.x and later)
_MESSAGE = re.compile(
    r"Code: (\d+)[.,] (?:e\.displayText\(\) = )?(?:DB::Exception: )?(.*?)"
    r"(?:, e\.what\(\) = \S+)?\s*\Z",
    re.S,
)
_TAIL_EXCEPTION = re.compile(
    rb"Code: (\d+)[.,] (?:e\.displayText\(\) = )?DB::Exception: [^\x00]*\Z", re.S
)


@dataclass(frozen=True)
class Location:
    """Where a ClickHouse database is: ``http[s]://user@host:port/database``."""

    scheme: str
    host: str
    port: int
    user: str
    database: str

    @classmethod
    def parse(cls, url: str) -> Location:
        parsed = parse_http_url(url, "ClickHouse", DEFAULT_PORTS, "http://user@host:8123/db")
        return cls(
            scheme=parsed.scheme,
            host=parsed.host,
            port=parsed.port,
            user=parsed.user or "default",
            database=parsed.database,
        )

    def describe(self, database: str | None = None) -> str:
        return f"{self.user}@{self.host}:{self.port}/{database or self.database}"


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database.replace("/", "%2F"), "", ""))


class ServerError(EngineError):
    """ClickHouse answered with an exception; ``code`` is its error code."""

    def __init__(self, code: int | None, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


def parse_error(text: str) -> tuple[int | None, str]:
    """(code, message) from a ClickHouse exception text, without the noise."""
    text = text.strip()
    match = _MESSAGE.search(text)
    if not match:
        return None, " ".join(text.split())[:2000]
    message = re.sub(r"\s*\(version [^)]*\)\s*\Z", "", match.group(2)).strip()
    return int(match.group(1)), " ".join(message.split())[:2000]


class ResultStream(RawIOBase):
    """A query's response body as a readable stream that fails at its end
    when the server appended an exception, or when the body is cut short."""

    def __init__(self, response: http.client.HTTPResponse, what: str, secret: str | None) -> None:
        super().__init__()
        self._response = response
        self._what = what
        self._secret = secret
        self._tail = bytearray()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            n = self._response.readinto(view)
        except (http.client.HTTPException, OSError) as exc:
            raise EngineError(
                f"connection lost while reading {self._what} after {self.bytes_read} bytes: "
                f"{_redact(str(exc) or type(exc).__name__, self._secret)}"
            ) from None
        if n:
            self.bytes_read += n
            if n >= TAIL_BYTES:
                self._tail[:] = view[n - TAIL_BYTES : n]
            else:
                self._tail += view[:n]
                del self._tail[:-TAIL_BYTES]
        else:
            self._check_end()
        return n

    def _check_end(self) -> None:
        tail = bytes(self._tail)
        if b"__exception__" in tail[-4096:]:
            text = tail[tail.find(b"__exception__") :].decode(errors="replace")
            raise self._failed(text.replace("__exception__", ""))
        start = tail.rfind(b"Code: ")
        while start >= 0:
            if _TAIL_EXCEPTION.match(tail, start):
                raise self._failed(tail[start:].decode(errors="replace"))
            start = tail.rfind(b"Code: ", 0, start)

    def _failed(self, text: str) -> ServerError:
        code, message = parse_error(text)
        return ServerError(
            code,
            f"ClickHouse failed while sending {self._what}"
            + (f" (error {code})" if code else "")
            + f": {_redact(message, self._secret)}",
        )


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class Client:
    """One ClickHouse server; a new connection per request (several run at
    once during a backup: the data stream and its fingerprint)."""

    def __init__(
        self,
        location: Location,
        password: str | None,
        *,
        connect_timeout: float = 10,
        timeout: float = 600,
        ca_file: str | None = None,
        password_hint: str = "",
    ) -> None:
        self.location = location
        self._password = password
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._ca_file = ca_file
        self._password_hint = password_hint

    # -- plumbing ----------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        loc = self.location
        if loc.scheme == "https":
            context = ssl.create_default_context(cafile=self._ca_file)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                loc.host, loc.port, timeout=self._connect_timeout, context=context
            )
        else:
            conn = http.client.HTTPConnection(loc.host, loc.port, timeout=self._connect_timeout)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise EngineError(
                f"cannot connect to ClickHouse at {loc.host}:{loc.port}: {exc.strerror or exc}",
                hint="check that the server is running and the url's host and port "
                "(the HTTP interface, default 8123)",
            ) from None
        assert conn.sock is not None
        conn.sock.settimeout(self._timeout)
        return conn

    def _headers(self) -> dict[str, str]:
        headers = {"X-ClickHouse-User": self.location.user, "User-Agent": "dbfleet"}
        if self._password:
            headers["X-ClickHouse-Key"] = self._password
        return headers

    def _path(self, settings: Mapping[str, Any] | None, query: str | None = None) -> str:
        params: dict[str, str] = {k: str(v) for k, v in (settings or {}).items()}
        if query is not None:
            params["query"] = query
        return "/?" + urlencode(params) if params else "/"

    def _error(self, response: http.client.HTTPResponse, what: str) -> ServerError:
        try:
            body = response.read(ERROR_BODY_BYTES).decode(errors="replace")
        except (http.client.HTTPException, OSError):
            body = ""
        code, message = parse_error(body or f"HTTP {response.status} {response.reason}")
        header_code = response.getheader("X-ClickHouse-Exception-Code")
        if code is None and header_code and header_code.isdigit():
            code = int(header_code)
        message = _redact(message, self._password)
        hint = None
        if response.status in (401, 403) or code in (192, 193, 194, 516):
            hint = (
                f"check the user in url and the password in {self._password_hint}"
                if self._password_hint
                else "no password configured: set password_env or password_file"
            )
        elif code == 81:
            hint = "check the database name in url"
        elif code == 164:
            hint = "the user is read-only (readonly=1); restore needs a user that may write"
        return ServerError(code, f"{what} failed: {message}", hint=hint)

    def _send(
        self, conn: http.client.HTTPConnection, path: str, body: bytes | None, what: str
    ) -> http.client.HTTPResponse:
        try:
            conn.request("POST", path, body=body or b"", headers=self._headers())
            return conn.getresponse()
        except (http.client.HTTPException, OSError) as exc:
            conn.close()
            raise EngineError(
                f"{what} failed: connection to ClickHouse lost: "
                f"{_redact(str(exc) or type(exc).__name__, self._password)}"
            ) from None

    # -- requests ----------------------------------------------------------

    def execute(self, sql: str, settings: Mapping[str, Any] | None = None) -> bytes:
        """Run a statement; return its (small) response body."""
        what = sql.split(None, 3)[:3]
        label = "ClickHouse " + " ".join(what)
        conn = self._connection()
        try:
            response = self._send(conn, self._path(settings), sql.encode(), label)
            if response.status != 200:
                raise self._error(response, label)
            stream = ResultStream(response, "the result", self._password)
            chunks = []
            while chunk := stream.read(1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            conn.close()

    def rows(self, sql: str, settings: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """A SELECT's rows as dicts (``FORMAT JSON``; 64-bit integers come as strings)."""
        body = self.execute(sql + "\nFORMAT JSON", settings)
        data: list[dict[str, Any]] = json.loads(body)["data"]
        return data

    @contextmanager
    def stream(
        self, sql: str, what: str, settings: Mapping[str, Any] | None = None
    ) -> Iterator[ResultStream]:
        """Start a query; yield its body once the response headers are in
        (the query is running and has chosen the data it reads)."""
        conn = self._connection()
        try:
            response = self._send(conn, self._path(settings), sql.encode(), what)
            if response.status != 200:
                raise self._error(response, f"reading {what}")
            yield ResultStream(response, what, self._password)
        finally:
            conn.close()

    def insert(
        self,
        sql: str,
        chunks: Iterable[bytes],
        what: str,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """``INSERT ... FORMAT x`` with the data sent as a chunked request body."""
        conn = self._connection()
        try:
            try:
                conn.putrequest("POST", self._path(settings, sql), skip_accept_encoding=True)
                for name, value in self._headers().items():
                    conn.putheader(name, value)
                conn.putheader("Transfer-Encoding", "chunked")
                conn.putheader("Content-Type", "application/octet-stream")
                conn.endheaders()
            except OSError as exc:
                raise EngineError(f"writing {what} failed: {exc}") from None
            sent_all = True
            try:
                for chunk in chunks:
                    if chunk:
                        conn.send(b"%x\r\n" % len(chunk))
                        conn.send(chunk)
                        conn.send(b"\r\n")
                conn.send(b"0\r\n\r\n")
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                sent_all = False  # the server gave up early: its answer says why
            try:
                response = conn.getresponse()
            except (http.client.HTTPException, OSError) as exc:
                raise EngineError(
                    f"writing {what} failed: connection to ClickHouse lost: {exc}"
                ) from None
            if response.status != 200:
                raise self._error(response, f"writing {what}")
            response.read()
            if not sent_all:
                raise EngineError(f"writing {what} failed: ClickHouse stopped reading the data")
        finally:
            conn.close()
