"""config check."""

from __future__ import annotations

from typing import Annotated

import typer

from dbfleet import output
from dbfleet.cli.context import state
from dbfleet.config import Inventory, config_path
from dbfleet.engines.names import is_database
from dbfleet.errors import ConfigError, DbfleetError, redact

app = typer.Typer(help="Inspect the inventory file.", no_args_is_help=True)


def engine_problems(inventory: Inventory) -> list[str]:
    """What each database's engine refuses in its entry (URL syntax, unknown
    options, a scratch name it cannot use): the model checks the shape of the
    file, the engines know their own locations."""
    from dbfleet.engines.registry import engine_for

    problems = []
    for name, db in inventory.databases.items():
        if not is_database(db.engine):
            continue  # a connection pool: its sampler checks its url when sampling
        try:
            engine = engine_for(db)
            if db.scratch and db.scratch not in inventory.databases:
                engine.target(db.scratch)
        except DbfleetError as exc:
            problems.append(f"databases.{name}: {exc}")
    return problems


@app.command()
def check(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """Validate the inventory; print every problem with its path (exit 2)."""
    path = config_path(state(ctx).config)
    try:
        inventory = state(ctx).inventory()
        problems = engine_problems(inventory)
        if problems:
            raise ConfigError(f"{path} is invalid:", problems)
    except ConfigError as exc:
        listed = [redact(p) for p in exc.problems] or [str(exc)]
        if json_output:
            output.emit_json({"ok": False, "file": str(path), "problems": listed})
        elif len(listed) > 1:
            output.stdout.print(f"{path}: {len(listed)} problems")
            for problem in listed:
                output.stdout.print(f"  {problem}")
        raise
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
