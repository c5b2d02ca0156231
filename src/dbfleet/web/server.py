"""uvicorn in a thread of its own, with its own event loop.

The socket is bound in the calling thread before anything else starts, so
an address in use is one clear error before serve begins its work. uvicorn
installs signal handlers only in the main thread; it runs in another, so
the process's own handling stays in charge (``dbfleet serve``: the
scheduler's SIGTERM/SIGINT handling; ``dbfleet web``: its wait loop), and
:meth:`HttpServer.stop` ends it: open requests get ``GRACE`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

import uvicorn
from fastapi import FastAPI

from dbfleet.errors import OperationError, UsageError
from dbfleet.web.config import parse_listen

log = logging.getLogger("dbfleet.web")
GRACE = 5


def bind(listen: str) -> socket.socket:
    """A listening TCP socket on ``HOST:PORT`` (port 0: a free one)."""
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OperationError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


class HttpServer:
    """``start()`` serves ``app`` on ``listen`` from a daemon thread;
    ``stop()`` asks uvicorn to exit and waits for it."""

    def __init__(self, app: FastAPI, listen: str) -> None:
        self.socket = bind(listen)
        config = uvicorn.Config(
            app,
            log_config=None,  # dbfleet's logging format; uvicorn's loggers propagate to it
            access_log=True,
            lifespan="off",
            timeout_graceful_shutdown=GRACE,
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="dbfleet-http", daemon=True)
        self.failed: BaseException | None = None

    @property
    def address(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.socket]))
        except BaseException as exc:  # noqa: BLE001 - reported by stop() and the log
            self.failed = exc
            log.error("HTTP server stopped: %s: %s", type(exc).__name__, exc)

    def start(self) -> None:
        self._thread.start()
        log.info("serving HTTP on http://%s (OpenAPI at /openapi.json)", self.address)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=GRACE + 5)
        self.socket.close()
