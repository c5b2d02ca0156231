"""The FastAPI application: :func:`create_app`.

Routers: :mod:`dbfleet.web.probes` (``/healthz``, ``/readyz``), and, when
present, the API, health and metrics routes and the dashboard pages
(``dbfleet.web.pages.router``). OpenAPI at ``/openapi.json``, its browsable
form at ``/docs``. Errors are JSON ``{"detail": "..."}``; a dbfleet error
that escapes a route is one line, never a traceback.
"""

from __future__ import annotations

import importlib.util
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from dbfleet import __version__
from dbfleet.errors import DbfleetError, UsageError, redact
from dbfleet.web import probes
from dbfleet.web.state import WebState

log = logging.getLogger("dbfleet.web")

DESCRIPTION = """dbfleet's HTTP API: backups, drills, jobs and health of the estate.

Send a token from `dbfleet token add NAME --role viewer|operator|admin` as
`Authorization: Bearer TOKEN`. See docs/observability.md.
"""


def create_app(state: WebState) -> FastAPI:
    """The app for one process; ``state`` is reachable from routes as
    ``request.app.state.web`` (:func:`dbfleet.web.auth.web_state`)."""
    app = FastAPI(
        title="dbfleet",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.web = state
    app.include_router(probes.router)
    for module in (
        "dbfleet.web.api",
        "dbfleet.web.health",
        "dbfleet.web.metrics",
        "dbfleet.web.pages",
    ):
        # each is its own piece (the pages come from the dashboard work);
        # a piece not in this tree yet is simply not served
        if importlib.util.find_spec(module) is not None:
            app.include_router(importlib.import_module(module).router)

    @app.exception_handler(DbfleetError)
    async def _dbfleet_error(request: Request, exc: DbfleetError) -> JSONResponse:
        status = 400 if isinstance(exc, UsageError) else 503
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # one line in the log, never a traceback to the client (a bug: report it)
        log.error("%s %s: internal error: %s: %s", request.method, request.url.path,
                  type(exc).__name__, redact(str(exc)))  # fmt: skip
        return JSONResponse({"detail": "internal error (see the server log)"}, status_code=500)

    return app
