"""Rendering: human output (rich) on a terminal, JSON for scripts.

Results go to stdout; progress and messages go to stderr, so
``dbfleet snapshots --json | jq`` always sees clean JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from dbfleet.repo import Progress as BackupProgress

# No markup and no emoji codes: names and messages are the user's text, and
# a database called `a:b:` or an error quoting `[/tmp]` must print as written.
stdout = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    stderr.print(message)


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(*columns, show_edge=False, pad_edge=False, box=None, header_style="bold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    stdout.print(t)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def interactive(json_output: bool) -> bool:
    return not json_output and stderr.is_terminal


@contextmanager
def backup_progress(
    enabled: bool,
) -> Iterator[Callable[[str], Callable[[BackupProgress], None] | None]]:
    """Yield a factory: database name -> progress callback (None when off)."""
    if not enabled:
        yield lambda _name: None
        return
    with Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        TextColumn("read {task.fields[read]}"),
        TransferSpeedColumn(),
        TextColumn("stored {task.fields[added]}  dedup {task.fields[dedup]}"),
        TimeElapsedColumn(),
        console=stderr,
        transient=False,
    ) as bar:

        def factory(name: str) -> Callable[[BackupProgress], None]:
            task = bar.add_task(name, total=None, read="0 B", added="0 B", dedup="-")

            def update(p: BackupProgress) -> None:
                ratio = f"{p.dedup_ratio:.1f}x" if p.added_bytes else "-"
                bar.update(
                    task,
                    completed=p.bytes_read,
                    read=human_bytes(p.bytes_read),
                    added=human_bytes(p.added_bytes),
                    dedup=ratio,
                )

            return update

        yield factory


class ByteProgress:
    """What :func:`byte_progress` yields: call it with bytes done; ``total``
    sets the size once it is known (a bar and an ETA instead of a counter)."""

    def __init__(self, bar: Progress | None = None, task: TaskID | None = None) -> None:
        self._bar, self._task = bar, task

    def __call__(self, n: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def total(self, size: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=size)


@contextmanager
def byte_progress(enabled: bool, label: str, total: int | None) -> Iterator[ByteProgress]:
    if not enabled:
        yield ByteProgress()
        return
    with Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=stderr,
    ) as bar:
        yield ByteProgress(bar, bar.add_task(label, total=total))
