"""Dump and restore tools as streaming subprocesses: exit status, signals and
stderr reach the user; secrets do not reach the tool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dbfleet.engines._shared.process import dump_process, find_tool, restore_process, run_tool
from dbfleet.errors import EngineError, IntegrityError, ToolMissingError


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


class CountedChunks:
    """64 chunks of 64 KiB (more than a pipe holds), counting what was read
    and whether the stream was closed (a repository stream's readers stop)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.read = 0
        self.closed = False
        self.fail_at = fail_at

    def __iter__(self) -> Iterator[bytes]:
        try:
            for i in range(64):
                if i == self.fail_at:
                    raise IntegrityError("chunk 3 failed authentication")
                self.read += 1
                yield b"x" * 65536
        finally:
            self.closed = True


def test_restore_process_that_stops_reading_early_and_exits_0_succeeded() -> None:
    # pg_restore -L stops reading after the last entry it restores, exit 0.
    chunks = CountedChunks()
    stream = iter(chunks)
    assert restore_process(["sh", "-c", "head -c 10 >/dev/null; echo done"], stream) == "done\n"
    assert chunks.closed and chunks.read < 64  # the rest is not read


def test_restore_process_that_stops_reading_early_can_read_the_rest() -> None:
    chunks = CountedChunks()
    restore_process(["sh", "-c", "head -c 10 >/dev/null"], iter(chunks), read_rest=True)
    assert chunks.read == 64  # e.g. a parser that must see the archive's end


def test_restore_process_that_stops_reading_early_and_fails() -> None:
    with pytest.raises(EngineError, match="status 3: gave up"):
        restore_process(
            ["sh", "-c", "head -c 10 >/dev/null; echo gave up >&2; exit 3"], iter(CountedChunks())
        )


def test_restore_process_stops_the_tool_before_it_sees_a_truncated_input(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "finished"
    chunks = CountedChunks(fail_at=3)
    with pytest.raises(IntegrityError):
        restore_process(["sh", "-c", f"cat >/dev/null; touch '{marker}'"], iter(chunks))
    assert not marker.exists()  # killed, never reached the end of its input


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
