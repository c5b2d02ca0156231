"""Offline mode: ``neo4j-admin database dump/load`` through a pipe.

Neo4j Community has no online backup, and ``neo4j-admin database dump``
needs the database stopped (Community cannot ``STOP DATABASE``: the whole
DBMS must be down). With ``options.mode: offline`` dbfleet runs the
configured ``neo4j-admin`` (``options.neo4j_admin``, else ``neo4j-admin`` on
PATH) with ``NEO4J_HOME`` (``options.neo4j_home``) and ``NEO4J_CONF``
(``options.neo4j_conf``, default ``<home>/conf``) in its environment:

* backup: ``neo4j-admin database dump <db> --to-stdout`` streamed into the
  ``dump`` stream (no temporary copy);
* restore: ``neo4j-admin database load <db> --from-stdin`` (with
  ``--overwrite-destination=true`` under ``clean``) into the target's home.

Both refuse to run while the url's Bolt port accepts connections: neo4j-admin
of 5.26 does not reliably notice a running embedded DBMS, and copying a store
in use gives a corrupt dump. The dump is Neo4j's own format: dbfleet cannot
read it, so offline snapshots have no fingerprint (``verify`` and ``drill``
say so); compare by starting the loaded copy and fingerprinting it online.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, cast

from dbfleet.engines._shared.process import dump_process, find_tool, restore_process, run_tool
from dbfleet.engines.base import StreamSink
from dbfleet.errors import EngineError, UsageError

DUMP_MEDIA_TYPE = "application/x-neo4j-dump"


class AdminTool:
    """One neo4j-admin installation and the (stopped) DBMS home it acts on."""

    def __init__(self, options: dict[str, object], host: str, port: int, where: str) -> None:
        home = options.get("neo4j_home")
        if not home:
            raise UsageError("neo4j mode offline needs options.neo4j_home (the DBMS's NEO4J_HOME)")
        self.home = Path(str(home)).expanduser()
        self.conf = Path(str(options.get("neo4j_conf") or self.home / "conf")).expanduser()
        configured = options.get("neo4j_admin")
        if configured:
            if not os.access(str(configured), os.X_OK):
                raise EngineError(f"options.neo4j_admin {configured} is not an executable")
            self.binary = str(configured)
        else:
            self.binary = find_tool("neo4j-admin", "Neo4j (its bin/ directory)")
        self.host, self.port, self.where = host, port, where
        self.timeout = float(str(options.get("tool_timeout", 3600)))

    def env(self) -> dict[str, str | None]:
        return {"NEO4J_HOME": str(self.home), "NEO4J_CONF": str(self.conf)}

    def require_stopped(self) -> None:
        """``EngineError`` while something answers on the DBMS's Bolt port."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2):
                running = True
        except OSError:
            running = False
        if running:
            raise EngineError(
                f"the Neo4j DBMS at {self.where} is running; offline mode needs it stopped",
                hint="stop it first (Community cannot stop a single database), "
                "or use the default online mode",
            )
        if not self.home.is_dir():
            raise EngineError(f"options.neo4j_home {self.home} is not a directory")

    def version(self) -> str:
        return run_tool([self.binary, "--version"], self.env(), timeout=120).strip()

    def dump(self, database: str, sink: StreamSink) -> object:
        """Stream ``database dump --to-stdout`` into the ``dump`` stream."""
        self.require_stopped()
        argv = [self.binary, "database", "dump", database, "--to-stdout"]
        with dump_process(argv, self.env()) as stdout:
            return sink.write_stream("dump", cast(BinaryIO, stdout), DUMP_MEDIA_TYPE)

    def load(self, database: str, chunks: Iterable[bytes], overwrite: bool) -> None:
        """Feed the dump to ``database load --from-stdin``."""
        self.require_stopped()
        argv = [self.binary, "database", "load", database, "--from-stdin"]
        if overwrite:
            argv.append("--overwrite-destination=true")
        restore_process(argv, chunks, self.env())
