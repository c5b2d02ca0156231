"""web: the HTTP API without schedules; and the HTTP wiring ``serve --http`` uses.

How ``web`` and ``serve`` share a catalog: ``serve`` is its only writer of
runs and holds ``<catalog>.lock``; ``web`` takes no lock and only reads it
(SQLite's WAL mode lets readers run beside the writer), so ``web`` can run
next to a ``serve`` (another port, another user, another host on the same
filesystem) or alone. ``web`` runs no jobs: its POST routes answer 503 and
say to use ``dbfleet serve --http``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from dbfleet.catalog import Catalog
from dbfleet.cli.context import resolve_catalog, state
from dbfleet.config import Inventory, config_path
from dbfleet.schedule.config import Scheduling
from dbfleet.schedule.inventory import load
from dbfleet.web.config import DEFAULT_LISTEN, tokens_path
from dbfleet.web.state import HealthSource, SchedulerProbe, Submit, WebState
from dbfleet.web.tokens import TokenStore

if TYPE_CHECKING:
    from dbfleet.web.server import HttpServer

HttpOpt = Annotated[
    str | None,
    typer.Option(
        "--http",
        metavar="HOST:PORT",
        help=f"Serve the HTTP API here (default: http.listen, else {DEFAULT_LISTEN}).",
    ),
]


def setup_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def http_server(
    inventory: Inventory,
    scheduling: Scheduling,
    inventory_path: Path,
    catalog: Path,
    listen: str,
    *,
    submit: Submit | None = None,
    scheduler: SchedulerProbe | None = None,
    health: HealthSource | None = None,
) -> HttpServer:
    """The HTTP server for this process (bound, not started yet)."""
    from dbfleet.web.app import create_app
    from dbfleet.web.server import HttpServer

    web_state = WebState(
        inventory=inventory,
        scheduling=scheduling,
        catalog_path=catalog,
        tokens=TokenStore(tokens_path(inventory.http, inventory_path)),
        http=inventory.http,
        submit=submit,
        scheduler=scheduler,
        health=health,
    )
    return HttpServer(create_app(web_state), listen)


def web(
    ctx: typer.Context,
    http: HttpOpt = None,
    catalog: Annotated[
        Path | None,
        typer.Option(
            "--catalog",
            metavar="FILE",
            help="Job catalog (default: serve.catalog, else <inventory>.catalog.db).",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API (health, metrics, jobs, snapshots, pages) without
    running schedules. It reads the job catalog `dbfleet serve` writes (no
    lock taken: run it beside serve, or alone); it starts no jobs (POST
    backup/drill answer 503: use `dbfleet serve --http` for those). Stops on
    SIGTERM or SIGINT. Tokens: `dbfleet token add`."""
    inventory_path = config_path(state(ctx).config).resolve()
    inventory, scheduling = load(inventory_path)
    path = resolve_catalog(catalog, inventory_path, scheduling)
    Catalog(path).close()  # exists and has the current schema before the first request
    setup_logging()
    server = http_server(
        inventory, scheduling, inventory_path, path, http or inventory.http.listen or DEFAULT_LISTEN
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    server.start()
    try:
        while not stop.wait(0.5):
            if not server.alive():
                raise typer.Exit(1)
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        logging.getLogger("dbfleet.web").info("stopped")


def register(app: typer.Typer) -> None:
    app.command()(web)
