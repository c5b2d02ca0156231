"""Benchmark dbfleet's PostgreSQL backup against the anchors, in one run.

Measures wall time and peak memory of

- ``pg_dump > /dev/null`` (plain, custom, custom uncompressed): the physical limit;
- ``pg_dump | gzip -6 | gpg --symmetric``: what teams do today;
- ``pg_dump | restic backup --stdin``: Debian's restic (``--stdin-from-command``
  when the restic found is 0.17 or newer);
- ``dbfleet backup``;

then updates 1 % of the rows of every table and measures the bytes that a
second backup adds to the restic and the dbfleet repository. Prints a table,
checks the issue's targets and writes ``bench/results/pg_backup-<timestamp>.json``.

See bench/README.md for how to run it and how to read the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generate_pg  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
DBFLEET_DB_NAME = "bench-pg"
PASSPHRASE = "dbfleet-bench-passphrase"
TIME_BIN = "/usr/bin/time"
MiB = 1024 * 1024

# Targets from the issue.
TARGET_VS_PG_DUMP = 1.15
TARGET_VS_GZIP_GPG = 3.0

# Used when /usr/bin/time is missing: a fresh interpreter runs the command and
# writes "<elapsed s> <max RSS KiB>" like `time -f '%e %M'`; RUSAGE_CHILDREN
# covers the command and its descendants, not the wrapper itself.
RUSAGE_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "e = time.perf_counter() - t\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open(sys.argv[1], 'w').write(f'{e:.2f} {r.ru_maxrss}\\n')\n"
    "sys.exit(rc if rc >= 0 else 128 - rc)\n"
)


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Stage:
    argv: list[str]
    returncode: int
    wall_s: float
    max_rss_kib: int


@dataclass
class Run:
    wall_s: float
    stages: list[Stage]
    stdout: str = ""
    stderr_paths: list[Path] = field(default_factory=list)

    @property
    def peak_rss_kib(self) -> int:
        """The largest process of the pipeline (its descendants included)."""
        return max(s.max_rss_kib for s in self.stages)

    @property
    def sum_rss_kib(self) -> int:
        """Sum of the per-process peaks: an upper bound for the pipeline at any instant."""
        return sum(s.max_rss_kib for s in self.stages)


class CommandFailed(RuntimeError):
    pass


def _time_prefix(time_file: Path) -> list[str]:
    if os.access(TIME_BIN, os.X_OK):
        return [TIME_BIN, "-f", "%e %M", "-o", str(time_file)]
    return [sys.executable, "-c", RUSAGE_WRAPPER, str(time_file)]


def _read_time_file(path: Path) -> tuple[float, int]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    # GNU time puts "Command exited with non-zero status N" before the figures.
    elapsed, rss = lines[-1].split()
    return float(elapsed), int(rss)


def run_pipeline(
    commands: Sequence[Sequence[str]],
    env: dict[str, str],
    logs: Path,
    label: str,
    output: Path | None = None,
    capture: bool = False,
    check: bool = True,
) -> Run:
    """Run ``commands`` as a pipeline, each process under its own ``time``.

    The last process writes to ``output`` (default /dev/null) or, with
    ``capture``, to a file whose text is returned in ``Run.stdout``.
    With ``check``, raises CommandFailed when any process exits non-zero.
    """
    logs.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
    time_files = [logs / f"{slug}.{i}.time" for i in range(len(commands))]
    stderr_paths = [logs / f"{slug}.{i}.stderr" for i in range(len(commands))]
    stdout_path = logs / f"{slug}.stdout"
    opened: list[IO[bytes]] = []
    procs: list[subprocess.Popen[bytes]] = []
    previous: IO[bytes] | None = None
    started = time.perf_counter()
    try:
        for i, argv in enumerate(commands):
            last = i == len(commands) - 1
            stdout: int | IO[bytes]
            if not last:
                stdout = subprocess.PIPE
            elif capture:
                stdout = open(stdout_path, "wb")  # noqa: SIM115
                opened.append(stdout)
            elif output is not None:
                stdout = open(output, "wb")  # noqa: SIM115
                opened.append(stdout)
            else:
                stdout = subprocess.DEVNULL
            stderr = open(stderr_paths[i], "wb")  # noqa: SIM115
            opened.append(stderr)
            proc = subprocess.Popen(
                [*_time_prefix(time_files[i]), *argv],
                stdin=previous if previous is not None else subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=env,
            )
            if previous is not None:
                previous.close()  # the next process holds it now
            previous = proc.stdout
            procs.append(proc)
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - started
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in opened:
            f.close()
    stages = []
    for argv, code, tf in zip(commands, codes, time_files, strict=True):
        try:
            elapsed, rss = _read_time_file(tf)
        except (OSError, ValueError):
            elapsed, rss = 0.0, 0
        stages.append(Stage(argv=list(argv), returncode=code, wall_s=elapsed, max_rss_kib=rss))
    text = stdout_path.read_text(errors="replace") if capture else ""
    run = Run(wall_s=wall, stages=stages, stdout=text, stderr_paths=stderr_paths)
    if check:
        raise_for_status(run, label)
    return run


def raise_for_status(run: Run, label: str) -> None:
    failed = [
        (s, p) for s, p in zip(run.stages, run.stderr_paths, strict=True) if s.returncode != 0
    ]
    if failed:
        details = "; ".join(
            f"{shlex.join(s.argv[:3])}... exited {s.returncode}: {_tail(p)}" for s, p in failed
        )
        raise CommandFailed(f"{label}: {details}")


def _tail(path: Path, chars: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return ""


def tree_bytes(path: Path) -> int:
    """Apparent size of all files below ``path`` (like ``du -sb`` without directories)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def version_of(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


# --- results ------------------------------------------------------------------------------


@dataclass
class Measurement:
    key: str
    tool: str
    command: str
    wall_s: float | None = None
    peak_rss_mib: float | None = None
    sum_rss_mib: float | None = None
    stored_bytes: int | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    skipped: str | None = None


@dataclass
class SecondBackup:
    key: str
    tool: str
    wall_s: float | None = None
    peak_rss_mib: float | None = None
    added_repo_bytes: int | None = None
    """Growth of the repository directory."""
    added_reported_bytes: int | None = None
    """What the tool itself reports (restic 0.14: data_added, before compression)."""
    repo_bytes_after: int | None = None
    error: str | None = None
    skipped: str | None = None


def summarise(m: Measurement, runs: list[Run]) -> None:
    m.wall_s = statistics.median(r.wall_s for r in runs)
    m.peak_rss_mib = max(r.peak_rss_kib for r in runs) / 1024
    m.sum_rss_mib = max(r.sum_rss_kib for r in runs) / 1024
    m.runs = [{"wall_s": r.wall_s, "stages": [asdict(s) for s in r.stages]} for r in runs]


# --- the tools ----------------------------------------------------------------------------


@dataclass
class Context:
    workdir: Path
    logs: Path
    env: dict[str, str]
    bench_url: str
    """libpq URL of dbfleet_bench, without a password."""
    pg_dump: str
    restic: str
    dbfleet: list[str]
    repeat: int
    restic_stdin_from_command: bool = False

    def pg_dump_argv(self, *options: str) -> list[str]:
        return [self.pg_dump, *options, "--dbname", self.bench_url]


def measure_simple(
    ctx: Context, key: str, tool: str, commands: list[list[str]], output: Path | None = None
) -> Measurement:
    m = Measurement(key=key, tool=tool, command=" | ".join(shlex.join(c) for c in commands))
    runs = []
    try:
        for i in range(ctx.repeat):
            if output is not None:
                output.unlink(missing_ok=True)
            os.sync()
            runs.append(run_pipeline(commands, ctx.env, ctx.logs, f"{key}-{i}", output=output))
            if output is not None:
                m.stored_bytes = output.stat().st_size
    except CommandFailed as exc:
        m.error = str(exc)
        return m
    finally:
        if output is not None:
            output.unlink(missing_ok=True)
    summarise(m, runs)
    return m


def warm_up(ctx: Context) -> int:
    """One untimed plain dump: fills the page cache, returns the plain dump's size."""
    proc = subprocess.Popen(
        ctx.pg_dump_argv("--format=plain"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ctx.env,
    )
    assert proc.stdout is not None
    total = 0
    while chunk := proc.stdout.read(MiB):
        total += len(chunk)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise CommandFailed(f"pg_dump failed: {err.decode(errors='replace')[-600:]}")
    return total


# restic


def restic_has_stdin_from_command(restic: str) -> bool:
    """restic 0.17 and newer run the dump command themselves."""
    try:
        help_text = subprocess.run(
            [restic, "backup", "--help"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return False
    return "--stdin-from-command" in help_text


def restic_argv(ctx: Context, repo: Path, *args: str) -> list[str]:
    return [ctx.restic, "-r", str(repo), "--cache-dir", str(ctx.workdir / "restic-cache"), *args]


def restic_init(ctx: Context, repo: Path) -> None:
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(ctx.workdir / "restic-cache", ignore_errors=True)
    # Format 2 (compression) is the default from 0.14 on; say so explicitly.
    argv = restic_argv(ctx, repo, "init", "--repository-version", "2")
    subprocess.run(argv, env=ctx.env, check=True, capture_output=True)


def restic_backup_commands(ctx: Context, repo: Path) -> list[list[str]]:
    common = ["backup", "--json", "--host", "dbfleet-bench", "--stdin-filename", "dump.sql"]
    if ctx.restic_stdin_from_command:
        return [
            restic_argv(
                ctx,
                repo,
                *common,
                "--stdin-from-command",
                "--",
                *ctx.pg_dump_argv("--format=plain"),
            )
        ]
    return [ctx.pg_dump_argv("--format=plain"), restic_argv(ctx, repo, *common, "--stdin")]


def restic_summary(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and doc.get("message_type") == "summary":
            return doc
    raise CommandFailed("restic printed no JSON summary")


def restic_backup(ctx: Context, repo: Path, label: str) -> tuple[Run, dict[str, Any]]:
    os.sync()
    run = run_pipeline(restic_backup_commands(ctx, repo), ctx.env, ctx.logs, label, capture=True)
    return run, restic_summary(run.stdout)


# dbfleet


def dbfleet_config(ctx: Context) -> Path:
    return ctx.workdir / "dbfleet.yaml"


def write_dbfleet_inventory(ctx: Context, repo: Path) -> Path:
    path = dbfleet_config(ctx)
    path.write_text(
        "# generated by bench/run_pg_backup.py\n"
        "version: 1\n"
        "repositories:\n"
        "  bench:\n"
        f"    url: {repo.resolve().as_uri()}\n"
        "    passphrase_env: DBFLEET_PASSPHRASE\n"
        "databases:\n"
        f"  {DBFLEET_DB_NAME}:\n"
        "    engine: postgresql\n"
        f"    url: {json.dumps(ctx.bench_url)}\n"
        "    password_env: PGPASSWORD\n"
        "    repository: bench\n"
    )
    return path


def dbfleet_init(ctx: Context, repo: Path) -> None:
    shutil.rmtree(repo, ignore_errors=True)
    config = write_dbfleet_inventory(ctx, repo)
    proc = subprocess.run(
        [*ctx.dbfleet, "--config", str(config), "repo", "init"],
        env=ctx.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise CommandFailed(
            f"dbfleet repo init exited {proc.returncode}: {(proc.stderr or proc.stdout)[-600:]}"
        )


def dbfleet_result(stdout: str) -> dict[str, Any]:
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise CommandFailed(f"dbfleet backup --json printed no JSON: {stdout[-300:]!r}") from exc
    items = doc if isinstance(doc, list) else [doc]
    for item in items:
        if isinstance(item, dict) and item.get("database") == DBFLEET_DB_NAME:
            if not item.get("ok"):
                raise CommandFailed(f"dbfleet backup failed: {item.get('error')}")
            return item
    raise CommandFailed(f"dbfleet backup --json has no entry for {DBFLEET_DB_NAME}: {doc!r}")


def dbfleet_backup(ctx: Context, label: str) -> tuple[Run, dict[str, Any]]:
    os.sync()
    argv = [*ctx.dbfleet, "--config", str(dbfleet_config(ctx)), "backup", DBFLEET_DB_NAME, "--json"]
    run = run_pipeline([argv], ctx.env, ctx.logs, label, capture=True, check=False)
    if not run.stdout.strip():
        raise_for_status(run, label)
        raise CommandFailed(f"{label}: dbfleet backup --json printed nothing")
    report = dbfleet_result(run.stdout)  # raises with dbfleet's own error message
    raise_for_status(run, label)
    return run, report


def dbfleet_available(dbfleet: list[str], env: dict[str, str]) -> str | None:
    """None when ``dbfleet --help`` works, else why not."""
    try:
        proc = subprocess.run(
            [*dbfleet, "--help"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{shlex.join(dbfleet)} --help: {exc}"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return f"{shlex.join(dbfleet)} --help exited {proc.returncode}: " + (
            lines[-1] if lines else ""
        )
    return None


# --- first and second backups -------------------------------------------------------------

BackupFn = Callable[[Context, str], tuple[Run, dict[str, Any]]]
"""Runs one timed backup (label for the log files); returns the run and the tool's report."""


def measure_repository_tool(
    ctx: Context,
    key: str,
    tool: str,
    repo: Path,
    init: Callable[[Context, Path], None],
    backup: BackupFn,
    stored_from: str,
) -> Measurement:
    commands_text = {
        "restic": " | ".join(shlex.join(c) for c in restic_backup_commands(ctx, repo)),
        "dbfleet": shlex.join(
            [
                *ctx.dbfleet,
                "--config",
                str(dbfleet_config(ctx)),
                "backup",
                DBFLEET_DB_NAME,
                "--json",
            ]
        ),
    }[key]
    m = Measurement(key=key, tool=tool, command=commands_text)
    runs = []
    try:
        for i in range(ctx.repeat):
            init(ctx, repo)
            run, report = backup(ctx, f"{key}-first-{i}")
            runs.append(run)
            m.stored_bytes = tree_bytes(repo)
            m.extra = {"report": report, "reported_bytes": report.get(stored_from)}
    except (CommandFailed, subprocess.CalledProcessError) as exc:
        m.error = str(exc) if isinstance(exc, CommandFailed) else _called_error(exc)
        return m
    summarise(m, runs)
    return m


def _called_error(exc: subprocess.CalledProcessError) -> str:
    out = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
    return f"{shlex.join(exc.cmd)} exited {exc.returncode}: {(out or '')[-600:]}"


def second_backup(
    ctx: Context, key: str, tool: str, repo: Path, backup: BackupFn, reported_key: str
) -> SecondBackup:
    s = SecondBackup(key=key, tool=tool)
    before = tree_bytes(repo)
    try:
        run, report = backup(ctx, f"{key}-second")
    except CommandFailed as exc:
        s.error = str(exc)
        return s
    s.wall_s = run.wall_s
    s.peak_rss_mib = run.peak_rss_kib / 1024
    s.repo_bytes_after = tree_bytes(repo)
    s.added_repo_bytes = s.repo_bytes_after - before
    reported = report.get(reported_key)
    s.added_reported_bytes = int(reported) if isinstance(reported, int | float) else None
    return s


# --- output -------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MiB:,.1f} MiB"


def print_report(result: dict[str, Any]) -> None:
    meta = result["database"]
    print()
    print(
        f"database {generate_pg.DB_NAME}: {meta['database_bytes'] / 1e9:.3f} GB "
        f"(pg_database_size), plain dump {meta['plain_dump_bytes'] / 1e6:,.1f} MB, "
        f"{meta['mutations_before']} earlier mutations"
    )
    measurements = [Measurement(**m) for m in result["measurements"]]
    base = next((m for m in measurements if m.key == "pg_dump" and m.wall_s), None)
    header = f"{'tool':<44} {'wall s':>8} {'peak MiB':>9} {'sum MiB':>8} {'x pg_dump':>9}"
    header += f" {'stored':>16}"
    print()
    print(header)
    print("-" * len(header))
    for m in measurements:
        if m.skipped or m.error:
            print(f"{m.tool:<44} {'skipped: ' + m.skipped if m.skipped else 'FAILED'}")
            continue
        ratio = m.wall_s / base.wall_s if base and base.wall_s and m.wall_s else None
        print(
            f"{m.tool:<44} {_fmt(m.wall_s, '8.2f')} {_fmt(m.peak_rss_mib, '9.1f')} "
            f"{_fmt(m.sum_rss_mib, '8.1f')} {_fmt(ratio, '9.2f')} {_mib(m.stored_bytes):>16}"
        )
    errors = [m for m in measurements if m.error]
    for m in errors:
        print(f"  {m.tool}: {m.error}")

    second = [SecondBackup(**s) for s in result["second_backup"]]
    mutation = result.get("mutation") or {}
    print()
    print(
        f"second backup after updating {mutation.get('percent', '?')} % of the rows of each "
        f"table ({mutation.get('mode', '?')}, round {mutation.get('round', '?')}: "
        f"{mutation.get('rows', {})})"
    )
    header = (
        f"{'tool':<44} {'wall s':>8} {'peak MiB':>9} {'added (repo growth)':>22} "
        f"{'added (reported)':>18}"
    )
    print(header)
    print("-" * len(header))
    for s in second:
        if s.skipped or s.error:
            why = "skipped: " + s.skipped if s.skipped else "FAILED: " + (s.error or "")
            print(f"{s.tool:<44} {why}")
            continue
        print(
            f"{s.tool:<44} {_fmt(s.wall_s, '8.2f')} {_fmt(s.peak_rss_mib, '9.1f')} "
            f"{_mib(s.added_repo_bytes):>22} {_mib(s.added_reported_bytes):>18}"
        )
    ratio = result["targets"].get("second_backup_ratio")
    print(f"dbfleet / restic added bytes (repo growth): {_fmt(ratio, '.3f')}")
    print()
    print("targets:")
    for t in result["targets"]["checks"]:
        print(f"  [{t['status']:^4}] {t['name']}: {t['detail']}")
    print()


def check_targets(measurements: list[Measurement], second: list[SecondBackup]) -> dict[str, Any]:
    by_key = {m.key: m for m in measurements}
    sec = {s.key: s for s in second}
    checks: list[dict[str, Any]] = []

    def ok(key: str) -> Measurement | None:
        m = by_key.get(key)
        return m if m and m.wall_s and not m.error and not m.skipped else None

    pg, gz, db = ok("pg_dump"), ok("gzip_gpg"), ok("dbfleet")
    if pg and db and pg.wall_s and db.wall_s:
        r = db.wall_s / pg.wall_s
        checks.append(
            {
                "name": f"dbfleet backup within {TARGET_VS_PG_DUMP}x of pg_dump > /dev/null",
                "status": "PASS" if r <= TARGET_VS_PG_DUMP else "FAIL",
                "value": r,
                "detail": f"{db.wall_s:.2f} s / {pg.wall_s:.2f} s = {r:.2f}x",
            }
        )
    else:
        checks.append(
            {
                "name": "dbfleet within 1.15x of pg_dump",
                "status": "n/a",
                "value": None,
                "detail": "not measured",
            }
        )
    if gz and db and gz.wall_s and db.wall_s:
        r = gz.wall_s / db.wall_s
        checks.append(
            {
                "name": f"dbfleet at least {TARGET_VS_GZIP_GPG:g}x faster than "
                "pg_dump | gzip | gpg",
                "status": "PASS" if r >= TARGET_VS_GZIP_GPG else "FAIL",
                "value": r,
                "detail": f"{gz.wall_s:.2f} s / {db.wall_s:.2f} s = {r:.2f}x",
            }
        )
    else:
        checks.append(
            {
                "name": "dbfleet 3x faster than gzip | gpg",
                "status": "n/a",
                "value": None,
                "detail": "not measured",
            }
        )
    rs, ds = sec.get("restic"), sec.get("dbfleet")
    ratio = None
    if rs and ds and rs.added_repo_bytes is not None and ds.added_repo_bytes is not None:
        ratio = ds.added_repo_bytes / rs.added_repo_bytes if rs.added_repo_bytes else None
        checks.append(
            {
                "name": "second backup after the change stores no more new bytes than restic",
                "status": "PASS" if ds.added_repo_bytes <= rs.added_repo_bytes else "FAIL",
                "value": ratio,
                "detail": f"dbfleet {_mib(ds.added_repo_bytes)} vs restic "
                f"{_mib(rs.added_repo_bytes)} (repository growth)",
            }
        )
    else:
        checks.append(
            {
                "name": "second backup no bigger than restic's",
                "status": "n/a",
                "value": None,
                "detail": "not measured",
            }
        )
    return {"checks": checks, "second_backup_ratio": ratio}


# --- main ---------------------------------------------------------------------------------

TOOLS = ("pg_dump", "pg_dump_fc", "pg_dump_fc_z0", "gzip_gpg", "restic", "dbfleet")


def bench_url_without_password(url: str) -> tuple[str, str | None]:
    """The dbfleet_bench URL with any password removed, and that password."""
    parts = urlsplit(generate_pg.with_database(url, generate_pg.DB_NAME))
    password = parts.password
    netloc = parts.netloc.rsplit("@", 1)
    if len(netloc) == 2:
        user = netloc[0].split(":", 1)[0]
        host = f"{user}@{netloc[1]}"
    else:
        host = netloc[0]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), password


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Compare dbfleet's PostgreSQL backup with pg_dump, gzip|gpg and restic.",
    )
    p.add_argument(
        "--url",
        help="server URL; default $DBFLEET_BENCH_PG_URL or "
        f"{generate_pg.DEFAULT_URL} (password from $PGPASSWORD)",
    )
    p.add_argument(
        "--size-gb",
        type=float,
        default=1.0,
        help="database size to generate (default 1.0; 0.05 for a quick check)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="reuse dbfleet_bench when it exists with this --size-gb "
        "(a previously mutated database gets the next mutation round)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/dbfleet-bench"),
        help="repositories, logs, inventory (default /tmp/dbfleet-bench)",
    )
    p.add_argument(
        "--mutate-percent",
        type=float,
        default=1.0,
        help="rows of each table changed before the second backup (default 1)",
    )
    p.add_argument(
        "--mutate-mode",
        choices=("spread", "recent"),
        default="spread",
        help="spread: rows all over each table (default); recent: the newest ids",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per first-backup measurement; the median wall time is reported",
    )
    p.add_argument(
        "--skip", action="append", default=[], choices=TOOLS, help="leave a tool out (repeatable)"
    )
    p.add_argument("--dbfleet", default="dbfleet", help="dbfleet command (default: dbfleet)")
    p.add_argument("--restic", default=shutil.which("restic") or "/usr/bin/restic")
    p.add_argument("--pg-dump", default=shutil.which("pg_dump") or "pg_dump")
    p.add_argument(
        "--output",
        type=Path,
        help="results JSON (default bench/results/pg_backup-<timestamp>.json)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = generate_pg.server_url(args.url)
    generate_pg.ensure_password_env()
    bench_url, url_password = bench_url_without_password(url)
    env = dict(os.environ)
    if url_password and "PGPASSWORD" not in env:
        env["PGPASSWORD"] = url_password
        os.environ["PGPASSWORD"] = url_password
    env.setdefault("RESTIC_PASSWORD", PASSPHRASE)
    env.setdefault("DBFLEET_PASSPHRASE", PASSPHRASE)
    env["LC_ALL"] = "C"

    workdir: Path = args.workdir.resolve()
    logs = workdir / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    logs.mkdir()
    stamp = time.strftime("%Y%m%dT%H%M%S")

    # 1. the database
    existing = generate_pg.existing_database(url)
    if args.keep and existing is not None and existing.size_gb == args.size_gb:
        print(
            f"reusing {generate_pg.DB_NAME} ({existing.database_bytes / 1e9:.3f} GB, "
            f"{existing.mutations} earlier mutations)"
        )
        generated: dict[str, Any] | None = None
        mutations_before = existing.mutations
        if mutations_before:
            print(
                "  note: it was mutated before, so the second backup's added bytes differ "
                "from a fresh database's (run without --keep for those)"
            )
    else:
        g = generate_pg.generate(url, args.size_gb)
        generated = {"plan": asdict(g.plan), "seconds": g.seconds}
        mutations_before = 0

    stdin_from_command = restic_has_stdin_from_command(args.restic)
    ctx = Context(
        workdir=workdir,
        logs=logs,
        env=env,
        bench_url=bench_url,
        pg_dump=args.pg_dump,
        restic=args.restic,
        dbfleet=shlex.split(args.dbfleet),
        repeat=max(1, args.repeat),
        restic_stdin_from_command=stdin_from_command,
    )
    skip = set(args.skip)
    dbfleet_missing = None if "dbfleet" in skip else dbfleet_available(ctx.dbfleet, env)
    if dbfleet_missing:
        print(f"dbfleet is not usable, its rows are skipped: {dbfleet_missing}")

    database_bytes = generate_pg.database_size(url)
    print("warming up (one untimed plain pg_dump)")
    plain_dump_bytes = warm_up(ctx)

    # 2. first backups
    gpg_home = workdir / "gnupg"
    gpg_home.mkdir(mode=0o700, exist_ok=True)
    passphrase_file = workdir / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    passphrase_file.chmod(0o600)
    restic_repo = workdir / "restic-repo"
    dbfleet_repo = workdir / "dbfleet-repo"

    plan: list[tuple[str, str]] = [
        ("pg_dump", "pg_dump -Fp > /dev/null"),
        ("pg_dump_fc", "pg_dump -Fc > /dev/null"),
        ("pg_dump_fc_z0", "pg_dump -Fc -Z0 > /dev/null"),
        ("gzip_gpg", "pg_dump | gzip -6 | gpg -c > file"),
        (
            "restic",
            "pg_dump | restic backup --stdin"
            if not stdin_from_command
            else "restic backup --stdin-from-command",
        ),
        ("dbfleet", "dbfleet backup"),
    ]
    measurements: list[Measurement] = []
    for key, tool in plan:
        if key in skip:
            measurements.append(Measurement(key=key, tool=tool, command="", skipped="--skip"))
            continue
        print(f"measuring {tool} ...", flush=True)
        if key == "pg_dump":
            m = measure_simple(ctx, key, tool, [ctx.pg_dump_argv("--format=plain")])
        elif key == "pg_dump_fc":
            m = measure_simple(ctx, key, tool, [ctx.pg_dump_argv("--format=custom")])
        elif key == "pg_dump_fc_z0":
            m = measure_simple(
                ctx, key, tool, [ctx.pg_dump_argv("--format=custom", "--compress=0")]
            )
        elif key == "gzip_gpg":
            gpg = [
                "gpg",
                "--homedir",
                str(gpg_home),
                "--batch",
                "--yes",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase-file",
                str(passphrase_file),
                "--symmetric",
                "--cipher-algo",
                "AES256",
                "--compress-algo",
                "none",
                "--output",
                "-",
            ]
            m = measure_simple(
                ctx,
                key,
                tool,
                [ctx.pg_dump_argv("--format=plain"), ["gzip", "-6"], gpg],
                output=workdir / "dump.sql.gz.gpg",
            )
        elif key == "restic":
            m = measure_repository_tool(
                ctx,
                key,
                tool,
                restic_repo,
                restic_init,
                lambda c, label: restic_backup(c, restic_repo, label),
                "data_added",
            )
        else:
            if dbfleet_missing:
                m = Measurement(key=key, tool=tool, command="", skipped=dbfleet_missing)
            else:
                m = measure_repository_tool(
                    ctx, key, tool, dbfleet_repo, dbfleet_init, dbfleet_backup, "added_bytes"
                )
        if m.error:
            print(f"  FAILED: {m.error}")
        elif m.wall_s is not None:
            print(f"  {m.wall_s:.2f} s, peak {m.peak_rss_mib:.1f} MiB")
        measurements.append(m)

    # gpg started an agent for this home directory; do not leave it running.
    subprocess.run(
        ["gpgconf", "--homedir", str(gpg_home), "--kill", "gpg-agent"],
        capture_output=True,
        check=False,
    )

    # 3. change 1 % and back up again
    first_ok = {m.key for m in measurements if m.wall_s is not None and not m.error}
    mutation: dict[str, Any] | None = None
    second: list[SecondBackup] = []
    if first_ok & {"restic", "dbfleet"}:
        print(f"updating {args.mutate_percent:g} % of the rows of each table ({args.mutate_mode})")
        mutation = asdict(generate_pg.mutate(url, args.mutate_percent, args.mutate_mode))
        for key, tool, repo, backup, reported in (
            (
                "restic",
                "restic, second backup",
                restic_repo,
                lambda c, label: restic_backup(c, restic_repo, label),
                "data_added",
            ),
            ("dbfleet", "dbfleet, second backup", dbfleet_repo, dbfleet_backup, "added_bytes"),
        ):
            if key not in first_ok:
                why = next(
                    (m.skipped or "first backup failed" for m in measurements if m.key == key),
                    "not run",
                )
                second.append(SecondBackup(key=key, tool=tool, skipped=why))
                continue
            print(f"measuring {tool} ...", flush=True)
            s = second_backup(ctx, key, tool, repo, backup, reported)
            if s.error:
                print(f"  FAILED: {s.error}")
            second.append(s)

    result: dict[str, Any] = {
        "benchmark": "pg_backup",
        "timestamp": stamp,
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": {
            "hostname": platform.node(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {
            "pg_dump": version_of([args.pg_dump, "--version"]),
            "restic": version_of([args.restic, "version"]),
            "gzip": version_of(["gzip", "--version"]),
            "gpg": version_of(["gpg", "--version"]),
            "dbfleet": version_of([*ctx.dbfleet, "--version"])
            if not dbfleet_missing
            else "unavailable",
            "time": "GNU time" if os.access(TIME_BIN, os.X_OK) else "getrusage wrapper",
        },
        "memory_note": "peak = max RSS of the largest process of the command (a process's "
        "figure includes its waited-for children); sum = sum of the per-process peaks",
        "database": {
            "url": bench_url,
            "size_gb_target": args.size_gb,
            "database_bytes": database_bytes,
            "plain_dump_bytes": plain_dump_bytes,
            "mutations_before": mutations_before,
            "generated": generated,
        },
        "measurements": [asdict(m) for m in measurements],
        "mutation": mutation,
        "second_backup": [asdict(s) for s in second],
    }
    result["targets"] = check_targets(measurements, second)
    print_report(result)

    out = args.output or RESULTS_DIR / f"pg_backup-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
