"""The ``dbfleet`` command: a thin layer that parses, calls an operation, renders.

Exit codes: 0 success, 1 an operation failed, 2 bad usage or bad inventory,
3 repository or data integrity problem.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer

from dbfleet import __version__
from dbfleet.cli.context import State, state
from dbfleet.engines.registry import register_commands
from dbfleet.errors import EXIT_FAILED, EXIT_USAGE, DbfleetError, one_line, redact

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
        metrics_cmd,
        migrate,
        repo,
        retention,
        serve,
        token,
        web,
    )

    backup.register(app)
    copy.register(app)
    serve.register(app)
    web.register(app)
    drill.register(app)
    metrics_cmd.register(app)
    register_commands(app)  # each engine's own commands (wal-push, binlog-ship, ...)
    retention.register(app)
    demo.register(app)
    migrate.register(app)
    app.add_typer(repo.app, name="repo")
    app.add_typer(config_cmd.app, name="config")
    app.add_typer(token.app, name="token")


_register()


class Terminated(BaseException):
    """SIGTERM or SIGHUP: unwind like Ctrl-C, so that locks are released and
    staging files removed on the way out (``finally`` blocks run)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


def _fail(message: str, code: int) -> NoReturn:
    """The one error line, with any password masked."""
    print(f"dbfleet: error: {one_line(redact(message)) or 'failed'}", file=sys.stderr)
    sys.exit(code)


def _command_path(ctx: Any) -> str:
    names = []
    while ctx is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["dbfleet", *reversed(names[:-1])])


def _usage_line(exc: typer.TyperException) -> str:
    """click's usage error as dbfleet's one line: ``no such option: --foo (see
    dbfleet backup --help)``."""
    format_message = getattr(exc, "format_message", None)
    message = one_line(format_message() if callable(format_message) else str(exc)).rstrip(".")
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        message = message[0].lower() + message[1:]
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see {_command_path(ctx)} --help)"


@functools.cache
def _command() -> Any:
    """The click command tree. typer rebuilds it from the signatures on every
    ``app()`` call (~0.3 s); in-process callers (tests) run many commands."""
    return typer.main.get_command(app)


def run(argv: list[str] | None = None) -> None:
    """Entry point: turn every error into one line and its exit code."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, _terminate)
    try:
        code = _command().main(args=argv, standalone_mode=False, prog_name="dbfleet")
    except DbfleetError as exc:
        _fail(str(exc), exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("dbfleet: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:
        # typer's click: usage errors (unknown option, bad value, missing argument)
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help())  # a group without its command: its help, and what is missing
            _fail(f"missing command (see {_command_path(ctx)} --help)", EXIT_USAGE)
        _fail(_usage_line(exc), int(getattr(exc, "exit_code", EXIT_USAGE)))
    except KeyboardInterrupt:
        print("dbfleet: interrupted; nothing was recorded for unfinished work", file=sys.stderr)
        sys.exit(130)
    except Terminated as exc:
        print(f"dbfleet: stopped by {exc}; nothing was recorded for unfinished work",
              file=sys.stderr)  # fmt: skip
        sys.exit(128 + exc.signum)
    except OSError as exc:
        # an I/O error no operation turned into a message of its own
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}", EXIT_FAILED)
    except Exception as exc:  # noqa: BLE001 - never a traceback for the user
        if os.environ.get("DBFLEET_DEBUG"):
            traceback.print_exc()
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (a bug in dbfleet: please report it; "
            "DBFLEET_DEBUG=1 shows the traceback)",
            EXIT_FAILED,
        )
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    sys.exit(code if isinstance(code, int) else 0)
