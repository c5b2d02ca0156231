"""Bearer-token authentication and roles for the HTTP routes.

``Depends(require("operator"))`` on a route: no ``Authorization: Bearer``
header or an unknown token -> 401 with ``WWW-Authenticate: Bearer``; a token
whose role ranks below the one required (viewer < operator < admin) -> 403.
The dependency returns the :class:`~dbfleet.web.tokens.Token`, whose name
is the actor recorded on the jobs it starts (``api:<name>``).

Browsers send the token in the dashboard's log-in cookie instead
(:mod:`dbfleet.web.session`: HttpOnly, SameSite=Strict, and an Origin check
on every state-changing request it authenticates); the header wins when
both are present.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dbfleet.errors import DbfleetError
from dbfleet.web.session import cookie_credentials
from dbfleet.web.state import WebState
from dbfleet.web.tokens import Role, Token, role_rank

bearer = HTTPBearer(auto_error=False, description="a token from `dbfleet token add`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def web_state(request: Request) -> WebState:
    state = request.app.state.web
    assert isinstance(state, WebState)
    return state


def _challenge(detail: str, error: str | None = None) -> HTTPException:
    value = 'Bearer realm="dbfleet"' + (f', error="{error}"' if error else "")
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": value})


def authenticate(state: WebState, credentials: HTTPAuthorizationCredentials | None) -> Token:
    """The token presented, or 401."""
    if credentials is None:
        raise _challenge("a bearer token is required (dbfleet token add NAME --role viewer)")
    try:
        token = state.tokens.verify(credentials.credentials)
    except DbfleetError as exc:  # an unreadable tokens file: nobody gets in, and says why
        raise HTTPException(status_code=503, detail=str(exc)) from None
    if token is None:
        raise _challenge("unknown or revoked token", "invalid_token")
    return token


def require(role: Role) -> Callable[..., Token]:
    """A FastAPI dependency that admits tokens of ``role`` or a higher one."""

    def dependency(request: Request, credentials: Credentials) -> Token:
        if credentials is None:
            credentials = cookie_credentials(request)
        token = authenticate(web_state(request), credentials)
        if role_rank(token.role) < role_rank(role):
            raise HTTPException(
                status_code=403,
                detail=f"token {token.name!r} is a {token.role}; this needs {role} or higher",
            )
        return token

    dependency.__name__ = f"require_{role}"
    return dependency
