"""The binlog tool (``mariadb-binlog`` / ``mysqlbinlog``) in a MySQL/MariaDB
point-in-time recovery: finding it, running it as a filter (binlog bytes
in, SQL out) and dropping the source's GTID settings from its SQL."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from typing import cast

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.process import (
    ToolEnv,
    _env,
    _failure,
    _StderrTail,
    feed_stdin,
    find_tool,
)
from dbfleet.errors import EngineError

BINLOG_TOOLS = ("mariadb-binlog", "mysqlbinlog")
BATCH = 1 << 20
GTID_LINES = re.compile(
    rb"^/\*M!100001 SET @@session\.(?:gtid_domain_id|server_id|gtid_seq_no)=\d+\*//\*!\*/;\n",
    re.M,
)


def filtered(tool_output: Iterator[bytes]) -> Iterator[bytes]:
    """The tool's SQL without the lines that would replay the source's GTIDs."""
    pending = b""
    for data in tool_output:
        end = data.rfind(b"\n") + 1
        if not end:
            pending += data
            continue
        block, pending = pending + data[:end], data[end:]
        yield GTID_LINES.sub(b"", block)
    if pending:
        yield pending


def tool_output(argv: list[str], chunks: Iterator[bytes], env: ToolEnv) -> Iterator[bytes]:
    """Run a filter tool: ``chunks`` to its stdin (a thread), its stdout yielded."""
    tool = os.path.basename(argv[0])
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=_env(env), start_new_session=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout = proc.stdin, cast(io.BufferedReader, proc.stdout)
    tail = _StderrTail(proc.stderr)
    failed: list[BaseException] = []

    def feed() -> None:
        try:
            feed_stdin(stdin, chunks)  # stopping early is the tool's call: its exit status says
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            failed.append(exc)
            proc.kill()
            with contextlib.suppress(OSError):
                stdin.close()

    feeder = threading.Thread(target=feed, name="dbfleet-binlog-feed", daemon=True)
    feeder.start()
    try:
        while data := stdout.read1(BATCH):
            yield data
    except BaseException:
        proc.kill()
        raise
    finally:
        stdout.close()
        returncode = proc.wait()
        feeder.join()
    if failed:
        raise failed[0]
    if returncode != 0:
        raise _failure(tool, returncode, tail.text())


def binlog_tool(config: DatabaseConfig) -> tuple[str, str]:
    """Path and flavour of mariadb-binlog / mysqlbinlog."""
    bin_dir = config.options.get("bin_dir")
    extra = [str(bin_dir)] if bin_dir else []
    for name in BINLOG_TOOLS:
        try:
            path = find_tool(name, "mariadb-client", extra)
            return path, ("mariadb" if name.startswith("mariadb") else "mysql")
        except EngineError:
            continue
    raise EngineError("neither mariadb-binlog nor mysqlbinlog found", hint="install mariadb-client")
