"""Where a PostgreSQL entry points: its ``postgresql://`` url parsed into what
libpq's tools take as arguments and environment (never a password: that
goes through a PGPASSFILE)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from dbfleet.errors import UsageError

MAX_NAME_BYTES = 63
# URL query parameters passed on: libpq keyword -> environment variable for the tools.
URL_PARAMS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "gssencmode": "PGGSSENCMODE",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "options": "PGOPTIONS",
}


@dataclass(frozen=True)
class Location:
    host: str | None
    port: int | None
    user: str | None
    dbname: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> Location:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise UsageError(f"PostgreSQL url must start with postgresql://, got {parts.scheme}://")
        hostport = parts.netloc.rpartition("@")[2]
        if hostport.startswith("["):
            host = hostport[1 : hostport.find("]")]
        else:
            host = hostport.partition(":")[0]
        params = dict(parse_qsl(parts.query))
        unknown = set(params) - set(URL_PARAMS) - {"host", "port", "user", "dbname"}
        if unknown:
            raise UsageError(
                f"unsupported url parameter(s) {', '.join(sorted(unknown))} "
                f"(supported: host, port, user, {', '.join(sorted(URL_PARAMS))})"
            )
        try:
            port = int(params.pop("port", 0)) or parts.port
        except ValueError:
            raise UsageError("url has an invalid port") from None
        dbname = params.pop("dbname", None) or unquote(parts.path.lstrip("/"))
        if not dbname:
            raise UsageError("PostgreSQL url must name a database: postgresql://user@host/db")
        return cls(
            host=params.pop("host", None) or unquote(host) or None,
            port=port,
            user=params.pop("user", None) or (unquote(parts.username) if parts.username else None),
            dbname=dbname,
            params=params,
        )

    def describe(self, dbname: str | None = None) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.host or 'localhost'}{port}/{dbname or self.dbname}"

    def dbname_arg(self, dbname: str | None = None) -> str:
        """``-d`` value; quoted as conninfo when it would be read as one."""
        name = dbname or self.dbname
        if "=" in name or name.startswith(("postgresql:", "postgres:")):
            return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return name

    def tool_args(self) -> list[str]:
        args = ["-h", self.host] if self.host else []
        args += ["-p", str(self.port)] if self.port else []
        return args + (["-U", self.user] if self.user else [])


def with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("dbname="))
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(dbname, safe=""), query, ""))


def truncate_name(name: str) -> str:
    """PostgreSQL identifiers hold at most 63 bytes."""
    return name.encode()[:MAX_NAME_BYTES].decode(errors="ignore")
