"""Dump and restore tools as streaming subprocesses: exit status, signals and
stderr reach the user; secrets do not reach the tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbfleet.engines._shared.process import dump_process, find_tool, restore_process, run_tool
from dbfleet.errors import EngineError, ToolMissingError


def test_dump_process_streams_stdout() -> None:
    with dump_process(["sh", "-c", "printf 'abc'; printf 'def'"]) as out:
        assert out.read() == b"abcdef"


def test_dump_process_failure_carries_stderr_tail() -> None:
    script = "for i in $(seq 1 50); do echo line$i >&2; done; exit 7"
    with pytest.raises(EngineError) as info, dump_process(["sh", "-c", script]) as out:
        out.read()
    message = str(info.value)
    assert message.startswith("sh exited with status 7")
    assert "line50" in message and "line1;" not in message  # only the tail


def test_dump_process_killed_by_signal() -> None:
    with (
        pytest.raises(EngineError, match="killed by SIGKILL"),
        dump_process(["sh", "-c", "printf partial; kill -9 $$"]) as out,
    ):
        assert out.read() == b"partial"


def test_dump_process_block_error_stops_the_tool() -> None:
    class ConsumerFailed(Exception):
        pass

    with pytest.raises(ConsumerFailed), dump_process(["yes"]) as out:
        out.read(1000)
        raise ConsumerFailed


def test_dump_process_env_drops_dbfleet_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBFLEET_PASSPHRASE", "hidden")
    monkeypatch.setenv("DBFLEET_PASSPHRASE_FILE", "/hidden")
    script = 'printf "%s|%s|%s" "$DBFLEET_PASSPHRASE" "$DBFLEET_PASSPHRASE_FILE" "$PGPASSWORD"'
    with dump_process(["sh", "-c", script], env={"PGPASSWORD": "for-the-tool"}) as out:
        assert out.read() == b"||for-the-tool"


def test_restore_process_feeds_stdin(tmp_path: Path) -> None:
    target = tmp_path / "out"
    chunks = [b"one ", b"two ", b"three"]
    restore_process(["sh", "-c", f"cat > '{target}'; echo done"], iter(chunks))
    assert target.read_bytes() == b"one two three"
    assert restore_process(["sh", "-c", "cat >/dev/null; echo done"], iter(chunks)) == "done\n"


def test_restore_process_failure() -> None:
    chunks = (b"x" * 65536 for _ in range(64))  # more than a pipe buffer
    with pytest.raises(EngineError, match="status 4.*bad input"):
        restore_process(["sh", "-c", "head -c 10 >/dev/null; echo bad input >&2; exit 4"], chunks)


def test_restore_process_that_stops_reading_early() -> None:
    chunks = (b"x" * 65536 for _ in range(64))
    with pytest.raises(EngineError, match="stopped reading"):
        restore_process(["sh", "-c", "head -c 10 >/dev/null; exit 0"], chunks)


def test_run_tool() -> None:
    assert run_tool(["sh", "-c", "echo 1.2.3"]) == "1.2.3\n"
    with pytest.raises(EngineError, match="status 2: nope"):
        run_tool(["sh", "-c", "echo nope >&2; exit 2"])
    with pytest.raises(EngineError, match="did not finish"):
        run_tool(["sleep", "5"], timeout=0.2)


def test_find_tool(tmp_path: Path) -> None:
    assert Path(find_tool("sh", "a shell")).name == "sh"
    with pytest.raises(ToolMissingError, match="install dbfleet-test-package"):
        find_tool("dbfleet-no-such-tool", "dbfleet-test-package")
    tool = tmp_path / "dbfleet-extra-tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert find_tool("dbfleet-extra-tool", "x", extra_dirs=[str(tmp_path)]) == str(tool)


def test_child_environment_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBFLEET_PASSPHRASE", "repo-secret")
    monkeypatch.setenv("APP_PG_PASSWORD", "db-secret")
    out = run_tool(["env"], env={"APP_PG_PASSWORD": None, "PGAPPNAME": "dbfleet"})
    assert "repo-secret" not in out
    assert "db-secret" not in out
    assert "PGAPPNAME=dbfleet" in out
