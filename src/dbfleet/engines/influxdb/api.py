"""InfluxDB 1.x's HTTP API (``/query``, ``/ping``) over http.client, and the
per-measurement fingerprint computed with InfluxQL.

Credentials go in a basic-auth header (never the URL or a command line).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from dbfleet.engines._shared.http_url import parse_http_url
from dbfleet.errors import EngineError

DEFAULT_PORTS = {"http": 8086, "https": 8086}
CHUNK_POINTS = 10_000
DIGEST_MOD = 1 << 128
FINGERPRINT_FORMAT = 2
"""Digests over every point (1, unmarked: over per-series counts and sums).
Snapshots of format 1 compare as ``format: backup None != restored 2``."""
# Every representable time: InfluxQL would otherwise end raw queries at now().
ALL_TIME = "time >= -9223372036854775806 AND time <= 9223372036854775806"


@dataclass(frozen=True)
class Location:
    scheme: str
    host: str
    port: int
    user: str | None
    database: str

    @classmethod
    def parse(cls, url: str) -> Location:
        parsed = parse_http_url(url, "InfluxDB", DEFAULT_PORTS, "http://user@host:8086/db")
        return cls(
            scheme=parsed.scheme,
            host=parsed.host,
            port=parsed.port,
            user=parsed.user,
            database=parsed.database,
        )

    def describe(self, database: str | None = None) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}/{database or self.database}"


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database.replace("/", "%2F"), "", ""))


def ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class QueryError(EngineError):
    """The server answered a statement with an error."""


class Client:
    def __init__(
        self,
        location: Location,
        password: str | None,
        *,
        timeout: float = 600,
        ca_file: str | None = None,
        password_hint: str = "",
    ) -> None:
        self.location = location
        self._password = password
        self._timeout = timeout
        self._ca_file = ca_file
        self._password_hint = password_hint

    def _connection(self) -> http.client.HTTPConnection:
        loc = self.location
        if loc.scheme == "https":
            context = ssl.create_default_context(cafile=self._ca_file)
            return http.client.HTTPSConnection(
                loc.host, loc.port, timeout=self._timeout, context=context
            )
        return http.client.HTTPConnection(loc.host, loc.port, timeout=self._timeout)

    def _headers(self, body: bytes | None) -> dict[str, str]:
        headers = {"User-Agent": "dbfleet"}
        if self.location.user is not None:
            secret = f"{self.location.user}:{self._password or ''}"
            headers["Authorization"] = "Basic " + base64.b64encode(secret.encode()).decode()
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return headers

    def _unreachable(self, exc: BaseException) -> EngineError:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return EngineError(
            f"cannot reach InfluxDB at {self.location.host}:{self.location.port}: {reason}",
            hint="check that the server is running and the url's host and port",
        )

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any, bytes]:
        conn = self._connection()
        try:
            conn.request(method, path, body=body, headers=self._headers(body))
            response = conn.getresponse()
            data = response.read()
            return response.status, response, data
        except (http.client.HTTPException, OSError) as exc:
            raise self._unreachable(exc) from None
        finally:
            conn.close()

    def version(self) -> str:
        status, response, _ = self._request("GET", "/ping")
        return str(response.getheader("X-Influxdb-Version") or "unknown")

    def query(self, statement: str, database: str | None = None) -> list[dict[str, Any]]:
        """Run one InfluxQL statement; its ``series`` (empty list if none)."""
        params = {"q": statement, "epoch": "ns"}
        if database:
            params["db"] = database
        status, _, data = self._request("POST", "/query", urlencode(params).encode())
        return self._series(statement, status, data)

    def _series(
        self, statement: str, status: int, data: bytes, exact: bool = False
    ) -> list[dict[str, Any]]:
        """The series of one answer (a whole one, or one chunk of a chunked
        answer); ``QueryError`` for an error the server put in it. ``exact``:
        numbers as ``["n", text]`` with the server's own text (``-0`` and
        ``0`` are different floats, which Python's ``json`` makes both 0)."""
        try:
            numbers: dict[str, Any] = {"parse_int": _number, "parse_float": _number}
            doc = json.loads(data, **(numbers if exact else {})) if data else {}
        except ValueError:
            doc = {"error": data[:500].decode(errors="replace")}
        error = doc.get("error")
        results = doc.get("results") or [{}]
        error = error or results[0].get("error")
        if status in (401, 403):
            hint = (
                f"check the user in url and the password in {self._password_hint}"
                if self._password_hint
                else "no password configured: set password_env or password_file"
            )
            raise QueryError(f"InfluxDB refused the credentials: {error or status}", hint=hint)
        if error or status >= 300:
            text = str(error or f"HTTP {status}")
            if self._password:
                text = text.replace(self._password, "***")
            shown = statement if len(statement) <= 120 else statement[:117] + "..."
            raise QueryError(f"InfluxDB: {shown}: {text}")
        series: list[dict[str, Any]] = results[0].get("series") or []
        return series

    def query_chunks(
        self, statement: str, database: str, chunk_size: int = CHUNK_POINTS, exact: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The series of a chunked answer, as they come: at most about
        ``chunk_size`` points in memory (a series longer than that arrives
        in several pieces, one after another). Chunked answers have no row
        limit (``max-row-limit`` truncates only whole answers). ``exact``:
        see :meth:`_series`."""
        params = {"q": statement, "epoch": "ns", "db": database, "chunked": "true",
                  "chunk_size": str(chunk_size)}  # fmt: skip
        body = urlencode(params).encode()
        conn = self._connection()
        try:
            try:
                conn.request("POST", "/query", body=body, headers=self._headers(body))
                response = conn.getresponse()
            except (http.client.HTTPException, OSError) as exc:
                raise self._unreachable(exc) from None
            while True:
                try:
                    line = response.readline()
                except (http.client.HTTPException, OSError) as exc:
                    raise self._unreachable(exc) from None
                if not line:
                    return
                if line.strip():
                    yield from self._series(statement, response.status, line, exact)
        finally:
            conn.close()

    def values(self, statement: str, database: str | None = None) -> list[list[Any]]:
        return [v for s in self.query(statement, database) for v in s.get("values") or []]


def _number(text: str) -> list[str]:
    return ["n", text]


def check_tcp(address: str, timeout: float = 5) -> None:
    """``EngineError`` unless ``host:port`` accepts connections (influxd
    backup would otherwise retry for minutes before it gives up)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout):
            pass
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"the InfluxDB backup service at {address} is not reachable: "
            f"{getattr(exc, 'strerror', None) or exc}",
            hint="set options.backup_address to the server's bind-address "
            "(influxdb.conf, default 127.0.0.1:8088; it must be reachable from dbfleet)",
        ) from None


def measurements(client: Client, database: str) -> dict[str, int]:
    """``"rp.measurement"`` -> its number of field values, for every
    measurement with data. One ``COUNT(*)`` per retention policy: cheap, and
    it touches every shard (see ``restore.wait_ready``)."""
    found: dict[str, int] = {}
    for rp in sorted(str(v[0]) for v in client.values(
            f"SHOW RETENTION POLICIES ON {ident(database)}")):  # fmt: skip
        statement = f"SELECT COUNT(*) FROM {ident(rp)}./.*/ WHERE {ALL_TIME}"
        for series in client.query(statement, database):
            for value in series.get("values") or []:
                count = sum(int(v) for v in value[1:] if v is not None)
                if count:
                    found[f"{rp}.{series['name']}"] = count
    return found


@dataclass
class _MeasurementPrint:
    rows: int = 0
    series: int = 0
    digest: int = 0
    last_series: bytes | None = None

    def add_series(self, series: dict[str, Any]) -> None:
        # Tag keys of the measurement's other series show up with "" (= absent).
        tags = {k: v for k, v in (series.get("tags") or {}).items() if v}
        key = _canonical(tags)
        if key != self.last_series:  # a long series arrives in consecutive pieces
            self.series += 1
            self.last_series = key
        fields = series["columns"][1:]
        for point in series.get("values") or []:
            values = sorted((f, v) for f, v in zip(fields, point[1:], strict=True) if v is not None)
            self.rows += len(values)
            h = hashlib.blake2b(key + b"\0" + str(point[0]).encode() + b"\0", digest_size=16)
            h.update(_canonical(values))
            self.digest = (self.digest + int.from_bytes(h.digest(), "big")) % DIGEST_MOD

    def entry(self, types: list[list[Any]]) -> dict[str, Any]:
        h = hashlib.blake2b(_canonical(types), digest_size=16)
        h.update(self.digest.to_bytes(16, "big"))
        return {"rows": self.rows, "series": self.series, "digest": h.hexdigest()}


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(client: Client, database: str) -> dict[str, Any]:
    """Per retention policy and measurement (``"rp.measurement"``): ``rows``,
    the number of field values (InfluxDB stores each field of a point
    separately), ``series``, and ``digest``: the measurement's field types
    and the sum (mod 2^128) of a BLAKE2b-128 per point over its tags, its
    timestamp and its field values as the server writes them in JSON: the
    number text itself (shortest round-trip for floats, so exact; ``-0``
    apart from ``0``).

    Every point is read, measurement by measurement, with chunked raw
    queries (bounded memory, no row limit). Values are hashed, never summed
    by the server: ``SUM()`` of valid floats can overflow to +Inf, which the
    server cannot even encode in its answer, and would not see a changed
    string or boolean at all."""
    policies = [str(v[0]) for v in client.values(f"SHOW RETENTION POLICIES ON {ident(database)}")]
    tables: dict[str, Any] = {}
    for rp in sorted(policies):
        # Per retention policy: without FROM, SHOW FIELD KEYS answers for
        # the default policy only, whose types then stood for every policy
        # (a restore of another policy's measurement alone never matched).
        types: dict[str, list[list[Any]]] = {}
        for series in client.query(f"SHOW FIELD KEYS ON {ident(database)} FROM {ident(rp)}./.*/"):
            types[series["name"]] = sorted(series.get("values") or [])
        for name in sorted(types):
            statement = f"SELECT * FROM {ident(rp)}.{ident(name)} WHERE {ALL_TIME} GROUP BY *"
            measurement = _MeasurementPrint()
            for series in client.query_chunks(statement, database, exact=True):
                measurement.add_series(series)
            if measurement.rows:
                tables[f"{rp}.{name}"] = measurement.entry(types.get(name, []))
    return {"tables": tables, "retention_policies": sorted(policies), "format": FINGERPRINT_FORMAT}


def disk_bytes(client: Client, database: str) -> int | None:
    """The database's shards on disk, from the server's own statistics
    (``SHOW STATS``, the ``shard`` module's ``diskBytes``)."""
    total = 0
    try:
        for series in client.query("SHOW STATS FOR 'shard'"):
            tags = series.get("tags") or {}
            if tags.get("database") == database:
                values = (series.get("values") or [[]])[0]
                cells = dict(zip(series["columns"], values, strict=False))
                total += int(cells.get("diskBytes") or 0)
    except QueryError:
        return None
    return total


def database_shards(client: Client, database: str) -> list[tuple[str, int]]:
    """(retention policy, shard id) of this database's shards."""
    shards = []
    for series in client.query("SHOW SHARDS"):
        if series.get("name") != database:
            continue
        columns = series["columns"]
        for value in series.get("values") or []:
            row = dict(zip(columns, value, strict=True))
            shards.append((str(row["retention_policy"]), int(row["id"])))
    return sorted(shards, key=lambda s: s[1])
