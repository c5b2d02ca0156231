"""Job processes: start ``python -m dbfleet.schedule.worker``, watch it, stop it.

Each job runs in its own process group (``start_new_session``), so a Ctrl-C
on the terminal reaches only ``serve``, which then decides what its jobs get.
Output goes to anonymous temporary files (no pipe can fill up and stall a
job); the worker's last stdout line is its JSON result.

Stopping is two-step: SIGTERM (the worker unwinds: dump tool killed, nothing
committed, lock released, temporary files removed), then, after a grace
period, SIGKILL to the process group (the repository is still consistent:
a snapshot exists only after its commit, and a dead process's lock is stale).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

StopReason = Literal["timeout", "shutdown"]
TAIL_BYTES = 4000


@dataclass
class Outcome:
    status: str
    """``ok``, ``failed``, ``timeout`` or ``aborted``."""
    returncode: int | None
    bytes: int | None = None
    snapshot: str | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def worker_argv(config: Path, kind: str, target: str) -> list[str]:
    return [sys.executable, "-m", "dbfleet.schedule.worker", "--config", str(config), kind, target]


class JobProcess:
    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        # closed in outcome(), once the process has exited
        self._stdout = tempfile.TemporaryFile()  # noqa: SIM115
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            env=env,
            start_new_session=True,
        )
        self.began = time.monotonic()
        self.stop_reason: StopReason | None = None
        self.terminated_at: float | None = None
        self.killed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def terminate(self, reason: StopReason) -> None:
        """SIGTERM once; the first reason given is the one recorded."""
        if self.terminated_at is not None or self.poll() is not None:
            return
        self.stop_reason = reason
        self.terminated_at = time.monotonic()
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.poll() is None:
            self.stop_reason = self.stop_reason or "shutdown"
            self.killed = True
            self._signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    def _read(self, handle: Any) -> str:
        handle.seek(0)
        data: bytes = handle.read()
        handle.close()
        return data.decode(errors="replace")

    def outcome(self) -> Outcome:
        """The result of a process that has exited (closes its output files)."""
        returncode = self.proc.wait()
        stdout = self._read(self._stdout)
        stderr = self._read(self._stderr)[-TAIL_BYTES:]
        result: dict[str, Any] | None = None
        for line in reversed(stdout.strip().splitlines()):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict) and "ok" in parsed:
                result = parsed
            break
        if result is not None and result.get("ok"):
            status = "ok"
        elif self.stop_reason == "timeout":
            status = "timeout"
        elif self.stop_reason == "shutdown" or (result or {}).get("aborted"):
            status = "aborted"
        else:
            status = "failed"
        error = (result or {}).get("error")
        if status == "timeout":
            how = "killed" if self.killed else "stopped"
            error = f"timed out; {how} after {time.monotonic() - self.began:.0f}s"
        elif status == "aborted" and self.killed:
            error = "killed (SIGKILL) after the shutdown grace period"
        elif status == "aborted" and not error:
            error = "stopped by shutdown"
        elif status == "failed" and result is None:
            last = [line for line in stderr.strip().splitlines() if line.strip()][-1:]
            error = f"job process exited with status {returncode}" + (
                f": {last[0]}" if last else ""
            )
        details = dict((result or {}).get("details") or {})
        if result and result.get("error_type"):
            details["error_type"] = result["error_type"]
        return Outcome(
            status=status,
            returncode=returncode,
            bytes=(result or {}).get("bytes"),
            snapshot=(result or {}).get("snapshot"),
            error=error,
            details=details,
        )
