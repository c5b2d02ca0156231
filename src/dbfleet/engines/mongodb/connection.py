"""A connected pymongo client for an engine location: errors become
``EngineError`` naming the server, never the password. Also the password
the tools get, and where a missing or wrong one is configured."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pymongo import MongoClient
from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

from dbfleet.config import DatabaseConfig
from dbfleet.engines.mongodb.location import Location
from dbfleet.errors import EngineError, UsageError

AUTHENTICATION_FAILED = 18
# Mechanisms that authenticate without a password.
PASSWORDLESS = {"MONGODB-X509", "GSSAPI", "MONGODB-AWS", "MONGODB-OIDC"}


@contextmanager
def connect(
    location: Location,
    password: str | None,
    timeout: float,
    password_hint: Callable[[], str],
) -> Iterator[MongoClient[Any]]:
    """A client whose server answered ``ping`` within ``timeout`` seconds;
    closed on exit."""
    timeout_ms = int(timeout * 1000)
    extra: dict[str, Any] = {"password": password} if password and location.username else {}
    try:
        client: MongoClient[Any] = MongoClient(
            location.url, serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms, appname="dbfleet", **extra,
        )  # fmt: skip
    except (ConfigurationError, ValueError, TypeError) as exc:
        raise UsageError(f"invalid MongoDB url {location.describe()}: {exc}") from None
    try:
        try:
            client.admin.command("ping")
        except OperationFailure as exc:
            if exc.code == AUTHENTICATION_FAILED:
                raise EngineError(
                    f"MongoDB authentication failed for {location.username!r} at "
                    f"{location.hosts}", hint=password_hint(),
                ) from None  # fmt: skip
            raise EngineError(f"MongoDB {location.hosts}: {exc}") from None
        except PyMongoError as exc:
            raise EngineError(
                f"MongoDB at {location.hosts} is unreachable: {short_error(exc)}",
                hint="check url and that the server is running",
            ) from None
        yield client
    except PyMongoError as exc:
        raise EngineError(f"MongoDB {location.describe()}: {short_error(exc)}") from None
    finally:
        client.close()


def short_error(exc: BaseException) -> str:
    """A driver error in one line (server selection errors list topologies)."""
    text = str(exc).split(", Timeout:")[0].split(" Topology Description:")[0]
    return text.strip()


def tool_password(config: DatabaseConfig, location: Location, password: str | None) -> str | None:
    """The password for the tools. They would prompt on stdin for a
    user without one (and fail, stdin is closed): say what is missing."""
    mechanism = location.auth_mechanism
    if password is None and location.username and mechanism not in PASSWORDLESS:
        where = password_hint(config).removeprefix("check the password in ")
        raise UsageError(
            f"no password for MongoDB user {location.username!r}",
            hint=f"set {where}" if where != "set password_env" else where,
        )
    return password


def password_hint(config: DatabaseConfig) -> str:
    where = [f"${config.password_env}"] if config.password_env else []
    where += [str(config.password_file)] if config.password_file else []
    return f"check the password in {' / '.join(where)}" if where else "set password_env"
