"""serve, jobs, freshness."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from dbfleet import output
from dbfleet.catalog import Catalog, exclusive
from dbfleet.cli.context import resolve_catalog, state
from dbfleet.cli.web import http_server, setup_logging
from dbfleet.config import Inventory, RepositoryConfig, config_path
from dbfleet.errors import EXIT_FAILED, UsageError
from dbfleet.freshness import check_freshness
from dbfleet.notify import Notifier, build_channels, check_channels
from dbfleet.observe.health import health_monitor
from dbfleet.schedule.config import Scheduling, format_span
from dbfleet.schedule.core import Job, build_jobs, next_runs
from dbfleet.schedule.inventory import load
from dbfleet.schedule.ondemand import OnDemandService
from dbfleet.schedule.service import Service, offset_clock, system_clock
from dbfleet.secrets import GLOBAL_PASSPHRASE_ENV, GLOBAL_PASSPHRASE_FILE_ENV, secret_from

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
CatalogOpt = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        metavar="FILE",
        help="Job catalog (default: serve.catalog, else <inventory>.catalog.db next to it).",
    ),
]


def _parse_now(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--now: not an ISO 8601 time: {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _unattended_passphrase(repo: RepositoryConfig) -> bool:
    if secret_from(repo.passphrase_env, repo.passphrase_file):
        return True
    global_file = os.environ.get(GLOBAL_PASSPHRASE_FILE_ENV)
    return bool(secret_from(GLOBAL_PASSPHRASE_ENV, Path(global_file) if global_file else None))


def _check_passphrases(inventory: Inventory, scheduling: Scheduling, planned: list[Job]) -> None:
    """serve runs unattended: every repository it uses needs its passphrase
    from the environment or a file, never a prompt."""
    used: set[str] = set()
    for job in planned:
        used.update(
            r.removeprefix("repository:") for r, _ in job.resources if r.startswith("repository:")
        )
    for name, db in inventory.databases.items():
        if scheduling.database(name).rpo is not None and db.repository:
            used.add(db.repository)
    missing = [r for r in sorted(used) if not _unattended_passphrase(inventory.repository(r))]
    if missing:
        raise UsageError(
            f"no passphrase for repository {', '.join(missing)} in the environment or a file",
            hint="serve runs unattended: set passphrase_env/passphrase_file or "
            f"${GLOBAL_PASSPHRASE_ENV}",
        )


def serve(
    ctx: typer.Context,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="One scheduling pass: run what is due now (with retries), check "
            "freshness, exit (1 if a job failed). For external timers and tests.",
        ),
    ] = False,
    plan: Annotated[
        bool, typer.Option("--plan", help="Show each job's next fire times and exit.")
    ] = False,
    count: Annotated[
        int, typer.Option("--count", min=1, max=100, help="With --plan: fire times per job.")
    ] = 3,
    catalog: CatalogOpt = None,
    json_output: JsonOpt = False,
    now: Annotated[
        str | None,
        typer.Option("--now", hidden=True, help="Start the scheduler's clock at this ISO time."),
    ] = None,
    tick: Annotated[
        float, typer.Option("--tick", hidden=True, min=0.05, help="Loop interval, seconds.")
    ] = 1.0,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            metavar="HOST:PORT",
            help="Also serve the HTTP API here (default: http.listen; off when neither "
            "is set). See docs/observability.md.",
        ),
    ] = None,
) -> None:
    """Run the inventory's schedules: backup, verify, drill, forget, copy per
    database (cron, in `schedule.timezone`, UTC by default), prune per
    repository; watch each database's RPO; send notifications.

    Each job runs in its own process, at most `serve.concurrency` at once,
    never two for one database; forget and prune hold their repositories
    exclusively. A failed job is retried `serve.retries` times with
    exponential backoff from `serve.backoff`; a job running longer than
    `serve.job_timeout` is stopped. Every run is recorded in the job catalog
    (`dbfleet jobs`).

    Missed runs: fire times that passed while serve was not running are run
    once per job on start (`serve.missed_runs: run-once`, the default; never
    a burst), or recorded as skipped (`skip`). A run cut short by the last
    shutdown is run once again too.

    SIGTERM/SIGINT: nothing new starts; running jobs are stopped (SIGTERM,
    then SIGKILL after `serve.shutdown_grace`) or, with `serve.shutdown:
    finish`, given that grace to finish; stopped jobs are recorded as aborted
    and never leave a partial snapshot; exit 0. A second signal kills at once.

    HTTP (`--http HOST:PORT` or `http.listen`): the API, health, metrics and
    pages from a thread of this process; POST backup/drill queue jobs that
    run like scheduled ones (trigger api, actor api:<token name>). It stops
    with serve.
    """
    st = state(ctx)
    inventory_path = config_path(st.config).resolve()
    inventory, scheduling = load(inventory_path)
    planned = build_jobs(inventory, scheduling)
    start = _parse_now(now)
    if plan:
        moment = start or datetime.now(UTC)
        upcoming = next_runs(planned, moment, count)
        rows: list[dict[str, Any]] = [
            {
                "job": job.key,
                "cron": job.cron.expression,
                "timezone": job.cron.timezone,
                "explain": job.cron.explain(),
                "next": [t.isoformat() for t in upcoming[job.key]],
                "timeout": format_span(job.timeout),
                "retries": job.retries,
            }
            for job in planned
        ]
        if json_output:
            output.emit_json(rows)
        else:
            output.table(
                ["Job", "Cron", "When", "Next (UTC)", "Timeout", "Retries"],
                [
                    (
                        r["job"],
                        r["cron"],
                        r["explain"],
                        ", ".join(str(t)[:16].replace("T", " ") for t in r["next"]),
                        r["timeout"],
                        r["retries"],
                    )
                    for r in rows
                ],
            )
        return
    channels = build_channels(scheduling.notifications)
    problems = check_channels(channels)
    if problems:
        raise UsageError("notifications: " + "; ".join(problems))
    _check_passphrases(inventory, scheduling, planned)
    path = resolve_catalog(catalog, inventory_path, scheduling)
    listen = http or inventory.http.listen
    if once and http:
        raise UsageError("--http serves HTTP next to a running serve, not with --once")
    if once:
        listen = None
    setup_logging()
    with exclusive(path), Catalog(path) as cat:
        service = (OnDemandService if listen else Service)(
            inventory=inventory,
            scheduling=scheduling,
            config_path=inventory_path,
            catalog=cat,
            notifier=Notifier(channels),
            clock=offset_clock(start) if start else system_clock,
            tick=tick,
            jobs=planned,
        )
        health = health_monitor(inventory, scheduling, path, channels)  # None without health:
        server = None
        if listen:
            assert isinstance(service, OnDemandService)
            server = http_server(
                inventory, scheduling, inventory_path, path, listen,
                submit=service.submit, scheduler=service, health=health,
            )  # fmt: skip
        service.install_signal_handlers()
        try:
            if server is not None:
                server.start()
            if once:
                if health is not None:
                    health.run_round()
                service.run_once()
            else:
                if health is not None:
                    health.start()
                service.run_forever()
        finally:
            if server is not None:
                server.stop()
            if health is not None:
                health.close()
        failed = service.failed_runs
    if once and failed:
        raise typer.Exit(EXIT_FAILED)


def jobs(
    ctx: typer.Context,
    database: Annotated[
        str | None,
        typer.Option("--database", "-d", metavar="NAME", help="Only this database."),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", metavar="KIND", help="backup, verify, drill, forget, copy or prune."
        ),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help="queued, running, ok, failed, timeout, aborted or skipped.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, metavar="N", help="At most N runs.")
    ] = 20,
    catalog: CatalogOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Show the job catalog: what ran, when, how long, result, bytes, error
    (newest first).

    `bytes` is what the run added to the repository (backup, copy), restored
    (verify, drill) or freed (prune).
    """
    if catalog is None:
        inventory_path = config_path(state(ctx).config).resolve()
        _inventory, scheduling = load(inventory_path)
        catalog = resolve_catalog(None, inventory_path, scheduling)
    if not catalog.exists():
        if json_output:
            output.emit_json([])
        else:
            output.say(
                f"no runs recorded yet (no catalog at {catalog}; 'dbfleet serve' creates it)"
            )
        return
    with Catalog(catalog, create=False) as cat:
        runs = cat.runs(database=database, kind=kind, status=status, limit=limit)
    if json_output:
        output.emit_json([r.as_dict() for r in runs])
        return
    output.table(
        [
            "ID",
            "Job",
            "Scheduled",
            "Trigger",
            "Took",
            "Status",
            "Try",
            "Bytes",
            "Snapshot",
            "Error",
        ],
        [
            (
                r.id,
                r.job,
                (r.scheduled_at or "")[:16].replace("T", " "),
                r.trigger,
                f"{r.duration_seconds:.1f}s" if r.duration_seconds is not None else "",
                r.status + (" (will retry)" if r.will_retry else ""),
                r.attempt,
                output.human_bytes(r.bytes) if r.bytes is not None else "",
                (r.snapshot or "")[:8],
                _short(r.error),
            )
            for r in runs
        ],
    )


def _short(text: str | None, width: int = 80) -> str:
    if not text:
        return ""
    line = text.splitlines()[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def freshness(
    ctx: typer.Context,
    databases: Annotated[
        list[str] | None, typer.Argument(metavar="DATABASE...", help="Databases (default: all).")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Age of each database's latest snapshot against its RPO (`rpo:` in the
    inventory), in its repository and in each `copy_to` repository. Exit code
    1 when any is stale (older than its RPO, or never backed up, or a copy
    that fell behind); databases without an RPO are listed but never stale."""
    st = state(ctx)
    inventory, scheduling = load(config_path(st.config))
    for name in databases or []:
        inventory.database(name)
    from dbfleet.operations.common import Repositories

    results = check_freshness(
        inventory, scheduling, Repositories(inventory), databases=databases or None
    )
    if json_output:
        output.emit_json([r.as_dict() for r in results])
    else:
        output.table(
            ["Database", "State", "Latest snapshot", "Age", "RPO", "Repository", "Copies"],
            [
                (
                    r.database,
                    r.state.upper() if r.state in ("stale", "error") else r.state,
                    (
                        f"{(r.latest_snapshot or '')[:8]} "
                        f"{r.latest_time.isoformat(timespec='seconds') if r.latest_time else ''}"
                    ).strip()
                    or (r.error or "none"),
                    r.age,
                    r.rpo,
                    r.repository,
                    ", ".join(
                        f"{repo} {'STALE ' if repo in r.stale_copies else ''}{c['age']}"
                        for repo, c in r.copies.items()
                    ),
                )
                for r in results
            ],
        )
    if any(r.state in ("stale", "error") for r in results):
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(jobs)
    app.command()(freshness)
