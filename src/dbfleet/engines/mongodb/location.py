"""Where a MongoDB entry points, how to reach it, and the tools that dump it.

Pure helpers of :mod:`dbfleet.engines.mongodb`: URL handling (the path
names the database; no path means the whole instance), the URL and the
password file the mongo-tools get, finding ``mongodump``/``mongorestore``,
and the decision whether a dump takes the oplog along.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import yaml
from blake3 import blake3
from pymongo import uri_parser
from pymongo.errors import ConfigurationError, InvalidURI

from dbfleet.errors import ToolMissingError, UsageError

SYSTEM_DATABASES = frozenset({"admin", "config", "local"})
SCRATCH_PREFIX = "dbfleet_scratch_"
"""Databases named so are scratch copies of whole instances (verify, drill):
never part of a whole-instance snapshot or a server entry's databases."""
TOOLS_ENV = "DBFLEET_MONGODB_TOOLS"
MAX_DATABASE_NAME = 63  # bytes; MongoDB's limit is 64 including a terminator
_BAD_DB_CHARS = set('/\\. "$*<>:|?\0')
TOOL_HINT = (
    "install the MongoDB Database Tools: the mongodb-database-tools package from MongoDB's "
    "apt/yum repository, or build them with Go (go build github.com/mongodb/mongo-tools/"
    "{tool}/main, see docs/mongodb.md); or point options.tools_dir or ${env} at the directory "
    "that holds {tool}"
)


@dataclass(frozen=True)
class Location:
    """A parsed ``mongodb://`` or ``mongodb+srv://`` URL (never with a password)."""

    url: str
    database: str | None
    """``None``: the entry is the whole instance."""
    username: str | None
    hosts: str
    auth_mechanism: str | None = None
    database_prefix: str | None = None
    """Set for a path ending in ``*`` (``mongodb://host/dbfleet_scratch_x_*``):
    the location is the databases named ``<prefix><database>``, a whole
    instance restored under a prefix (scratch copies). ``url`` is then the
    instance's URL, without the path."""

    @classmethod
    def parse(cls, url: str) -> Location:
        parts = urlsplit(url)
        if parts.scheme not in ("mongodb", "mongodb+srv"):
            raise UsageError(
                f"MongoDB url must start with mongodb:// or mongodb+srv://, not {parts.scheme!r}"
            )
        prefix = None
        path = unquote(parts.path.lstrip("/"))
        if path.endswith("*"):
            prefix = path[:-1]
            check_database_prefix(prefix)
            # the driver and the tools get the instance: a path would be
            # taken for the default (and authentication) database
            url = with_database(url, None)
            parts = urlsplit(url)
        parsed = None
        try:
            # mongodb+srv URLs would need DNS to parse: the driver resolves
            # them when it connects, and reports problems then.
            if parts.scheme == "mongodb":
                parsed = uri_parser.parse_uri(url)
        except (InvalidURI, ConfigurationError, ValueError) as exc:
            raise UsageError(f"invalid MongoDB url: {exc}") from None
        database = unquote(parts.path.lstrip("/")) or None
        if parsed is not None:
            database = parsed["database"] or None
            if parsed["collection"]:
                raise UsageError(
                    f"MongoDB url names a collection ({database}.{parsed['collection']})",
                    hint="the path names a database; filter collections with "
                    "options.collections / exclude_collections",
                )
        if database is not None:
            check_database_name(database)
        hosts = parts.netloc.rpartition("@")[2]
        username = unquote(parts.username) if parts.username else None
        mechanism = dict(parse_qsl(parts.query)).get("authMechanism")
        return cls(url=url, database=database, username=username, hosts=hosts,
                   auth_mechanism=mechanism, database_prefix=prefix)  # fmt: skip

    def describe(self, database: str | None = None) -> str:
        name = database if database is not None else self.database
        if name:
            return f"{self.hosts}/{name}"
        if self.database_prefix is not None:
            return f"{self.hosts} (databases {self.database_prefix}*)"
        return f"{self.hosts} (whole instance)"

    def tool_url(self) -> str:
        """The URL for mongodump/mongorestore: without the database path
        (they would take it for ``--db``), so the database the path named
        as the authentication source becomes an explicit ``authSource``."""
        parts = urlsplit(self.url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if self.database and self.username and not any(k == "authSource" for k, _ in query):
            query.append(("authSource", self.database))
        return urlunsplit((parts.scheme, parts.netloc, "/", urlencode(query, safe="$"), ""))


def check_database_name(name: str) -> None:
    bad = sorted(set(name) & _BAD_DB_CHARS)
    if not name or bad or len(name.encode()) > MAX_DATABASE_NAME:
        raise UsageError(
            f"invalid MongoDB database name {name!r}",
            hint=f"at most {MAX_DATABASE_NAME} bytes, none of {' '.join(sorted(_BAD_DB_CHARS))!r}",
        )


def check_database_prefix(prefix: str) -> None:
    """A prefix for database names: not empty (that would be every
    database), room left for a name after it."""
    bad = sorted(set(prefix) & _BAD_DB_CHARS)
    if not prefix or bad or len(prefix.encode()) > MAX_DATABASE_NAME - 1:
        raise UsageError(
            f"invalid MongoDB database prefix {prefix!r} (url path ending in '*')",
            hint=f"1 to {MAX_DATABASE_NAME - 1} bytes before the '*', none of "
            f"{' '.join(sorted(_BAD_DB_CHARS))!r}",
        )


def prefixed(prefix: str, database: str) -> str:
    """``database`` restored under ``prefix``; refused when the name would
    be longer than MongoDB allows."""
    name = prefix + database
    if len(name.encode()) > MAX_DATABASE_NAME:
        raise UsageError(
            f"database {database!r} cannot be restored under the prefix {prefix!r}: "
            f"{name!r} is longer than {MAX_DATABASE_NAME} bytes",
            hint="restore it to another instance (--to mongodb://host/), or subset with --table",
        )
    return name


def with_prefix(url: str, prefix: str) -> str:
    """``url`` pointing at the databases named ``<prefix><database>``."""
    check_database_prefix(prefix)
    parts = urlsplit(url)
    path = "/" + quote(prefix, safe="") + "*"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def with_database(url: str, database: str | None) -> str:
    """``url`` pointing at ``database`` (``None``: the whole instance)."""
    parts = urlsplit(url)
    path = "/" + quote(database, safe="") if database else "/"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def find_mongo_tool(name: str, tools_dir: str | None) -> str:
    """Path of ``mongodump``/``mongorestore``: ``options.tools_dir`` if set
    (only there), else ``$DBFLEET_MONGODB_TOOLS``, else ``PATH``."""
    hint = TOOL_HINT.format(tool=name, env=TOOLS_ENV)
    if tools_dir:
        candidate = os.path.join(os.path.expanduser(tools_dir), name)
        if os.access(candidate, os.X_OK):
            return candidate
        raise ToolMissingError(f"{name} not found in options.tools_dir {tools_dir}", hint=hint)
    directories = [d for d in os.environ.get(TOOLS_ENV, "").split(os.pathsep) if d]
    directories += os.environ.get("PATH", "").split(os.pathsep)
    for directory in directories:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ToolMissingError(f"{name} not found (searched ${TOOLS_ENV} and PATH)", hint=hint)


@contextlib.contextmanager
def tool_config(password: str | None) -> Iterator[list[str]]:
    """``["--config", file]`` for the mongo-tools when there is a password:
    a private 0600 YAML file with ``password:`` (the tools' only way to take
    one off the command line), deleted afterwards; ``[]`` otherwise."""
    if password is None:
        yield []
        return
    fd, path = tempfile.mkstemp(prefix="dbfleet-mongo-", suffix=".yaml")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            yaml.safe_dump({"password": password}, out)
        yield ["--config", path]
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def oplog_decision(hello: Mapping[str, Any], whole_instance: bool, wanted: Any) -> tuple[bool, str]:
    """Whether ``mongodump`` runs with ``--oplog``, and why.

    ``wanted`` is ``options.oplog``: ``"auto"`` (default: when the server is
    a replica set member and the entry is the whole instance), ``True``
    (required: refuse what cannot have it) or ``False``. mongodump only
    takes the oplog on full dumps of a replica set member, not through a
    mongos and not with ``--db``."""
    if wanted not in ("auto", True, False):
        raise UsageError(f"options.oplog must be auto, true or false, not {wanted!r}")
    if wanted is False:
        return False, "disabled by options.oplog"
    reason = None
    if hello.get("msg") == "isdbgrid":
        reason = "a mongos (sharded cluster) has no oplog to capture"
    elif not hello.get("setName"):
        reason = "the server is not a replica set member"
    elif not whole_instance:
        reason = "mongodump takes the oplog only with whole-instance dumps (url without database)"
    if reason is None:
        return True, f"replica set {hello['setName']}"
    if wanted is True:
        raise UsageError(f"options.oplog is true but {reason}")
    return False, reason


# Longest scratch label kept as it is in a whole instance's scratch prefix;
# a longer one is hashed, so that database names still fit after it.
MAX_SCRATCH_LABEL = 16


def scratch_prefix(label: str) -> str:
    """The prefix of a whole instance's scratch databases:
    ``dbfleet_scratch_<label>_`` (``verify_1a2b3c``: 30 bytes, leaving 33
    for the database names), the label hashed when long or not a valid name."""
    try:
        check_database_name(label)
        usable = len(label.encode()) <= MAX_SCRATCH_LABEL
    except UsageError:
        usable = False
    return f"{SCRATCH_PREFIX}{label if usable else blake3(label.encode()).hexdigest()[:12]}_"
