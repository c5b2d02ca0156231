"""``GET /metrics``: the Prometheus text exposition of
:func:`dbfleet.observe.metrics.build_registry`, built at scrape time from
the catalog, the schedule, the repositories (cached) and the health
monitor's newest samples -- the same output as ``dbfleet metrics``.

An explicit route, not a mounted ASGI app: a mount at ``/metrics`` answers
``/metrics`` with a 307 redirect to ``/metrics/``, which some scrapers do
not follow. A viewer token is required unless ``http.metrics_public`` is
true (Prometheus sends one with ``authorization: {credentials: TOKEN}``).
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from dbfleet.observe.metrics import build_registry, render
from dbfleet.operations.common import Repositories
from dbfleet.web.auth import Credentials, authenticate, web_state
from dbfleet.web.models import Problem
from dbfleet.web.state import WebState

router = APIRouter(tags=["metrics"])
State = Annotated[WebState, Depends(web_state)]
_lock = threading.Lock()
"""One scrape at a time: the collector's repository cache is shared."""


def registry_of(request: Request, state: WebState) -> CollectorRegistry:
    """The app's registry, built on the first scrape (call under ``_lock``)."""
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        health = state.health
        registry = build_registry(
            state.inventory,
            state.scheduling,
            state.catalog_path,
            health=health.latest if health is not None else None,
            repositories=Repositories(state.inventory),
            clock=state.clock,
        )
        request.app.state.metrics_registry = registry
    return registry


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics (text format 0.0.4)",
    responses={
        200: {"content": {"text/plain": {}}, "description": "the exposition"},
        401: {"model": Problem, "description": "no token, or an unknown one"},
    },
)
def metrics(request: Request, state: State, credentials: Credentials) -> Response:
    if not state.http.metrics_public:
        authenticate(state, credentials)
    with _lock:
        body = render(registry_of(request, state))
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
