"""Run native dump and restore tools as streaming subprocesses.

Dump tools write to a pipe that goes straight into the repository; restore
tools read the verified stream from a pipe. Secrets reach the tools only
through their environment or option files, never their arguments. A tool
that exits non-zero or dies from a signal fails the operation with the tail
of its own stderr.

A restore tool may stop reading its input before the end and exit 0: it has
what it needs (``pg_restore -L`` stops after the last entry the list names).
That is a success, decided here (:func:`feed_stdin`) for every tool dbfleet
feeds: only the exit status says whether the tool failed. Every byte the tool
did read came from chunks the repository had authenticated; the rest of the
stream is not read at all, unless the caller checks the stream as a whole
while it flows (``read_rest``), e.g. a parser that must see the archive's
end. A damaged chunk in the part no tool needed is found by ``verify`` and
``repo check``, which read everything.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO

from dbfleet.errors import EngineError, ToolMissingError

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1 << 20
ToolEnv = Mapping[str, str | None]


def find_tool(name: str, package_hint: str, extra_dirs: Sequence[str] = ()) -> str:
    """Absolute path of ``name`` or ``ToolMissingError`` naming the package."""
    found = shutil.which(name)
    if found:
        return found
    for directory in extra_dirs:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise ToolMissingError(f"{name} not found on PATH", hint=f"install {package_hint}")


class _StderrTail:
    """Drain a process's stderr in a thread, keeping the last lines."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self.lines.append(line)

    def text(self) -> str:
        self._thread.join(timeout=5)
        return "; ".join(self.lines)


def _widen_pipe(stream: IO[bytes]) -> None:
    """Give the dump tool a 1 MiB pipe instead of Linux's 64 KiB, so brief
    pauses of the reader (a pack being finished) do not stall the tool."""
    # Not Linux, or above /proc/sys/fs/pipe-max-size: keep the default.
    with contextlib.suppress(OSError):
        fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, PIPE_SIZE)


def _failure(tool: str, returncode: int, stderr: str) -> EngineError:
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with status {returncode}"
    return EngineError(f"{tool} {how}" + (f": {stderr}" if stderr else ""))


@contextmanager
def dump_process(argv: Sequence[str], env: ToolEnv | None = None) -> Iterator[IO[bytes]]:
    """Start a dump tool; yield its stdout. On leaving the block the tool must
    have exited 0, else ``EngineError`` (also when the block itself failed,
    the tool is stopped first)."""
    tool = os.path.basename(argv[0])
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(env),
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    _widen_pipe(proc.stdout)
    tail = _StderrTail(proc.stderr)
    try:
        yield proc.stdout
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
    returncode = proc.wait()
    if returncode != 0:
        raise _failure(tool, returncode, tail.text())


def close_iterator(chunks: Iterable[bytes]) -> None:
    """Close a generator of chunks (a repository stream stops its readers)."""
    close = getattr(chunks, "close", None)
    if callable(close):
        close()


def feed_stdin(stdin: IO[bytes], chunks: Iterable[bytes], *, read_rest: bool = False) -> bool:
    """Write ``chunks`` to a tool's ``stdin`` and close it. Returns whether
    the tool closed its end first; that alone is no failure (the tool's exit
    status decides, see the module docstring). Then the remaining chunks are
    read and dropped if ``read_rest``, else not read at all.

    If reading ``chunks`` raises (a damaged chunk), ``stdin`` is left open:
    the caller stops the tool first, so that it never sees an end of input
    and acts on a truncated stream."""
    remaining = iter(chunks)
    stopped_early = False
    for chunk in remaining:
        try:
            stdin.write(chunk)
        except BrokenPipeError:
            stopped_early = True
            break
    if stopped_early and read_rest:
        for _ in remaining:
            pass
    elif stopped_early:
        close_iterator(remaining)
    try:
        stdin.close()
    except BrokenPipeError:
        stopped_early = True
    return stopped_early


def restore_process(
    argv: Sequence[str],
    chunks: Iterable[bytes],
    env: ToolEnv | None = None,
    *,
    read_rest: bool = False,
) -> str:
    """Feed ``chunks`` to a restore tool's stdin; return its stdout (expected
    to be short). ``EngineError`` with its stderr if it fails. A tool that
    stops reading early and exits 0 has succeeded (see :func:`feed_stdin`
    for ``read_rest``)."""
    tool = os.path.basename(argv[0])
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(env),
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    tail = _StderrTail(proc.stderr)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        stopped_early = feed_stdin(proc.stdin, chunks, read_rest=read_rest)
    except BaseException:
        proc.kill()
        proc.wait()
        with contextlib.suppress(OSError):
            proc.stdin.close()
        raise
    returncode = proc.wait()
    reader.join(timeout=5)
    if returncode != 0:
        raise _failure(tool, returncode, tail.text())
    if stopped_early:
        log.debug("%s finished without reading all of its input", tool)
    return b"".join(out).decode(errors="replace")


def run_tool(argv: Sequence[str], env: ToolEnv | None = None, timeout: float = 60) -> str:
    """Run a short tool invocation (``--version``, a query) and return stdout."""
    tool = os.path.basename(argv[0])
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=_env(env),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"{tool} did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise _failure(tool, proc.returncode, proc.stderr.decode(errors="replace").strip())
    return proc.stdout.decode(errors="replace")


def _env(extra: Mapping[str, str | None] | None) -> dict[str, str]:
    """The child's environment: ours, without dbfleet's own secrets, with
    ``extra`` applied (a ``None`` value removes the variable, e.g. the one
    that held a password the tool now reads from an option file)."""
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("DBFLEET_PASSPHRASE"):
            del env[name]
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env
