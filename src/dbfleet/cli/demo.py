"""demo."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from dbfleet import output
from dbfleet.errors import EXIT_INTEGRITY
from dbfleet.operations.demo import run_demo


def demo(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="Where to put the demo (default: a new temporary directory).",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="JSON summary on stdout.")] = False,
) -> None:
    """Run the whole loop on a sample SQLite database: no server, no config.

    Creates a database, an inventory and an encrypted repository, backs up
    twice (showing deduplication), restores, verifies fingerprints and checks
    every byte of the repository.
    """
    target = directory or Path(tempfile.mkdtemp(prefix="dbfleet-demo-"))
    result = run_demo(target, say=(lambda _m: None) if json_output else output.stdout.print)
    if json_output:
        output.emit_json(result)
    if not result["ok"]:
        raise typer.Exit(EXIT_INTEGRITY)


def register(app: typer.Typer) -> None:
    app.command()(demo)
