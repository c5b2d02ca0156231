"""Bad input as a new user types it (issue #17, items 8, 9 and 11): each case
gets its documented exit code, one ``dbfleet: error:`` line, no traceback,
no secret on the screen, and nothing written outside what the user named.
Driven in-process through the real entry point (clikit.run_cli)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import blake3
import pytest
import yaml
from clikit import PASSPHRASE, PASSPHRASE_ENV, SECRET, Estate, error_line, run_cli, tables

from dbfleet.config import load_inventory, parse_inventory
from dbfleet.errors import UsageError
from dbfleet.operations.common import Repositories
from dbfleet.operations.restore import resolve_target
from dbfleet.repo import Repository, Snapshot
from dbfleet.repo.repository import SNAPSHOT_AAD


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Estate:
    return Estate(tmp_path_factory.mktemp("bad-input"))


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory: relative paths a command writes land here."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def everything_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def inventory_file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "dbfleet.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def valid_repository(estate: Estate) -> str:
    return (
        f"repositories:\n  local:\n    url: file://{estate.root / 'repo'}\n"
        f"    passphrase_env: {PASSPHRASE_ENV}\n"
    )


# -- secrets typed where they do not belong -----------------------------------


def test_password_in_to_is_refused_and_masked(estate: Estate, cwd: Path) -> None:
    result = estate.run("restore", "notes:latest", "--to", f"postgresql://u:{SECRET}@host/db")
    line = error_line(result)
    assert "postgresql://u:***@host/db" in line and "--password-env" in line
    assert list(cwd.iterdir()) == []  # no directories named after the URL


@pytest.mark.parametrize("engine", ["postgresql", "mysql", "redis", "mongodb", "clickhouse"])
def test_to_of_a_server_engine_is_a_url_without_password(engine: str) -> None:
    from dbfleet.operations.restore import check_destination

    assert check_destination(engine, f"{engine}://u@h/db") == f"{engine}://u@h/db"
    with pytest.raises(UsageError) as info:
        check_destination(engine, f"{engine}://u:{SECRET}@h/db")
    assert SECRET not in str(info.value) and "***" in str(info.value)
    with pytest.raises(UsageError, match="not a URL"):
        check_destination(engine, "/srv/restored.db")


def test_sqlite_to_refuses_a_url(estate: Estate, cwd: Path) -> None:
    line = error_line(estate.run("restore", "notes:latest", "--to", "postgresql://u@host/db"))
    assert "is a URL, but sqlite restores to a file" in line
    assert list(cwd.iterdir()) == []
    restored = estate.run("restore", "notes:latest", "--to", f"sqlite://{cwd / 'ok.db'}")
    assert restored.code == 0, restored.stderr
    assert tables(cwd / "ok.db") == tables(estate.database)


@pytest.mark.parametrize(
    "text",
    [
        f"databases:\n  pg: {{engine: postgresql, url: 'postgresql://u:{SECRET}@h/db'}}\n",
        f"databases:\n  n: {{engine: sqlite, path: /x.db, options: {{u: 'redis://:{SECRET}@h'}}}}\n",
        f"databases:\n  n: {{engine: sqlite, path: 'postgresql://u:{SECRET}@h/db'}}\n",
        f"databases:\n  n: {{engine: sqlite, path: /x.db, scratch: 'redis://:{SECRET}@h'}}\n",
    ],
    ids=["url", "options", "path", "scratch"],
)
def test_password_in_the_inventory_is_refused_and_not_echoed(
    estate: Estate, tmp_path: Path, text: str
) -> None:
    config = inventory_file(tmp_path, valid_repository(estate) + text)
    assert "password" in error_line(run_cli("config", "check", config=config))


def test_password_in_a_repository_url_is_refused(tmp_path: Path) -> None:
    config = inventory_file(
        tmp_path,
        f"repositories:\n  r: {{url: 's3://AKIA:{SECRET}@bucket/x'}}\n"
        "databases:\n  n: {engine: sqlite, path: /x.db}\n",
    )
    assert "repositories.r.url: must not contain a password" in error_line(
        run_cli("config", "check", config=config)
    )


def test_an_unexpected_error_is_one_masked_line(
    estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"driver said: cannot reach mysql://root:{SECRET}@db1/app")

    monkeypatch.setattr("dbfleet.cli.backup.verify_snapshot", broken)
    result = estate.run("verify", "notes:latest")
    assert result.code == 1 and SECRET not in result.output and "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("dbfleet: error: internal error: RuntimeError: driver said")
    assert "mysql://root:***@db1/app" in line and "please report it" in line


def test_redact() -> None:
    from dbfleet.errors import redact

    assert redact(f"x postgresql://u:{SECRET}@h/db y") == "x postgresql://u:***@h/db y"
    assert redact("redis://:p@ss@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("postgresql://u@h/db and a:b@c") == "postgresql://u@h/db and a:b@c"


# -- restore targets: nothing written outside what the user named -------------


@pytest.mark.parametrize(
    "name", ["../escaped", "a/../../b", "sub/x", "a\nb", " ", ".", "x\ty"], ids=repr
)
def test_sqlite_target_names_never_climb_out(estate: Estate, cwd: Path, name: str) -> None:
    outside = estate.root.parent
    before = set(outside.iterdir()), everything_under(estate.root), everything_under(cwd)
    error_line(estate.run("restore", "notes:latest", "--target", name))
    after = set(outside.iterdir()), everything_under(estate.root), everything_under(cwd)
    assert after == before


def test_sqlite_target_file_name_and_absolute_path(estate: Estate, tmp_path: Path) -> None:
    named = estate.run("restore", "notes:latest", "--target", "named-copy")
    assert named.code == 0, named.stderr
    assert tables(estate.root / "named-copy.db") == tables(estate.database)
    absolute = estate.run("restore", "notes:latest", "--target", str(tmp_path / "abs.db"))
    assert absolute.code == 0, absolute.stderr
    assert (tmp_path / "abs.db").is_file()


SERVER_ENTRIES = {
    "postgresql": "postgresql://app@127.0.0.1:5432/app",
    "mysql": "mysql://app@127.0.0.1:3306/app",
    "redis": "redis://127.0.0.1:6379/0",
    "clickhouse": "http://127.0.0.1:8123/app",
    "influxdb": "http://127.0.0.1:8086/app",
    "mongodb": "mongodb://127.0.0.1:27017/app",
    "neo4j": "bolt://neo4j@127.0.0.1:7687",
    "weaviate": "http://127.0.0.1:8080/App_",
}


@pytest.mark.parametrize("engine", [*SERVER_ENTRIES, "sqlite"])
@pytest.mark.parametrize(
    "name", ["../x", "a/../../x", "", "a\nb", "x\0y", f"postgresql://u:{SECRET}@h/db"], ids=repr
)
def test_every_engine_refuses_bad_target_names(engine: str, name: str) -> None:
    entry = {"path": "/srv/x.db"} if engine == "sqlite" else {"url": SERVER_ENTRIES[engine]}
    inventory = parse_inventory(
        {
            "repositories": {"r": {"url": "memory://unused"}},
            "databases": {"src": {"engine": engine, **entry}},
        }
    )
    now = datetime.now(UTC)
    snapshot = Snapshot(database="src", engine=engine, hostname="h", started=now, finished=now)
    with pytest.raises(UsageError) as info:
        resolve_target(Repositories(inventory), snapshot, target=name, to=None)
    assert SECRET not in str(info.value)


# -- the inventory file -----------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x00\x01\x02\xff\xfe binary", "is a binary file"),
        (b"repositories:\n  local: {url: file:///r, description: caf\xe9}\n", "not UTF-8"),
        (b"\xef\xbb\xbfrepositories: {}\n", "has no repositories and no databases"),
    ],
    ids=["binary", "latin-1", "bom"],
)
def test_inventory_that_is_not_utf8_text(tmp_path: Path, content: bytes, expected: str) -> None:
    config = inventory_file(tmp_path, content)
    line = error_line(run_cli("config", "check", config=config))
    assert str(config) in line and expected in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("a: " + "[" * 50000 + "]" * 50000, "YAML nested too deeply"),
        ("a: " + "{b: " * 3000 + "1" + "}" * 3000, "YAML nested too deeply"),
        ("repositories: {}\n" + "#" * (5 * 1024 * 1024), "larger than 4 MiB"),
    ],
    ids=["deep-lists", "deep-maps", "huge"],
)
def test_inventory_that_is_not_an_inventory(tmp_path: Path, content: str, expected: str) -> None:
    line = error_line(run_cli("config", "check", config=inventory_file(tmp_path, content)))
    assert expected in line


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_inventory_that_is_a_device(device: str) -> None:
    line = error_line(run_cli("config", "check", config=Path(device)))
    assert line.startswith(f"dbfleet: error: {device} ")


@pytest.mark.parametrize(
    "where",
    [
        "databases.notes.rpo",
        "databases.notes.rto",
        "databases.notes.retention.keep_within",
        "repositories.local.retention.keep_within",
        "serve.job_timeout",
    ],
)
@pytest.mark.parametrize("value", ["99999999999999999999d", "101y", ".inf", ".nan", "1e400"])
def test_huge_durations(estate: Estate, tmp_path: Path, where: str, value: str) -> None:
    document = estate.document({"notes": {"engine": "sqlite", "path": str(estate.database)}})
    node = document
    *parents, key = where.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[key] = "@VALUE@"
    text = yaml.safe_dump(document).replace("'@VALUE@'", value)
    line = error_line(run_cli("config", "check", config=inventory_file(tmp_path, text)))
    assert where in line


def test_forget_keep_within_huge(estate: Estate) -> None:
    line = error_line(estate.run("forget", "--keep-within", "99999999999999999y", "--dry-run"))
    assert "--keep-within" in line and "too long" in line


def test_duplicate_database_name_names_both_lines(estate: Estate, tmp_path: Path) -> None:
    text = valid_repository(estate) + (
        "databases:\n"
        f"  notes: {{engine: sqlite, path: {estate.database}}}\n"
        "  notes: {engine: sqlite, path: /elsewhere.db}\n"
    )
    line = error_line(run_cli("config", "check", config=inventory_file(tmp_path, text)))
    assert "key 'notes' at line 7 is already given at line 6" in line


def test_duplicate_key_in_a_repository_names_both_lines(estate: Estate, tmp_path: Path) -> None:
    text = (
        "repositories:\n  local:\n"
        f"    url: file://{estate.root / 'repo'}\n"
        "    passphrase_env: X\n"
        "    url: file:///somewhere/else\n"
        f"databases:\n  notes: {{engine: sqlite, path: {estate.database}}}\n"
    )
    line = error_line(run_cli("config", "check", config=inventory_file(tmp_path, text)))
    assert "key 'url' at line 5 is already given at line 3" in line


def test_merge_keys_may_still_be_overridden(estate: Estate, tmp_path: Path) -> None:
    text = valid_repository(estate) + (
        "base: &base {engine: sqlite, path: /overridden.db}\n"
        f"databases:\n  notes: {{<<: *base, path: {estate.database}}}\n"
    ).replace("base: &base", "x-base: &base")
    line = error_line(run_cli("config", "check", config=inventory_file(tmp_path, text)))
    assert "x-base: unknown key" in line  # the merge itself was accepted


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("", "is empty"),
        ("# just a comment\n", "is empty"),
        ("databases:\n  notes: {engine: sqlite, path: /x.db}\n", "has no repositories:"),
        ("repositories:\n  local: {url: file:///r}\n", "has no databases:"),
        ("repositories: {}\ndatabases: {}\n", "has no repositories and no databases"),
    ],
    ids=["empty", "comment", "no-repositories", "no-databases", "both-empty"],
)
def test_an_inventory_without_repositories_or_databases(
    tmp_path: Path, text: str, missing: str
) -> None:
    config = inventory_file(tmp_path, text)
    for args in (["config", "check"], ["backup", "--all"], ["drill", "--all"], ["snapshots"]):
        line = error_line(run_cli(*args, config=config))
        assert f"{config} {missing}" in line, (args, line)


def test_misspelt_section_is_named_not_missing(tmp_path: Path) -> None:
    config = inventory_file(
        tmp_path, "repositories:\n  r: {url: file:///r}\ndatabaes:\n  n: {engine: sqlite}\n"
    )
    assert "databaes: unknown key" in error_line(run_cli("config", "check", config=config))


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"engine": "postgresql", "url": "postgresql://u@h:99999/db"}, "databases.x: "),
        ({"engine": "postgresql", "url": "not a url"}, "databases.x.url: not a URL"),
        ({"engine": "neo4j", "url": "http://h:7687"}, "databases.x: neo4j url must start"),
        ({"engine": "sqlite", "path": "/x.db", "options": {"bogus": 1}}, "unknown sqlite option"),
        ({"engine": "sqlite", "path": "/x.db", "options": {"staging_dir": 5}}, "staging_dir"),
        ({"engine": "sqlite", "path": ""}, "databases.x.path: must not be empty"),
        ({"engine": "sqlite", "url": "sqlite:///x.db"}, "takes 'path'"),
        ({"engine": "postgresql", "url": "postgresql://h/d", "path": "/x"}, "takes 'url'"),
        ({"engine": "sqlite", "path": "/x.db", "copy_to": ["local"]}, "own repository"),
        ({"engine": "sqlite", "path": "/x.db", "retention": {"keep_last": True}}, "keep_last"),
        ({"engine": "sqlite", "path": "/x.db", "tags": [""]}, "tag must not be empty"),
        ({"engine": "sqlite", "path": "/x.db", "scratch": "../up"}, "scratch: must not"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_config_check_refuses(estate: Estate, tmp_path: Path, entry: dict, expected: str) -> None:
    config = estate.write({"x": entry}, tmp_path / "inventory.yaml")
    assert expected in error_line(run_cli("config", "check", config=config))
    report = run_cli("config", "check", "--json", config=config)
    assert report.code == 2 and '"ok": false' in report.stdout and expected in report.stdout


@pytest.mark.parametrize("name", ["a:b", "my notes", "", "..", "a/b", "[bold]x", "é"], ids=repr)
def test_inventory_names(estate: Estate, tmp_path: Path, name: str) -> None:
    config = estate.write({name: {"engine": "sqlite", "path": "/x.db"}}, tmp_path / "i.yaml")
    assert "names are 1-63 letters" in error_line(run_cli("config", "check", config=config))


def test_several_problems_are_listed_one_per_line_by_config_check(
    estate: Estate, tmp_path: Path
) -> None:
    config = estate.write(
        {"a": {"engine": "oracle", "url": "x://h"}, "b": {"engine": "sqlite", "pth": "/x.db"}},
        tmp_path / "i.yaml",
    )
    result = run_cli("config", "check", config=config)
    assert "(3 problems)" in error_line(result)
    assert result.stdout.splitlines()[0] == f"{config}: 3 problems"
    assert any("databases.b.pth: unknown key" in line for line in result.stdout.splitlines())


# -- snapshot ids, tables, flags ---------------------------------------------------


def twin_of(repo: Repository, snapshot: Snapshot) -> str:
    """Store a second manifest whose id starts with the same 4 hex digits as
    ``snapshot``'s (~65k tries of sealing it with a fresh nonce); its id."""
    body = snapshot.model_copy(update={"tags": ["twin"]}).model_dump_json().encode()
    while True:
        sealed = repo.key.encrypt(body, SNAPSHOT_AAD)
        twin = blake3.blake3(sealed).hexdigest()
        if twin[:4] == snapshot.id[:4] and twin != snapshot.id:
            repo.storage.put(f"snapshots/{twin}", sealed)
            return twin


def test_an_ambiguous_short_id_is_called_ambiguous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = Estate(tmp_path)
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    repo = Repositories(load_inventory(own.config)).for_database("notes")
    latest = repo.find_snapshot("notes:latest")
    twin = twin_of(repo, latest)
    for selector in (latest.id[:4], f"notes:{latest.id[:4]}"):
        line = error_line(own.run("restore", selector, "--to", tmp_path / "x.db"))
        assert "ambiguous" in line and latest.id[:12] in line and twin[:12] in line
    assert own.run("restore", latest.id[:12], "--to", tmp_path / "x.db").code == 0


def test_an_id_prefix_found_in_two_repositories_is_ambiguous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = Estate(tmp_path)
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    document = own.document({"notes": {"engine": "sqlite", "path": str(own.database)}})
    document["repositories"]["second"] = {**document["repositories"]["local"],
                                          "url": f"file://{tmp_path / 'second'}"}  # fmt: skip
    document["databases"]["notes"]["repository"] = "local"
    own.config.write_text(yaml.safe_dump(document))
    repos = Repositories(load_inventory(own.config))
    latest = repos.get("local").find_snapshot("notes:latest")
    assert own.run("repo", "init", "second").code == 0
    twin = twin_of(Repositories(load_inventory(own.config)).get("second"), latest)
    line = error_line(own.run("restore", latest.id[:4], "--to", tmp_path / "x.db"))
    assert f"{latest.id[:8]} in local" in line and f"{twin[:8]} in second" in line
    assert own.run("restore", latest.id[:12], "--to", tmp_path / "x.db").code == 0


def test_a_too_short_id_says_so(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    repos = Repositories(load_inventory(estate.config))
    latest = repos.for_database("notes").find_snapshot("notes:latest")
    line = error_line(estate.run("verify", latest.id[:2]))
    assert "too short for a snapshot id" in line


def test_missing_table_is_a_usage_error_and_leaves_nothing(estate: Estate, cwd: Path) -> None:
    line = error_line(estate.run("restore", "notes:latest", "--to", cwd / "x.db", "--table", "no"))
    assert "table 'no' is not in the backup" in line and "authors, notes, tags" in line
    assert list(cwd.iterdir()) == []  # no .x.db.dbfleet-restore-subset, no x.db


def test_restore_flags_that_do_not_apply(estate: Estate, cwd: Path) -> None:
    cases = {
        ("--target", "g", "--globals"): "--globals: sqlite has no server-wide objects",
        ("--to", cwd / "p.db", "--password-env", "X"): "--password-env: sqlite has no password",
        ("--target", "p", "--password-env", "X"): "--password-env goes with --to",
        ("--to", cwd / "t.db", "--table", ""): "--table must not be empty",
        ("--to", ""): "--to must not be empty",
    }
    for args, expected in cases.items():
        assert expected in error_line(estate.run("restore", "notes:latest", *args)), args
    assert list(cwd.iterdir()) == []
    twice = estate.run("restore", "notes:latest", "--to", cwd / "t.db", "--table", "notes",
                       "--table", "notes")  # fmt: skip
    assert twice.code == 0, twice.stderr
    assert tables(cwd / "t.db") == {"notes"}


def test_restore_io_errors_are_one_line(estate: Estate, cwd: Path) -> None:
    assert "is a directory" in error_line(estate.run("restore", "notes", "--to", cwd, "--clean"))
    blocked = cwd / "file"
    blocked.write_text("not a directory")
    line = error_line(estate.run("restore", "notes", "--to", blocked / "x.db"), code=1)
    assert "cannot restore to" in line
    assert sorted(p.name for p in cwd.iterdir()) == ["file"]


def test_forget_an_unknown_database(estate: Estate) -> None:
    line = error_line(estate.run("forget", "ghost", "--keep-last", "1", "--dry-run"))
    assert "no database 'ghost' in the inventory, and no snapshots of it" in line


def test_drill_snapshot_that_is_not_an_id(estate: Estate) -> None:
    line = error_line(estate.run("drill", "notes", "--snapshot", "zzzz"))
    assert "--snapshot 'zzzz' is not a snapshot id" in line


def test_backup_empty_tag(estate: Estate) -> None:
    assert "--tag must not be empty" in error_line(estate.run("backup", "notes", "--tag", ""))


def test_markup_and_emoji_codes_print_as_written(estate: Estate, tmp_path: Path) -> None:
    odd = tmp_path / "[/bold]x:thumbs_up:.db"
    config = estate.write({"odd": {"engine": "sqlite", "path": str(odd)}}, tmp_path / "i.yaml")
    result = run_cli("backup", "odd", config=config)
    assert result.code == 1 and "Traceback" not in result.stderr
    assert f"SQLite database {odd} does not exist" in result.stderr


# -- click's usage errors: one line with the hint -------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["backup", "--foo"], "no such option: --foo (see dbfleet backup --help)"),
        (["bakup"], "no such command 'bakup'"),
        (["restore"], "missing argument 'SNAPSHOT' (see dbfleet restore --help)"),
        (["forget", "--keep-daily", "x"], "invalid value for '--keep-daily'"),
        (["forget", "--keep-last", "-1"], "invalid value for '--keep-last'"),
        (["repo", "key", "bogus"], "no such command 'bogus' (see dbfleet repo key --help)"),
        (["snapshots", "a", "b"], "unexpected extra argument"),
        (["repo"], "missing command (see dbfleet repo --help)"),
        ([], "missing command (see dbfleet --help)"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_usage_errors_are_one_line(estate: Estate, args: list[str], expected: str) -> None:
    assert expected in error_line(estate.run(*args))
