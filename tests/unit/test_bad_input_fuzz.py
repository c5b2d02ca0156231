"""Fuzz (issue #17, item 9): Hypothesis draws malformed inventories and odd
command lines, and every run must keep the promise of the README: a
documented exit code, one ``dbfleet: error:`` line for an error, no
traceback, no internal error, no secret on the screen, nothing written
outside the directory the user named. In-process (clikit.run_cli), so a few
hundred runs take seconds; ``--hypothesis-profile=deep`` draws 20x more.
Every failing case found is kept as an ``@example``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from clikit import (
    PASSPHRASE,
    PASSPHRASE_ENV,
    SECRET,
    CliResult,
    Estate,
    assert_no_leak,
    environment,
    run_cli,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tests.conftest import generated_examples

from dbfleet.config import load_inventory
from dbfleet.operations.common import Repositories

DOCUMENTED_EXIT_CODES = {0, 1, 2, 3}

SECRET_URLS = [
    f"postgresql://u:{SECRET}@h/db",
    f"redis://:{SECRET}@h:6379/0",
    f"s3://AKIA:{SECRET}@bucket/p",
    f"mysql://root:{SECRET}@db1:3306/app",
]
ODD_TEXT = [
    "", " ", "..", "../x", "a/../../b", "x\ty", "a\nb", "-", "--", "notes", "ghost",
    "99999999999999999999d", "101y", "1e400", "-5s", "0s", "3x", "7d", "90s", "off", "never",
    "* * * * *", "61 * * * *", "@hourly", "every day", "Mars/Olympus", "UTC",
    "file:///tmp/x", "ftp://h/x", "s3://", "memory://fuzz", "not a url", "sqlite:///x.db",
    "bolt://h:7687", "http://h:8123/db", "[/bold]", ":thumbs_up:", "%s%n", "${HOME}", "~",
    "é", "\u202e", "a" * 300, *SECRET_URLS,
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(ODD_TEXT),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
PATHS = [
    "version", "repositories", "databases", "schedule", "serve", "notifications",
    "repositories.local", "repositories.local.url", "repositories.local.passphrase_env",
    "repositories.local.passphrase_file", "repositories.local.retention.keep_within",
    "repositories.local.retention.keep_last", "repositories.local.s3.endpoint",
    "repositories.local.extra", "repositories.other", "repositories.other.url",
    "databases.notes", "databases.notes.engine", "databases.notes.path", "databases.notes.url",
    "databases.notes.repository", "databases.notes.scratch", "databases.notes.tags",
    "databases.notes.options", "databases.notes.options.staging_dir", "databases.notes.rpo",
    "databases.notes.rto", "databases.notes.copy_to", "databases.notes.retention",
    "databases.notes.retention.keep_within", "databases.notes.schedule.backup",
    "databases.notes.schedule.timezone", "databases.notes.all_databases",
    "databases.pg.engine", "databases.pg.url", "databases.pg.password_env",
    "databases.rd.engine", "databases.rd.url", "databases.rd.options.mode",
    "schedule.backup", "schedule.timezone", "serve.concurrency", "serve.job_timeout",
    "serve.alert_repeat", "notifications.0", "notifications.0.type", "notifications.0.url",
]  # fmt: skip


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    root = tmp_path_factory.mktemp("fuzz")
    own = Estate(root / "estate")  # the estate one level down: `root` shows strays
    (root / "cwd").mkdir()
    previous = os.getcwd()
    os.chdir(root / "cwd")  # relative paths land here, never in the test's directory
    try:
        yield own
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def snapshot_ids(estate: Estate) -> list[str]:
    with environment({PASSPHRASE_ENV: PASSPHRASE}):
        repo = Repositories(load_inventory(estate.config)).for_database("notes")
        return [s.id for s in repo.list_snapshots()]


def check(result: CliResult, allowed: set[int] = DOCUMENTED_EXIT_CODES) -> None:
    """The README's promise for any input."""
    assert_no_leak(result)
    assert result.code in allowed, (result.code, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("dbfleet:")]
    if result.code == 2:  # usage: one line and nothing else
        assert result.stderr.strip().splitlines() == errors and len(errors) == 1, result.stderr
    assert len(errors) <= 1, result.stderr
    assert all(e.startswith("dbfleet: error: ") for e in errors), result.stderr
    if result.code == 0:
        assert not errors, result.stderr


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        key: Any = int(part) if isinstance(node, list) and part.isdigit() else part
        if isinstance(node, list):
            if not node or not isinstance(key, int) or key >= len(node):
                return
            node = node[key]
            continue
        if not isinstance(node, dict):
            return
        if not isinstance(node.get(key), dict | list):
            node[key] = {}
        node = node[key]
    if isinstance(node, dict):
        if value is _DELETE:
            node.pop(last, None)
        else:
            node[last] = value


_DELETE = object()
GARBLE = st.none() | st.tuples(st.integers(0, 9999), st.binary(max_size=4))
"""A few raw bytes spliced into the YAML text."""
MUTATIONS = st.lists(
    st.tuples(st.sampled_from(PATHS), st.one_of(st.just(_DELETE), VALUES)), min_size=1, max_size=4
)


def _dump(document: dict[str, Any]) -> str:
    try:
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return yaml.safe_dump({"unrepresentable": True})


SNAP = ["snapshots", "--json"]
SECOND_COMMANDS = st.sampled_from(
    [["config", "check", "--json"], ["serve", "--plan"], ["snapshots", "--json"], ["drills"]]
)


@settings(max_examples=generated_examples(100), deadline=None)
@given(mutations=MUTATIONS, garble=GARBLE, second=SECOND_COMMANDS)
@example(mutations=[("databases.notes.rpo", "9" * 20 + "d")], garble=None, second=SNAP)
@example(mutations=[("databases.notes.rpo", float("inf"))], garble=None, second=SNAP)
@example(mutations=[("repositories.local.retention.keep_within", "9" * 30 + "y")], garble=None,
         second=SNAP)  # fmt: skip
@example(mutations=[("databases.pg.url", SECRET_URLS[0])], garble=None, second=SNAP)
@example(mutations=[("repositories.local.url", SECRET_URLS[2])], garble=None, second=SNAP)
@example(mutations=[("databases.notes.path", SECRET_URLS[0])], garble=None, second=SNAP)
@example(mutations=[("databases", _DELETE)], garble=None, second=SNAP)
@example(mutations=[("databases.notes.path", "[/bold]:thumbs_up:")], garble=None, second=SNAP)
@example(mutations=[("databases.notes", None)], garble=(0, b"\xff\xfe"), second=SNAP)
@example(  # found by the deep profile: config check --json listed the problem unmasked
    mutations=[("databases.notes.retention.keep_within", SECRET_URLS[0])],
    garble=None,
    second=["config", "check", "--json"],
)
def test_inventories(
    estate: Estate,
    tmp_path_factory: pytest.TempPathFactory,
    mutations: list[tuple[str, Any]],
    garble: tuple[int, bytes] | None,
    second: list[str],
) -> None:
    document = estate.document({
        "notes": {"engine": "sqlite", "path": str(estate.database), "rpo": "26h"},
        "pg": {"engine": "postgresql", "url": "postgresql://app@127.0.0.1:9/app"},
        "rd": {"engine": "redis", "url": "redis://127.0.0.1:9/0"},
    })  # fmt: skip
    for path, value in mutations:
        _set(document, path, value)
    data = _dump(document).encode()
    if garble is not None:
        at, junk = garble
        data = data[: at % (len(data) + 1)] + junk + data[at % (len(data) + 1) :]
    config = estate.root.parent / "fuzzed.yaml"
    config.write_bytes(data)
    before = set(estate.root.parent.iterdir())
    check(run_cli("config", "check", config=config))
    check(run_cli(*second, config=config))
    assert set(estate.root.parent.iterdir()) == before


SELECTORS = ["notes:latest", "notes", "zzzz", "7", "ghost:latest", ":", "notes:", "@ID4",
             "@ID12", "notes:@ID8", "notes:latest:x", *SECRET_URLS, ""]  # fmt: skip
NAMES = ["../x", "a/b", "", "x\ty", "fuzz-copy", "/ABS", "notes", *SECRET_URLS]
DESTINATIONS = ["/ABS", "relative.db", "postgresql://u@h/db", "", ".", "/proc/nope/x.db",
                "sqlite://relative2.db", *SECRET_URLS]  # fmt: skip
ODD_ARGS = st.sampled_from(
    ["--clean", "--json", "--globals", "--latest", "--bogus", "-x", "--table", "notes", "nope",
     "--password-env", "NO_SUCH_VAR", "--time", "yesterday", "--lsn", "0/0", "--port", "-1",
     "--keep-last", "-1", "x", "--keep-within", "101y", "--tag", "", "--all", "--snapshot",
     *ODD_TEXT[:30]]
)  # fmt: skip


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    selector, name, destination = (
        st.sampled_from(SELECTORS), st.sampled_from(NAMES), st.sampled_from(DESTINATIONS)
    )  # fmt: skip
    base = draw(
        st.sampled_from(["restore-to", "restore-target", "verify", "snapshots", "forget", "pin",
                         "drill", "drills", "health", "backup", "jobs", "freshness", "check",
                         "plan", "repo-check", "key-list", "copy", "unknown"])
    )  # fmt: skip
    args = {
        "restore-to": lambda: ["restore", draw(selector), "--to", draw(destination)],
        "restore-target": lambda: ["restore", draw(selector), "--target", draw(name)],
        "verify": lambda: ["verify", draw(selector)],
        "snapshots": lambda: ["snapshots", draw(st.sampled_from(["notes", "ghost", "a/b", ""]))],
        "forget": lambda: ["forget", "--dry-run", draw(st.sampled_from(["notes", "ghost"]))],
        "pin": lambda: [draw(st.sampled_from(["pin", "unpin"])), draw(selector)],
        "drill": lambda: ["drill", "notes", "--snapshot", draw(selector)],
        "drills": lambda: ["drills", draw(st.sampled_from(["notes", "ghost"]))],
        "health": lambda: ["health", draw(st.sampled_from(["notes", "ghost", ""]))],
        "backup": lambda: ["backup", draw(st.sampled_from(["notes", "ghost", "--all"]))],
        "jobs": lambda: ["jobs", "--json"],
        "freshness": lambda: ["freshness", "--json"],
        "check": lambda: ["config", "check"],
        "plan": lambda: ["serve", "--plan"],
        "repo-check": lambda: ["repo", "check"],
        "key-list": lambda: ["repo", "key", "list"],
        "copy": lambda: ["copy", "--from", "local", "--to", draw(name)],
        "unknown": lambda: [draw(st.text(max_size=8))],
    }[base]()
    return args + draw(st.lists(ODD_ARGS, max_size=3))


def _concrete(args: list[str], estate: Estate, ids: list[str], n: int) -> list[str]:
    out = []
    for arg in args:
        for size in (12, 8, 4):
            arg = arg.replace(f"@ID{size}", ids[n % len(ids)][:size])
        out.append(arg.replace("/ABS", str(estate.root / f"abs-{n}.db")))
    return out


@settings(max_examples=generated_examples(120), deadline=None)
@given(args=command_lines(), n=st.integers(0, 10**6))
@example(args=["restore", "notes:latest", "--to", SECRET_URLS[0]], n=0)
@example(args=["restore", "notes:latest", "--to", "postgresql://u@h/db"], n=0)
@example(args=["restore", "notes:latest", "--target", "../x"], n=0)
@example(args=["restore", "notes:latest", "--to", "relative.db", "--table", "nope"], n=0)
@example(args=["restore", "notes:latest", "--target", "t", "--table", "notes", "--table", "notes"],
         n=0)  # fmt: skip
@example(args=["forget", "--dry-run", "--keep-within", "99999999999999999y"], n=0)
@example(args=["restore", "notes:latest", "--to", ".", "--clean"], n=0)
@example(args=["restore", "notes:latest", "--to", "/proc/nope/x.db"], n=0)
@example(args=["backup", "--bogus"], n=0)
@example(args=["drill", "notes", "--snapshot", "zzzz"], n=0)
def test_command_lines(estate: Estate, snapshot_ids: list[str], args: list[str], n: int) -> None:
    outside = estate.root.parent
    before = {p for p in outside.iterdir() if p.name != "cwd"}
    check(estate.run(*_concrete(args, estate, snapshot_ids, n)))
    assert {p for p in outside.iterdir() if p.name != "cwd"} == before
