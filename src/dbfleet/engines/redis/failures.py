"""What a failed Redis connection or command means: the error message
(without the password) and a hint on what to check."""

from __future__ import annotations

import redis as redis_client

from dbfleet.config import DatabaseConfig
from dbfleet.engines.redis.location import Location
from dbfleet.errors import EngineError


def redis_error(
    exc: BaseException,
    what: str,
    password: str | None,
    config: DatabaseConfig,
    location: Location,
) -> EngineError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if password:
        reason = reason.replace(password, "***")
    hint = None
    if isinstance(exc, redis_client.AuthenticationError) or "WRONGPASS" in reason:
        where = [f"${config.password_env}"] if config.password_env else []
        where += [str(config.password_file)] if config.password_file else []
        hint = (f"check the user in url and the password in {' / '.join(where)}" if where
                else "no password configured: set password_env or password_file")  # fmt: skip
    elif isinstance(exc, redis_client.ConnectionError) and "DB index" not in reason:
        hint = "check that the server is running and the url's host and port"
    elif "NOPERM" in reason or "no permissions" in reason:
        hint = "the ACL user lacks a permission dbfleet needs"
    return EngineError(f"{what} ({location.describe()}): {reason}", hint=hint)
