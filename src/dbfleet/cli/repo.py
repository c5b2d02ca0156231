"""repo init | check | unlock | key list|add|remove|passwd."""

from __future__ import annotations

from typing import Annotated

import typer

from dbfleet import output
from dbfleet.cli.context import state
from dbfleet.errors import EXIT_INTEGRITY
from dbfleet.operations import repository as ops
from dbfleet.secrets import prompt_passphrase, secret_from

app = typer.Typer(help="Create, check and administer repositories.", no_args_is_help=True)
key_app = typer.Typer(help="Manage the passphrases that open a repository.", no_args_is_help=True)
app.add_typer(key_app, name="key")

RepoArg = Annotated[
    str | None,
    typer.Argument(
        help="Repository name from the inventory (default: all / the only one).",
        metavar="REPOSITORY",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
NewPassEnv = Annotated[
    str | None,
    typer.Option(
        "--new-passphrase-env",
        metavar="VAR",
        help="Environment variable holding the new passphrase (else a prompt on a terminal).",
    ),
]


@app.command()
def init(ctx: typer.Context, repository: RepoArg = None, json_output: JsonOpt = False) -> None:
    """Create the repository (encrypted; the passphrase comes from the inventory's
    passphrase_env / passphrase_file, $DBFLEET_PASSPHRASE, or a prompt)."""
    inventory = state(ctx).inventory()
    results = [
        ops.init_repository(inventory, n) for n in ops.repository_names(inventory, repository)
    ]
    if json_output:
        output.emit_json(results)
    for r in results if not json_output else []:
        output.stdout.print(
            f"created repository {r['repository']} at {r['url']} (id {r['id'][:8]})"
        )
        output.stderr.print("keep the passphrase safe: without it the backups cannot be read")


@app.command()
def check(
    ctx: typer.Context,
    repository: RepoArg = None,
    read_data: Annotated[
        bool,
        typer.Option("--read-data", help="Also read, decrypt and authenticate every blob."),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Check structure, index and the WAL archive (holes a kept base backup needs are
    errors); with --read-data every byte, WAL included. Exit 3 on errors."""
    st = state(ctx)
    ok = True
    reports = []
    for name in ops.repository_names(st.inventory(), repository):
        with output.byte_progress(output.interactive(json_output), f"check {name}", None) as _:
            report = ops.check(st.repos(), name, read_data=read_data)
        reports.append({"repository": name, **report.as_dict()})
        ok = ok and report.ok
        if not json_output:
            for w in report.warnings:
                output.stderr.print(f"{name}: warning: {w}")
            for n in report.notes:
                output.stderr.print(f"{name}: note: {n}")
            for e in report.errors:
                output.stderr.print(f"{name}: error: {e}")
            status = "no errors" if report.ok else f"{len(report.errors)} errors"
            output.stdout.print(
                f"{name}: {status}; {report.snapshots} snapshots, {report.packs} packs, "
                f"{report.blobs} blobs"
                + (f", {report.wal_files} WAL files" if report.wal_files else "")
                + (f", {output.human_bytes(report.bytes_read)} read" if read_data else "")
            )
    if json_output:
        output.emit_json(reports)
    if not ok:
        raise typer.Exit(EXIT_INTEGRITY)


@app.command()
def unlock(ctx: typer.Context, repository: RepoArg = None) -> None:
    """Remove stale locks and the unfinished writes (temporary files, incomplete
    S3 uploads) of crashed processes, older than an hour. Live locks, and files
    a live process is still writing, are kept."""
    st = state(ctx)
    for name in ops.repository_names(st.inventory(), repository):
        result = ops.unlock(st.repos(), name)
        for failure in result.unfinished.failures:
            output.stderr.print(f"{name}: warning: {failure}")
        in_use = len(result.unfinished.in_use)
        output.stdout.print(
            f"{name}: removed {len(result.locks)} stale locks, "
            f"{len(result.unfinished.removed)} unfinished writes"
            + (f" ({in_use} still being written, kept)" if in_use else "")
        )


def _new_passphrase(env: str | None) -> str:
    value = secret_from(env, None) if env else None
    if env and value is None:
        from dbfleet.errors import UsageError

        raise UsageError(f"${env} is not set or empty")
    return value if value is not None else prompt_passphrase("new passphrase", confirm=True)


@key_app.command("list")
def key_list(ctx: typer.Context, repository: RepoArg = None, json_output: JsonOpt = False) -> None:
    """List the keys (passphrases) of a repository."""
    st = state(ctx)
    rows = []
    for name in ops.repository_names(st.inventory(), repository):
        for k in st.repos().get(name).list_keys():
            rows.append({"repository": name, **k})
    if json_output:
        output.emit_json(rows)
        return
    output.table(
        ["Repository", "Key", "Current", "Role", "Created", "User", "Host"],
        [
            (
                r["repository"],
                str(r["id"])[:8],
                "*" if r["current"] else "",
                r["role"],
                r["created"],
                r["username"],
                r["hostname"],
            )
            for r in rows
        ],
    )


@key_app.command("add")
def key_add(
    ctx: typer.Context,
    repository: RepoArg = None,
    new_passphrase_env: NewPassEnv = None,
    role: Annotated[
        str,
        typer.Option(
            "--role",
            metavar="ROLE",
            help="admin (default) or append: an append-only key backs up and restores "
            "but cannot forget, prune or manage keys (see docs/append-only.md).",
        ),
    ] = "admin",
) -> None:
    """Add a passphrase that also opens the repository."""
    st = state(ctx)
    for name in ops.repository_names(st.inventory(), repository):
        key_id = st.repos().get(name).add_key(_new_passphrase(new_passphrase_env), role=role)
        output.stdout.print(f"{name}: added {role} key {key_id[:8]}")


@key_app.command("remove")
def key_remove(
    ctx: typer.Context,
    key_id: Annotated[
        str, typer.Argument(help="Key id (prefix) from 'repo key list'.", metavar="KEY_ID")
    ],
    repository: Annotated[
        str | None, typer.Option("--repo", help="Repository name.", metavar="NAME")
    ] = None,
) -> None:
    """Remove a key; the key used to open the repository cannot be removed."""
    st = state(ctx)
    names = ops.repository_names(st.inventory(), repository)
    if len(names) != 1:
        from dbfleet.errors import UsageError

        raise UsageError("several repositories: choose one with --repo")
    st.repos().get(names[0]).remove_key(key_id)
    output.stdout.print(f"{names[0]}: removed key {key_id[:8]}")


@key_app.command("passwd")
def key_passwd(
    ctx: typer.Context, repository: RepoArg = None, new_passphrase_env: NewPassEnv = None
) -> None:
    """Change the passphrase used to open the repository (replaces its key)."""
    st = state(ctx)
    for name in ops.repository_names(st.inventory(), repository):
        key_id = st.repos().get(name).change_passphrase(_new_passphrase(new_passphrase_env))
        output.stdout.print(
            f"{name}: passphrase changed (key {key_id[:8]}); update passphrase_env/passphrase_file"
        )
