"""The PostgreSQL client side: finding the client tools (``pg_dump``,
``pg_restore``, ``psql``) and their environment, and what a failed
connection means."""

from __future__ import annotations

import glob
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.process import find_tool, run_tool
from dbfleet.engines.postgresql.location import URL_PARAMS, Location
from dbfleet.errors import EngineError, ToolMissingError

PACKAGE_HINT = "postgresql-client (Debian) / postgresql-client-15"


def connect_error(
    exc: BaseException,
    dbname: str,
    password: str | None,
    config: DatabaseConfig,
    location: Location,
) -> EngineError:
    text = str(exc).strip()
    reason = text.rpartition("FATAL:")[2].strip() if "FATAL:" in text else text
    reason = re.sub(r'(connection failed: )?connection to server (at|on) "[^"]*"'
                    r"( \([^)]*\))?(, port \d+)? failed: ", "", reason)  # fmt: skip
    reason = " ".join(reason.split()) or type(exc).__name__
    if password:
        reason = reason.replace(password, "***")
    if "password" in reason:
        where = [f"${config.password_env}"] if config.password_env else []
        where += [str(config.password_file)] if config.password_file else []
        hint = (
            f"check the password in {' / '.join(where)}"
            if where
            else "no password configured: set password_env or password_file"
        )
    elif "does not exist" in reason and "database" in reason:
        hint = "check the database name in url"
    elif "pg_hba.conf" in reason or "authentication failed" in reason:
        hint = "the server's pg_hba.conf does not allow this connection"
    elif "permission denied" in reason:
        hint = "the role needs CONNECT on the database"
    else:
        hint = "check that the server is running and the url's host and port"
    where_to = location.describe(dbname)
    return EngineError(f"cannot connect to PostgreSQL {where_to}: {reason}", hint=hint)


# -- tools -----------------------------------------------------------


def find_pg_tool(
    name: str, min_major: int | None, config: DatabaseConfig, versions: dict[str, str]
) -> str:
    """The newest installed ``name`` of a major version >= ``min_major``."""
    versioned = []
    for directory in glob.glob("/usr/lib/postgresql/*/bin"):
        major = os.path.basename(os.path.dirname(directory))
        if major.isdigit():
            versioned.append((int(major), directory))
    versioned.sort(reverse=True)
    preferred = [d for m, d in versioned if min_major is None or m >= min_major]
    bin_dir = config.options.get("bin_dir")
    path = next(
        (
            os.path.join(d, name)
            for d in ([str(bin_dir)] if bin_dir else []) + preferred
            if os.access(os.path.join(d, name), os.X_OK)
        ),
        None,
    ) or find_tool(name, PACKAGE_HINT, [d for _, d in versioned])
    version = tool_version(path, versions)
    match = re.match(r"(\d+)", version)
    if min_major is not None and match and int(match.group(1)) < min_major:
        raise ToolMissingError(
            f"{name} {version} is older than the server ({min_major}) and cannot dump it",
            hint=f"install postgresql-client-{min_major}",
        )
    return path


def tool_version(path: str, versions: dict[str, str]) -> str:
    if path not in versions:
        out = run_tool([path, "--version"]).strip()
        versions[path] = re.sub(r"^\S+ \(PostgreSQL\) ", "", out)
    return versions[path]


@contextmanager
def tool_env(
    config: DatabaseConfig, location: Location, password: str | None
) -> Iterator[dict[str, str | None]]:
    env: dict[str, str | None] = {"PGAPPNAME": "dbfleet", "PGCONNECT_TIMEOUT": str(
        config.options.get("connect_timeout", 10))}  # fmt: skip
    env.update({URL_PARAMS[k]: v for k, v in location.params.items()})
    if password is None:
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="dbfleet-pg-") as directory:
        passfile = os.path.join(directory, "pgpass")
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:*:{escaped}\n")
        # The tools read the password from the file; the variable that held
        # it is not passed on to them.
        hidden = {name: None for name in ("PGPASSWORD", config.password_env) if name}
        yield env | hidden | {"PGPASSFILE": passfile}
