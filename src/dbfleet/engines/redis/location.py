"""Where a Redis engine points: a server over TCP or a unix socket, or an RDB file.

``redis://[user@]host[:port][/db]``, ``unix://[user@]/path.sock?db=N`` and
``rdb:///path/to/dump.rdb[?db=N]`` (the data file of a stopped or new
server). The password never appears in a URL (password_env/password_file).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from dbfleet.errors import UsageError


@dataclass(frozen=True)
class Location:
    kind: str  # "tcp", "unix" or "file"
    db: int
    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""
    user: str | None = None

    @classmethod
    def parse(cls, url: str) -> Location:
        parts = urlsplit(url)
        params = dict(parse_qsl(parts.query))
        if set(params) - {"db"}:
            raise UsageError("Redis url: the only query parameter is db")
        user = unquote(parts.username) if parts.username else None
        path = unquote(parts.path)
        try:
            if parts.scheme == "redis":
                db = int(params.get("db") or path.strip("/") or 0)
                return cls("tcp", db, parts.hostname or "127.0.0.1", parts.port or 6379, user=user)
            if parts.scheme in ("unix", "rdb"):
                if not path.startswith("/"):
                    raise UsageError(f"{parts.scheme}:// url needs an absolute path: {url}")
                kind = "unix" if parts.scheme == "unix" else "file"
                return cls(kind, int(params.get("db", 0)), path=path, user=user)
        except ValueError:
            raise UsageError(f"Redis url has an invalid port or db number: {url}") from None
        if parts.scheme == "rediss":
            raise UsageError("TLS (rediss://) is not supported yet by the redis engine")
        raise UsageError(
            f"Redis url must start with redis://, unix:// or rdb://, got {parts.scheme}://"
        )

    def describe(self) -> str:
        user = f"{self.user}@" if self.user else ""
        if self.kind == "tcp":
            return f"redis://{user}{self.host}:{self.port}/{self.db}"
        return f"{'unix' if self.kind == 'unix' else 'rdb'}://{user}{self.path}?db={self.db}"


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "redis":
        return parts._replace(path=f"/{db}", query="").geturl()
    return parts._replace(query=f"db={db}").geturl()
