"""The ``dbfleet`` command: a thin layer that parses, calls an operation, renders.

Exit codes: 0 success, 1 an operation failed, 2 bad usage or bad inventory,
3 repository or data integrity problem.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dbfleet import __version__
from dbfleet.cli.context import State, state
from dbfleet.engines.registry import register_commands
from dbfleet.errors import EXIT_USAGE, DbfleetError

HELP = """dbfleet keeps a polyglot database estate recoverable.

It reads one inventory file (--config, $DBFLEET_CONFIG or ./dbfleet.yaml) and
backs databases up into deduplicated, compressed, encrypted repositories,
restores them, and proves that the backups restore.

Exit codes: 0 success, 1 operation failed, 2 bad usage or inventory,
3 repository or data integrity problem.
"""

__all__ = ["State", "app", "run", "state"]

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"dbfleet {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="Inventory file (default: $DBFLEET_CONFIG or ./dbfleet.yaml).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.obj = State(config=config)


def _register() -> None:
    from dbfleet.cli import (
        backup,
        config_cmd,
        copy,
        demo,
        drill,
        repo,
        retention,
        serve,
    )

    backup.register(app)
    copy.register(app)
    serve.register(app)
    drill.register(app)
    register_commands(app)  # each engine's own commands (wal-push, binlog-ship, ...)
    retention.register(app)
    demo.register(app)
    app.add_typer(repo.app, name="repo")
    app.add_typer(config_cmd.app, name="config")


_register()


def run(argv: list[str] | None = None) -> None:
    """Entry point: turn every dbfleet error into one line and its exit code."""
    try:
        code = app(args=argv, standalone_mode=False)
    except DbfleetError as exc:
        print(f"dbfleet: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("dbfleet: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:
        # typer's own click: usage errors (bad option values, missing arguments)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"dbfleet: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("dbfleet: interrupted; nothing was recorded for unfinished work", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
