"""Parse the ``http(s)://user@host:port/database`` URLs of HTTP-API engines
(ClickHouse, InfluxDB): one database, no query string, no password."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from dbfleet.errors import UsageError


@dataclass(frozen=True)
class HttpUrl:
    scheme: str
    host: str
    port: int
    user: str | None
    database: str


def parse_http_url(url: str, engine: str, default_ports: dict[str, int], example: str) -> HttpUrl:
    """``engine`` names the engine in errors; ``example`` shows a valid URL."""
    parts = urlsplit(url)
    if parts.scheme not in default_ports:
        raise UsageError(f"{engine} url must start with http:// or https://, got {parts.scheme}://")
    if parts.query or parts.fragment:
        raise UsageError(f"{engine} url takes no query parameters; use 'options:'")
    try:
        port = parts.port or default_ports[parts.scheme]
    except ValueError:
        raise UsageError(f"{engine} url has an invalid port") from None
    database = unquote(parts.path.strip("/"))
    if not database or "/" in database:
        raise UsageError(f"{engine} url must name one database: {example}")
    return HttpUrl(
        scheme=parts.scheme,
        host=parts.hostname or "localhost",
        port=port,
        user=unquote(parts.username) if parts.username else None,
        database=database,
    )
