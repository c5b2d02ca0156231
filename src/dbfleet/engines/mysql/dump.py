"""mysqldump / mariadb-dump output, read line by line as it flows past.

A dump of one database is plain SQL in sections that the tool announces
with comment lines (``-- Table structure for table `t```, ``-- Dumping data
for table `t```, ``-- Final view structure for view `v```, ...). Values
never span lines (the tool escapes newlines inside strings), and stored
program bodies (triggers, routines, events) sit between ``DELIMITER ;;``
and ``DELIMITER ;``, where comment-like lines are not markers.

:class:`DumpScanner` reads a dump and records

* the fingerprint: per table the number of rows and an order-independent
  digest, the sum modulo 2**64 of a 64-bit BLAKE2b hash of each row's
  literal text ``(v1,v2,...)`` as the tool wrote it. The tool writes
  canonical literals (hex for binary columns with ``--hex-blob``, UTC for
  TIMESTAMP columns), so dumping the restored copy with the same tool and
  options yields the same text and the same digest;
* the values sequences are set to (``DO SETVAL(...)``, MariaDB);
* the binary log file and position (``--master-data=2`` / ``--source-data=2``
  comment) and the GTID position, where the dump states them;
* the catalog: tables, sequences, views, routines and events in the dump;
* whether the dump is complete (its ``-- Dump completed`` trailer).

Rows come in one of three layouts, all read alike: one INSERT per row
(``--skip-extended-insert``, how dbfleet dumps), extended INSERTs on one
line (MySQL's mysqldump) or one row per line after ``INSERT ... VALUES``
(MariaDB 10.11). Runs of single-line INSERTs and of row lines are found with
C-speed searches, so Python touches each row only to hash it.

:func:`filter_dump` rewrites a dump on its way to the ``mysql`` client for
a restore: single-row INSERTs joined into statements of about 1 MiB, only
the sections of some tables, without ``DEFINER`` clauses, and with sequence
references qualified by the source database unqualified.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# What a section marker announces; the name (a quoted identifier) follows.
_MARKERS: dict[bytes, str] = {
    b"-- Table structure for table ": "table",
    b"-- Sequence structure for ": "sequence",
    b"-- Dumping data for table ": "data",
    b"-- Temporary table structure for view ": "view_stub",
    b"-- Temporary view structure for view ": "view_stub",
    b"-- Final view structure for view ": "view",
    b"-- Dumping events for database ": "events",
    b"-- Dumping routines for database ": "routines",
}
# One row of an extended INSERT written on a single line (MySQL's mysqldump,
# older MariaDB): "(" literals ")" where literals are numbers, NULL, 0x..,
# b'..' and quoted strings (backslash escapes); parentheses occur only inside strings.
_ROW = re.compile(rb"\((?:[^'()]++|'(?:[^'\\]++|\\.)*+')*+\)", re.S)
_INSERT = re.compile(rb"INSERT INTO `((?:[^`]|``)+)`(?: \([^)]*\))? VALUES ?")
_BINLOG = re.compile(
    rb"CHANGE (?:MASTER|REPLICATION SOURCE) TO (?:MASTER|SOURCE)_LOG_FILE='([^']*)',\s*"
    rb"(?:MASTER|SOURCE)_LOG_POS=(\d+)"
)
_MARIADB_GTID = re.compile(rb"^-- SET GLOBAL gtid_slave_pos='([^']*)'")
_MYSQL_GTID = re.compile(rb"GTID_PURGED=(?:/\*!80000 '\+'\*/ )?'([^']*)'")
_SETVAL = re.compile(rb"^(?:DO|SELECT) SETVAL\(`((?:[^`]|``)+)`, (-?\d+), (\d+)\)")
_DROP_ROUTINE = re.compile(
    rb"^/\*!5\d{4} DROP (FUNCTION|PROCEDURE|EVENT) IF EXISTS `((?:[^`]|``)+)`"
)
_SEQUENCE_USE = re.compile(rb"(?:nextval|lastval)\((?:`(?:[^`]|``)+`\.)?`((?:[^`]|``)+)`\)", re.I)
_HEADER_DB = re.compile(rb"^-- Host: .*?\s+Database: (.*)$")
_DEFINER = re.compile(
    rb"DEFINER=(?:`(?:[^`]|``)*`|'(?:[^']|'')*'|\w+)@(?:`(?:[^`]|``)*`|'[^']*'|[\w.%-]+)"
)
_MASK = (1 << 64) - 1

# Line classes (see _Lines.walk).
OTHER, MARKER, BODY, INSERT, ROW, INSERTS = range(6)


def unquote(identifier: bytes) -> str:
    """`na``me` -> na`me."""
    text = identifier.decode("utf-8", errors="replace").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "`'":
        q = text[0]
        return text[1:-1].replace(q + q, q)
    return text


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class _Lines:
    """Tracks where in a dump a line is: section, stored-program body, rows."""

    def __init__(self) -> None:
        self.section: tuple[str, str] | None = None
        self.in_body = False
        self.in_rows = False
        self.prefix = b""
        """``INSERT INTO `t` VALUES `` of the last INSERT line or run."""
        self._run_ends: dict[bytes, re.Pattern[bytes]] = {}

    def walk(self, block: bytes) -> Iterator[tuple[int, bytes]]:
        """The lines of ``block`` (complete lines, without the last newline)
        with their class. A run of row lines (``ROW``) or of single-line
        INSERTs into one table (``INSERTS``, with ``prefix``) comes as one
        piece, found at C speed."""
        pos, size = 0, len(block)
        while pos <= size:
            if self.in_rows:
                # Rows on their own lines (MariaDB 10.11+); the last ends with ");".
                end = block.find(b";\n", pos)
                if end < 0 and block.endswith(b";"):
                    end = size - 1
                if end < 0:
                    yield ROW, block[pos:]
                    return
                self.in_rows = False
                yield ROW, block[pos : end + 1]
                pos = end + 2
                continue
            nl = block.find(b"\n", pos)
            if nl < 0:
                nl = size
            line = block[pos:nl]
            if line.startswith(b"INSERT INTO ") and not self.in_body:
                match = _INSERT.match(line)
                if match is not None and line.endswith(b";"):
                    # Single-line INSERTs: one per row (how dbfleet dumps) or
                    # extended (MySQL's mysqldump); the run of one table's.
                    self.prefix = line[: match.end()]
                    run_end = self._run_ends.get(self.prefix)
                    if run_end is None:
                        run_end = re.compile(b"\n(?!" + re.escape(self.prefix) + b")")
                        self._run_ends = {self.prefix: run_end}
                    found = run_end.search(block, nl)
                    nl = found.start() if found else size
                    yield INSERTS, block[pos:nl]
                    pos = nl + 1
                    continue
                self.prefix = line[: match.end()] if match else b""
                self.in_rows = match is not None and not line.endswith(b";")
                pos = nl + 1
                yield INSERT, line
                continue
            pos = nl + 1
            yield self.classify(line), line

    def classify(self, line: bytes) -> int:
        if self.in_body:
            if line.startswith(b"DELIMITER ;") and not line.startswith(b"DELIMITER ;;"):
                self.in_body = False
            return BODY
        if line.startswith(b"DELIMITER ;;"):
            self.in_body = True
            return BODY
        if line.startswith(b"-- ") and (b"structure for " in line or b"Dumping " in line):
            for prefix, kind in _MARKERS.items():
                if line.startswith(prefix):
                    self.section = (kind, unquote(line[len(prefix) :]))
                    return MARKER
        return OTHER


def _rows_of_run(run: bytes, prefix: bytes) -> list[bytes]:
    """The rows ``(...)`` of single-line INSERTs ``prefix(...);\n...``."""
    parts = run[len(prefix) : -1].split(b";\n" + prefix)
    if any(b"),(" in p for p in parts):  # extended INSERTs (or a string with "),(")
        return [r for p in parts for r in (_ROW.findall(p) if b"),(" in p else (p,))]
    return parts


def _hash_sum(rows: Iterable[bytes]) -> int:
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    return sum(from_bytes(blake2b(r, digest_size=8).digest(), "little") for r in rows)


@dataclass
class DumpScanner:
    """Reads a dump fed to it in arbitrary pieces (see module docstring)."""

    tables: dict[str, list[int]] = field(default_factory=dict)
    sequences: dict[str, list[int]] = field(default_factory=dict)
    catalog: dict[str, list[str]] = field(
        default_factory=lambda: {
            k: [] for k in ("tables", "sequences", "views", "functions", "procedures", "events")
        }
    )
    requires: dict[str, list[str]] = field(default_factory=dict)
    """Sequences each table's definition uses (``DEFAULT nextval(seq)``)."""
    binlog: dict[str, Any] | None = None
    gtid: str | None = None
    database: str | None = None
    completed: bool = False
    size: int = 0

    def __post_init__(self) -> None:
        self._lines = _Lines()
        self._pending = b""
        self._current: list[int] | None = None
        self._prefix = b""
        self._prefix_table: list[int] | None = None

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        end = data.rfind(b"\n")
        if end < 0:
            self._pending += data
            return
        block = self._pending + data[:end] if self._pending else data[:end]
        self._pending = data[end + 1 :]
        self._scan(block)

    def finish(self) -> None:
        if self._pending:
            self._scan(self._pending)
            self._pending = b""

    def _table(self, name: str) -> list[int]:
        entry = self.tables.get(name)
        if entry is None:
            entry = self.tables[name] = [0, 0]
        return entry

    def _scan(self, block: bytes) -> None:
        state, current = self._lines, self._current
        for kind, piece in state.walk(block):
            if kind == ROW:
                if current is not None:
                    # "(..),\n(..),\n(..);" or a part of it ending with ","
                    rows = piece[:-1].split(b",\n")
                    current[0] += len(rows)
                    current[1] += _hash_sum(rows)
            elif kind in (INSERTS, INSERT):
                current = self._table_of(state.prefix)
                if current is not None and kind == INSERTS:
                    rows = _rows_of_run(piece, state.prefix)
                    current[0] += len(rows)
                    current[1] += _hash_sum(rows)
            elif kind == MARKER:
                self._marker()
            elif kind == OTHER and piece:
                self._other(piece)
        for entry in self.tables.values():
            entry[1] &= _MASK
        self._current = current

    def _table_of(self, prefix: bytes) -> list[int] | None:
        if prefix != self._prefix:
            match = _INSERT.match(prefix)
            self._prefix = prefix
            self._prefix_table = (
                self._table(unquote(b"`" + match.group(1) + b"`")) if match else None
            )
        return self._prefix_table

    def _marker(self) -> None:
        assert self._lines.section is not None
        kind, name = self._lines.section
        if kind == "data":
            self._table(name)
        elif kind in ("table", "sequence", "view"):
            self.catalog[kind + "s"].append(name)

    def _other(self, line: bytes) -> None:
        section = self._lines.section
        if section is not None and section[0] == "table" and b"val(" in line:
            for use in _SEQUENCE_USE.finditer(line):
                needed = self.requires.setdefault(section[1], [])
                if (name := unquote(b"`" + use.group(1) + b"`")) not in needed:
                    needed.append(name)
        if line.startswith(b"-- "):
            if self.binlog is None and (m := _BINLOG.search(line)):
                self.binlog = {"file": m.group(1).decode(), "position": int(m.group(2))}
            elif m := _MARIADB_GTID.match(line):
                self.gtid = m.group(1).decode()
            elif line.startswith(b"-- Dump completed"):
                self.completed = True
            elif self.database is None and (m := _HEADER_DB.match(line)):
                self.database = m.group(1).decode(errors="replace").strip() or None
        elif line.startswith(b"/*!5") and (m := _DROP_ROUTINE.match(line)):
            kind = {b"FUNCTION": "functions", b"PROCEDURE": "procedures", b"EVENT": "events"}
            self.catalog[kind[m.group(1)]].append(unquote(b"`" + m.group(2) + b"`"))
        elif m := _SETVAL.match(line):
            self.sequences[unquote(b"`" + m.group(1) + b"`")] = [int(m.group(2)), int(m.group(3))]
        elif b"GTID_PURGED=" in line and (m := _MYSQL_GTID.search(line)):
            self.gtid = m.group(1).decode()

    def fingerprint(self) -> dict[str, Any]:
        tables = {
            name: {"rows": rows, "digest": f"{digest & _MASK:016x}"}
            for name, (rows, digest) in sorted(self.tables.items())
        }
        return {"tables": tables, "sequences": dict(sorted(self.sequences.items()))}


class ScanTap:
    """A reader over a dump tool's output that feeds a :class:`DumpScanner`
    with the bytes flowing past (for ``StreamSink.write_stream``)."""

    def __init__(self, inner: io.BufferedIOBase, scanner: DumpScanner) -> None:
        self._inner = inner
        self.scanner = scanner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        n = self._inner.readinto(buffer)
        if n:
            self.scanner.feed(bytes(buffer[:n]))
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self.scanner.feed(data)
        return data


_OUT_BATCH = 1 << 20
_JOIN_LIMIT = 1 << 20


def _selected(section: tuple[str, str] | None, tables: frozenset[str]) -> bool:
    return section is None or (section[0] in ("table", "data", "sequence") and section[1] in tables)


def filter_dump(
    chunks: Iterable[bytes],
    *,
    tables: frozenset[str] | None = None,
    source_db: str | None = None,
    strip_definers: bool = False,
) -> Iterator[bytes]:
    """The dump, rewritten for a restore (see module docstring). ``tables``
    keeps the preamble and only those tables' (and sequences') sections,
    which include each table's triggers."""
    state = _Lines()
    qualified = (
        re.compile(rb"(nextval|lastval|setval)\(" + re.escape(quote(source_db).encode()) + rb"\.")
        if source_db
        else None
    )

    def keep(block: bytes) -> Iterator[bytes]:
        for kind, piece in state.walk(block):
            if tables is not None and not _selected(state.section, tables):
                continue
            if kind == INSERTS:
                # One INSERT per row (so that the dump chunks stably): joined
                # into statements of about 1 MiB again for a fast replay.
                joint = b";\n" + state.prefix
                start = 0
                while start < len(piece):
                    cut = piece.find(joint, start + _JOIN_LIMIT)
                    end = len(piece) if cut < 0 else cut + 1
                    yield piece[start:end].replace(joint, b"\n,")
                    start = end + 1
                continue
            if kind in (OTHER, MARKER, BODY):
                if strip_definers and b"DEFINER=" in piece:
                    piece = _DEFINER.sub(b"", piece)
                if qualified is not None and b"val(`" in piece:
                    piece = qualified.sub(rb"\1(", piece)
            yield piece

    pending = b""
    out: list[bytes] = []
    size = 0
    for chunk in chunks:
        end = chunk.rfind(b"\n")
        if end < 0:
            pending += chunk
            continue
        block = pending + chunk[:end] if pending else chunk[:end]
        pending = chunk[end + 1 :]
        for line in keep(block):
            out.append(line)
            size += len(line) + 1
        if size >= _OUT_BATCH:
            yield b"\n".join(out) + b"\n"
            out, size = [], 0
    if pending:
        out.extend(keep(pending))
    if out:
        yield b"\n".join(out) + b"\n"
