"""metrics: the Prometheus exposition on stdout or into a node_exporter textfile."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client import write_to_textfile

from dbfleet.cli.context import resolve_catalog, state
from dbfleet.config import config_path
from dbfleet.errors import OperationError, UsageError
from dbfleet.observe.metrics import build_registry, render


def metrics(
    ctx: typer.Context,
    textfile: Annotated[
        Path | None,
        typer.Option(
            "--textfile",
            metavar="PATH",
            help="Write to PATH atomically (a temporary file renamed over it) instead of "
            "stdout, for node_exporter's textfile collector (PATH must end in .prom).",
        ),
    ] = None,
    catalog: Annotated[
        Path | None,
        typer.Option(
            "--catalog",
            metavar="FILE",
            help="Job catalog (default: serve.catalog, else <inventory>.catalog.db next to it).",
        ),
    ] = None,
    no_repositories: Annotated[
        bool,
        typer.Option(
            "--no-repositories",
            help="Leave out the repository and recovery point metrics (they list every "
            "repository, and need its passphrase).",
        ),
    ] = False,
) -> None:
    """Print dbfleet's Prometheus metrics (text format 0.0.4), the same as
    `dbfleet serve` answers on /metrics, built now from the job catalog,
    the schedule and the repositories (docs/metrics.md lists every metric).

    Database health samples (dbfleet_database_*) come from serve's background
    sampler and are not in this output. For cron users, e.g. every 5 minutes:

        dbfleet metrics --textfile /var/lib/node_exporter/textfile/dbfleet.prom

    A source that cannot be read is reported in the output as
    dbfleet_collector_success{collector=...} 0 (and a warning on stderr),
    not as a failure: exit code 0 whenever the output was written.
    """
    st = state(ctx)
    inventory = st.inventory()
    scheduling = inventory.scheduling()
    path = resolve_catalog(catalog, config_path(st.config).resolve(), scheduling)
    registry = build_registry(
        inventory, scheduling, path, repositories=None if no_repositories else st.repos()
    )
    if textfile is None:
        sys.stdout.buffer.write(render(registry))
        sys.stdout.flush()
        return
    if textfile.suffix != ".prom":
        raise UsageError(f"--textfile {textfile}: node_exporter reads only files ending in .prom")
    try:
        write_to_textfile(str(textfile), registry)
    except OSError as exc:
        raise OperationError(f"cannot write {textfile}: {exc.strerror or exc}") from None


def register(app: typer.Typer) -> None:
    app.command()(metrics)
