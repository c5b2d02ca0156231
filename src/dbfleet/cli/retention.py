"""forget, prune, pin, unpin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from dbfleet import output
from dbfleet.cli.context import State, state
from dbfleet.cli.recording import Outcome, Recorder
from dbfleet.config import Inventory, RetentionPolicy
from dbfleet.errors import UsageError
from dbfleet.operations.common import Repositories, matches_database
from dbfleet.operations.repository import repository_names
from dbfleet.operations.retention import forget, prune_repository

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
DryRun = Annotated[
    bool, typer.Option("--dry-run", "-n", help="Show what would happen; change nothing.")
]


def _count(name: str, text: str) -> object:
    return typer.Option(f"--{name.replace('_', '-')}", min=0, metavar="N", help=text)


def forget_cmd(
    ctx: typer.Context,
    databases: Annotated[
        list[str] | None,
        typer.Argument(metavar="DATABASE...", help="Only these databases (default: all)."),
    ] = None,
    repository: Annotated[
        str | None, typer.Option("--repo", metavar="NAME", help="Only this repository.")
    ] = None,
    keep_last: Annotated[int, _count("keep_last", "Keep the N newest.")] = 0,
    keep_hourly: Annotated[int, _count("keep_hourly", "Keep the newest of N hours.")] = 0,
    keep_daily: Annotated[int, _count("keep_daily", "Keep the newest of N days.")] = 0,
    keep_weekly: Annotated[int, _count("keep_weekly", "Keep the newest of N ISO weeks.")] = 0,
    keep_monthly: Annotated[int, _count("keep_monthly", "Keep the newest of N months.")] = 0,
    keep_yearly: Annotated[int, _count("keep_yearly", "Keep the newest of N years.")] = 0,
    keep_within: Annotated[
        str | None,
        typer.Option("--keep-within", metavar="DURATION", help="Keep all within e.g. 7d, 36h."),
    ] = None,
    dry_run: DryRun = False,
    then_prune: Annotated[
        bool, typer.Option("--prune", help="Run prune afterwards to free the space.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Remove snapshots that the retention policy lets go, saying why each
    kept one is kept.

    The policy comes from the inventory (`retention:` of the database, else of
    its repository); --keep-* options override it for this run. Pinned
    snapshots are always kept; an empty policy keeps everything. Data is freed
    by `prune`.
    """
    st = state(ctx)
    try:
        override = RetentionPolicy(
            keep_last=keep_last,
            keep_hourly=keep_hourly,
            keep_daily=keep_daily,
            keep_weekly=keep_weekly,
            keep_monthly=keep_monthly,
            keep_yearly=keep_yearly,
            keep_within=keep_within,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "policy"
        raise UsageError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    names = repository_names(st.inventory(), repository)
    _check_forget_names(st.inventory(), st.repos(), names, databases or [])
    single = databases[0] if databases and len(databases) == 1 else None
    with _recorded(st, "forget", single or repository or "all", single, dry_run) as run:
        groups = forget(
            st.repos(), repositories=names, databases=databases, override=override, dry_run=dry_run
        )
        run.details = {"groups": [_group_summary(g) for g in groups]}
    if json_output:
        output.emit_json([g.as_dict() for g in groups])
    else:
        verb = "would remove" if dry_run else "removed"
        for g in groups:
            removed = [d for d in g.decisions if not d.keep]
            kind = f" {g.kind}s" if g.kind != "dump" else ""
            output.stdout.print(
                f"{g.database}{kind} ({g.repository}; {g.policy}): "
                f"keep {len(g.decisions) - len(removed)}, {verb} {len(removed)}"
            )
            if g.wal_removed:
                output.stdout.print(
                    f"  WAL: {verb} {len(g.wal_removed)} files older than the oldest kept "
                    f"base backup ({g.wal_removed[0]} .. {g.wal_removed[-1]})"
                )
            for d in g.decisions:
                when = d.snapshot.finished.isoformat(timespec="seconds")
                why = ", ".join(d.reasons) if d.keep else verb
                output.stdout.print(f"  {d.snapshot.short_id}  {when}  {why}")
    if then_prune and not dry_run:
        for name in names:
            with _recorded(st, "prune", name, None, False) as run:
                stats = prune_repository(st.repos(), name, on_progress=None)
                _fill_prune(run, stats)
            if not json_output:
                output.stdout.print(
                    f"{name}: pruned {stats.packs_deleted + stats.packs_repacked} packs, "
                    f"freed {output.human_bytes(stats.bytes_deleted - stats.bytes_written)}"
                )


@contextmanager
def _recorded(
    st: State, kind: str, target: str, database: str | None, dry_run: bool
) -> Iterator[Outcome]:
    """Record the run in the job catalog, unless it is a dry run (which
    changes nothing, so it is no operation to account for)."""
    if dry_run:
        yield Outcome(target, database)
        return
    with Recorder(st, kind).run(target, database) as run:
        yield run


def _group_summary(g: Any) -> dict[str, Any]:
    """One forget group as serve's worker records it."""
    return {
        "repository": g.repository,
        "database": g.database,
        "policy": g.policy,
        "kept": sum(1 for d in g.decisions if d.keep),
        "removed": [d.snapshot.id for d in g.decisions if not d.keep],
    }


def _fill_prune(run: Outcome, stats: Any) -> None:
    run.bytes = max(stats.bytes_deleted - stats.bytes_written, 0)
    run.details = stats.as_dict()


def _check_forget_names(
    inventory: Inventory, repos: Repositories, repositories: list[str], databases: list[str]
) -> None:
    """A name that is neither an inventory database nor has snapshots (of a
    database since removed from the inventory) is a typo: say so rather than
    forget nothing and succeed."""
    unknown = [n for n in databases if inventory.split_member(n)[0] not in inventory.databases]
    if not unknown:
        return
    present = {s.database for name in repositories for s in repos.get(name).list_snapshots()}
    for name in unknown:
        if not any(matches_database(database, [name]) for database in present):
            known = ", ".join(sorted(inventory.databases))
            raise UsageError(
                f"no database {name!r} in the inventory, and no snapshots of it "
                f"in {', '.join(repositories)}",
                hint=f"defined: {known}",
            )


def prune_cmd(
    ctx: typer.Context,
    repository: Annotated[
        str | None, typer.Argument(metavar="REPOSITORY", help="Repository (default: all).")
    ] = None,
    dry_run: DryRun = False,
    json_output: JsonOpt = False,
) -> None:
    """Delete data that no snapshot references and repack mostly-unused packs.

    Holds an exclusive lock (backups wait). Memory stays bounded: used blob ids
    go to a temporary on-disk table. A prune killed at any point leaves every
    remaining snapshot restorable; run it again to finish.
    """
    st = state(ctx)
    results = []
    for name in repository_names(st.inventory(), repository):
        say = (lambda m: None) if json_output else (lambda m: output.stderr.print(m))
        with _recorded(st, "prune", name, None, dry_run) as run:
            stats = prune_repository(st.repos(), name, dry_run=dry_run, on_progress=say)
            _fill_prune(run, stats)
        results.append({"repository": name, **stats.as_dict()})
        if not json_output:
            verb = "would free" if dry_run else "freed"
            output.stdout.print(
                f"{name}: {stats.snapshots} snapshots use {stats.used_blobs} blobs; "
                f"{stats.packs_total} packs: keep {stats.packs_kept}, delete "
                f"{stats.packs_deleted}, repack {stats.packs_repacked}; {verb} "
                f"{output.human_bytes(stats.bytes_deleted - stats.bytes_written)}"
            )
    if json_output:
        output.emit_json(results)


def pin(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(metavar="SNAPSHOT", help="Snapshot to pin.")],
) -> None:
    """Pin a snapshot: retention never removes it (until unpinned)."""
    repo, snap = state(ctx).repos().locate(snapshot)
    repo.pin(snap.id)
    output.stdout.print(f"pinned snapshot {snap.short_id} of {snap.database}")


def unpin(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(metavar="SNAPSHOT", help="Snapshot to unpin.")],
) -> None:
    """Unpin a snapshot: retention rules apply to it again."""
    repo, snap = state(ctx).repos().locate(snapshot)
    repo.unpin(snap.id)
    output.stdout.print(f"unpinned snapshot {snap.short_id} of {snap.database}")


def register(app: typer.Typer) -> None:
    app.command("forget")(forget_cmd)
    app.command("prune")(prune_cmd)
    app.command()(pin)
    app.command()(unpin)
