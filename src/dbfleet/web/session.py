"""How a browser carries its token, and the CSRF rule for its forms.

Log-in (``POST /login`` with the token in a form field) stores the token in
cookie :data:`COOKIE`: ``HttpOnly`` (page scripts cannot read it),
``SameSite=Strict`` (no other site's page or link makes the browser send
it), ``Path=/``, and ``Secure`` when the request came over HTTPS. The
bearer header stays the way for scripts; :func:`dbfleet.web.auth.require`
accepts either.

CSRF: SameSite=Strict already keeps the cookie off cross-site requests; in
addition every state-changing request that authenticates with the cookie
must carry an ``Origin`` (or, lacking one, a ``Referer``) of this very
server, else 403 (:func:`same_origin`). Bearer requests need no such check:
a browser never adds that header on its own.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials

COOKIE = "dbfleet_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def own_origin(request: Request) -> str:
    """``scheme://host[:port]`` this request was addressed to."""
    host = request.headers.get("host") or request.url.netloc
    return f"{request.url.scheme}://{host}".lower()


def same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (else ``Referer``) is this server."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = request.headers.get("referer")
        if not referer:
            return False
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    return origin.lower().rstrip("/") == own_origin(request)


def check_same_origin(request: Request) -> None:
    """403 for a cross-site (or unprovable) state-changing request."""
    if request.method not in SAFE_METHODS and not same_origin(request):
        raise HTTPException(
            status_code=403,
            detail="cross-site request refused: the Origin header is not this server",
        )


def cookie_credentials(request: Request) -> HTTPAuthorizationCredentials | None:
    """The token in :data:`COOKIE` as bearer credentials (``None`` without
    the cookie); raises 403 for a cookie-authenticated cross-site POST."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    check_same_origin(request)
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
