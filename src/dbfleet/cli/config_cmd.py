"""config check."""

from __future__ import annotations

from typing import Annotated

import typer

from dbfleet import output
from dbfleet.cli.context import state

app = typer.Typer(help="Inspect the inventory file.", no_args_is_help=True)


@app.command()
def check(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """Validate the inventory; print every problem with its path (exit 2)."""
    inventory = state(ctx).inventory()
    summary = {
        "ok": True,
        "file": str(inventory.source),
        "repositories": sorted(inventory.repositories),
        "databases": {n: d.engine for n, d in sorted(inventory.databases.items())},
    }
    if json_output:
        output.emit_json(summary)
        return
    output.stdout.print(
        f"{inventory.source}: OK, {len(inventory.repositories)} repositories, "
        f"{len(inventory.databases)} databases"
    )
    for name, db in sorted(inventory.databases.items()):
        output.stdout.print(f"  {name}: {db.engine} -> repository {db.repository}")
