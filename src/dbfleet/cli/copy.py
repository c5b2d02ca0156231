"""copy."""

from __future__ import annotations

from typing import Annotated

import typer

from dbfleet import output
from dbfleet.cli.context import state
from dbfleet.cli.recording import Recorder
from dbfleet.operations.copy import copy_snapshots, copy_wal_archives


def copy(
    ctx: typer.Context,
    snapshots: Annotated[
        list[str] | None,
        typer.Argument(metavar="SNAPSHOT...", help="Snapshots to copy (default: all)."),
    ] = None,
    source: Annotated[str, typer.Option("--from", metavar="REPO", help="Source repository.")] = ...,  # type: ignore[assignment]
    destination: Annotated[
        str, typer.Option("--to", metavar="REPO", help="Destination repository.")
    ] = ...,  # type: ignore[assignment]
    database: Annotated[
        list[str] | None,
        typer.Option("--database", metavar="DB", help="Only snapshots of this database."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """Copy snapshots to another repository, uploading only missing chunks.

    For example local to S3 (3-2-1). The databases are not touched again,
    chunks the destination already has are not uploaded, and snapshots copied
    before are skipped. PostgreSQL WAL archives of the databases copied go
    along (files the destination lacks), so PITR works from the copy too."""
    st = state(ctx)
    repos = st.repos()
    single = database[0] if database and len(database) == 1 else None
    with Recorder(st, "copy").run(single or f"{source}->{destination}", single) as run:
        results = copy_snapshots(
            repos,
            source=source,
            destination=destination,
            selectors=snapshots or None,
            databases=database,
        )
        # named snapshots take their databases' WAL along; otherwise the filter's
        wal_databases = sorted({r.database for r in results}) if snapshots else database
        wal = (
            copy_wal_archives(
                repos, source=source, destination=destination, databases=wal_databases
            )
            if wal_databases != []
            else []
        )
        run.bytes = sum(r.added_bytes for r in results) + sum(w.added_bytes for w in wal)
        run.details = {
            "source": source,
            "destination": destination,
            "databases": sorted({r.database for r in results}),
            "copied": sum(1 for r in results if r.copied),
            "already_there": sum(1 for r in results if not r.copied),
            "wal_files_copied": sum(w.copied_files for w in wal),
        }
    if json_output:
        output.emit_json([r.as_dict() for r in results] + [w.as_dict() for w in wal])
        return
    for w in wal:
        output.stdout.print(
            f"{w.database}: WAL {w.copied_files} of {w.wal_files} files copied to "
            f"{w.destination}, {output.human_bytes(w.added_bytes)} uploaded"
        )
    for r in results:
        if r.copied:
            output.stdout.print(
                f"{r.database}: {r.source_snapshot[:8]} -> {r.destination} "
                f"{(r.snapshot or '')[:8]}, {output.human_bytes(r.added_bytes)} uploaded "
                f"of {output.human_bytes(r.size)}"
            )
        else:
            output.stdout.print(f"{r.database}: {r.source_snapshot[:8]} already in {r.destination}")


def register(app: typer.Typer) -> None:
    app.command()(copy)
