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
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from dbfleet.engines._shared.http_url import parse_http_url
from dbfleet.errors import EngineError

DEFAULT_PORTS = {"http": 8086, "https": 8086}
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

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any, bytes]:
        loc = self.location
        conn: http.client.HTTPConnection
        if loc.scheme == "https":
            context = ssl.create_default_context(cafile=self._ca_file)
            conn = http.client.HTTPSConnection(
                loc.host, loc.port, timeout=self._timeout, context=context
            )
        else:
            conn = http.client.HTTPConnection(loc.host, loc.port, timeout=self._timeout)
        headers = {"User-Agent": "dbfleet"}
        if loc.user is not None:
            token = base64.b64encode(f"{loc.user}:{self._password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response, data
        except (http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise EngineError(
                f"cannot reach InfluxDB at {loc.host}:{loc.port}: {reason}",
                hint="check that the server is running and the url's host and port",
            ) from None
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
        try:
            doc = json.loads(data) if data else {}
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

    def values(self, statement: str, database: str | None = None) -> list[list[Any]]:
        return [v for s in self.query(statement, database) for v in s.get("values") or []]


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


def fingerprint(client: Client, database: str) -> dict[str, Any]:
    """Per retention policy and measurement (``"rp.measurement"``): ``rows``,
    the number of field values (InfluxDB stores each field of a point
    separately), ``series``, and ``digest``: SHA-256 over the sorted series
    keys with, per series and field, the value count and the sum of numeric
    values, plus the measurement's field types. Strings and booleans count,
    but their values are not summed."""
    types: dict[str, list[list[Any]]] = {}
    for series in client.query(f"SHOW FIELD KEYS ON {ident(database)}"):
        types[series["name"]] = sorted(series.get("values") or [])
    policies = [str(v[0]) for v in client.values(f"SHOW RETENTION POLICIES ON {ident(database)}")]
    tables: dict[str, Any] = {}
    for rp in sorted(policies):
        per: dict[str, list[str]] = {}
        rows: dict[str, int] = {}
        statement = f"SELECT COUNT(*), SUM(*) FROM {ident(rp)}./.*/ WHERE {ALL_TIME} GROUP BY *"
        for series in client.query(statement, database):
            name = series["name"]
            columns = series["columns"][1:]
            for value in series.get("values") or []:
                cells = dict(zip(columns, value[1:], strict=True))
                rows[name] = rows.get(name, 0) + sum(
                    int(v) for k, v in cells.items() if k.startswith("count_") and v is not None
                )
                # Tag keys of other measurements show up with "" (= absent).
                tags = json.dumps({k: v for k, v in (series.get("tags") or {}).items() if v},
                                  sort_keys=True)  # fmt: skip
                per.setdefault(name, []).append(
                    tags + json.dumps(sorted((k, v) for k, v in cells.items() if v is not None))
                )
        for name, lines in per.items():
            digest = hashlib.sha256(json.dumps(types.get(name, [])).encode())
            for line in sorted(lines):
                digest.update(line.encode() + b"\n")
            tables[f"{rp}.{name}"] = {
                "rows": rows[name],
                "series": len(lines),
                "digest": digest.hexdigest()[:32],
            }
    return {"tables": tables, "retention_policies": sorted(policies)}
