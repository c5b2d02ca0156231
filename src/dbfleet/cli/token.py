"""token add/list/remove: the API tokens of ``dbfleet serve --http`` and ``dbfleet web``."""

from __future__ import annotations

from typing import Annotated

import typer

from dbfleet import output
from dbfleet.cli.context import state
from dbfleet.config import config_path
from dbfleet.web.config import tokens_path
from dbfleet.web.tokens import ROLES, TokenStore

app = typer.Typer(
    help="API tokens for the HTTP API (`dbfleet serve --http`, `dbfleet web`). Clients "
    "send one as `Authorization: Bearer TOKEN`. Roles: viewer (read), operator (read, "
    "start backups and drills), admin (everything). The tokens file (`http.tokens_file`, "
    "default <inventory>.tokens.yaml) holds only SHA-256 hashes; a running server "
    "picks up changes on the next request.",
    no_args_is_help=True,
)


def _store(ctx: typer.Context) -> TokenStore:
    st = state(ctx)
    inventory = st.inventory()
    source = inventory.source or config_path(st.config)
    return TokenStore(tokens_path(inventory.http, source.resolve()))


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who uses it (recorded as api:NAME on its jobs).")],
    role: Annotated[
        str, typer.Option("--role", metavar="ROLE", help="viewer, operator or admin.")
    ] = "viewer",
) -> None:
    """Create a token and print it once, on stdout (only its hash is stored:
    it cannot be shown again; remove it and add a new one if it is lost)."""
    store = _store(ctx)
    token = store.add(name, role)
    print(token)
    output.say(f"token {name!r} ({role}) stored in {store.path}; it is shown only this once")


@app.command("list")
def list_(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """The tokens' names, roles and creation times (never the tokens or hashes)."""
    rows = [t.public() for t in _store(ctx).tokens()]
    if json_output:
        output.emit_json(rows)
        return
    if not rows:
        output.say("no tokens (dbfleet token add NAME --role viewer)")
        return
    output.table(
        ["Name", "Role", "Created"], [(r["name"], r["role"], r["created_at"]) for r in rows]
    )


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token's name.")],
) -> None:
    """Revoke a token: the next request that sends it gets 401."""
    store = _store(ctx)
    store.remove(name)
    output.say(f"token {name!r} removed from {store.path}")


__all__ = ["ROLES", "app"]
