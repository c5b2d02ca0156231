"""pg_dump custom-format archives: reading the table of contents.

pg_dump's custom format starts with a header and the table of contents
(TOC) of every object, followed by the data. :func:`parse_toc` reads the
TOC (archive versions 1.12 to 1.16, pg_dump 9.0 to 17) so that backups
can fingerprint the dumped sequence values, and restores can select the
entries of single tables (:func:`select_tables`) and order entries so that
``pg_restore --clean`` can drop partitioned indexes
(:func:`drop_safe_order`), for ``pg_restore -L``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dbfleet.errors import UsageError


def split_table(name: str) -> tuple[str, str]:
    """``schema.table`` -> (schema, table); a bare name means ``public``."""
    schema, dot, table = name.partition(".")
    return (schema, table) if dot else ("public", name)


SECTION_PRE_DATA, SECTION_DATA, SECTION_POST_DATA = 2, 3, 4
_MIN_VERSION, _MAX_VERSION = (1, 12), (1, 16)
_SETVAL = re.compile(r"setval\('(?:[^']|'')*',\s*(-?\d+),\s*(true|false)\)")


class ArchiveFormatError(Exception):
    """The bytes are not a pg_dump custom-format archive dbfleet can read."""


class IncompleteArchiveError(ArchiveFormatError):
    """The archive's table of contents continues past the bytes given."""


@dataclass(frozen=True)
class TocEntry:
    dump_id: int
    desc: str
    namespace: str | None
    tag: str
    section: int
    defn: str
    deps: tuple[int, ...]


@dataclass(frozen=True)
class ArchiveToc:
    version: tuple[int, int, int]
    dbname: str | None
    server_version: str | None
    dump_version: str | None
    entries: tuple[TocEntry, ...]

    def sequences(self) -> dict[str, list[Any]]:
        """``{"schema.seq": [last_value, is_called]}`` as the dump sets them."""
        values: dict[str, list[Any]] = {}
        for entry in self.entries:
            match = _SETVAL.search(entry.defn) if entry.desc == "SEQUENCE SET" else None
            if match:
                values[f"{entry.namespace}.{entry.tag}"] = [
                    int(match.group(1)),
                    match.group(2) == "true",
                ]
        return dict(sorted(values.items()))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.int_size = 4

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise IncompleteArchiveError("archive ends inside its table of contents")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def int_(self) -> int:
        negative = self.byte()
        value = int.from_bytes(self.take(self.int_size), "little")
        return -value if negative else value

    def str_(self) -> str | None:
        length = self.int_()
        return None if length < 0 else self.take(length).decode("utf-8", errors="replace")


def parse_toc(data: bytes) -> ArchiveToc:
    """Parse the header and TOC at the start of a custom-format archive."""
    r = _Reader(data)
    if r.take(5) != b"PGDMP":
        raise ArchiveFormatError("not a pg_dump custom-format archive (no PGDMP header)")
    version = (r.byte(), r.byte(), r.byte())
    if not _MIN_VERSION <= version[:2] <= _MAX_VERSION:
        raise ArchiveFormatError(f"archive version {version[0]}.{version[1]} is not supported")
    r.int_size, offset_size, archive_format = r.byte(), r.byte(), r.byte()
    if archive_format != 1:
        raise ArchiveFormatError(f"archive format {archive_format} is not the custom format")
    if version[:2] >= (1, 15):
        r.byte()  # compression algorithm
    else:
        r.int_()  # compression level
    for _ in range(7):  # creation time
        r.int_()
    dbname, server_version, dump_version = r.str_(), r.str_(), r.str_()
    entries = []
    for _ in range(r.int_()):
        dump_id = r.int_()
        r.int_()  # had dumper
        r.str_(), r.str_()  # catalog id: tableoid, oid
        tag, desc = r.str_() or "", r.str_() or ""
        section = r.int_()
        defn = r.str_() or ""
        r.str_(), r.str_()  # drop statement, copy statement
        namespace = r.str_()
        r.str_()  # tablespace
        if version[:2] >= (1, 14):
            r.str_()  # table access method
        if version[:2] >= (1, 16):
            r.int_()  # relkind
        r.str_(), r.str_()  # owner, "with oids"
        deps = []
        while (dep := r.str_()) is not None:
            deps.append(int(dep))
        r.take(1 + offset_size)  # data offset
        entries.append(TocEntry(dump_id, desc, namespace, tag, section, defn, tuple(deps)))
    return ArchiveToc(version, dbname, server_version, dump_version, tuple(entries))


def read_toc(chunks: Iterable[bytes], limit: int = 1 << 28) -> ArchiveToc:
    """Parse the TOC from the first chunks of an archive stream; reads no further."""
    head = bytearray()
    next_try = 1 << 16
    for chunk in chunks:
        head += chunk
        if len(head) >= next_try:
            try:
                return parse_toc(bytes(head))
            except IncompleteArchiveError:
                if len(head) > limit:
                    raise ArchiveFormatError(f"archive TOC larger than {limit} bytes") from None
                next_try = len(head) * 2
    return parse_toc(bytes(head))


class TocTap:
    """A reader over a dump tool's output that parses the archive TOC from the
    bytes flowing past, without holding more than the TOC in memory."""

    def __init__(self, inner: io.BufferedIOBase, limit: int = 1 << 28) -> None:
        self._inner = inner
        self._head: bytearray | None = bytearray()
        self._next_try = 1 << 16
        self._limit = limit
        self.toc: ArchiveToc | None = None
        self.error: str | None = None

    def readinto(self, buffer: memoryview) -> int:
        n = self._inner.readinto(buffer)
        if self._head is not None:
            self._head += buffer[:n]
            if n == 0 or len(self._head) >= self._next_try:
                self._try(final=n == 0)
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        if self._head is not None:
            self._head += data
            if not data or len(self._head) >= self._next_try:
                self._try(final=not data)
        return data

    def _try(self, final: bool) -> None:
        assert self._head is not None
        try:
            self.toc = parse_toc(bytes(self._head))
        except IncompleteArchiveError as exc:
            if not final and len(self._head) <= self._limit:
                self._next_try = len(self._head) * 2
                return
            self.error = str(exc)
        except (ArchiveFormatError, ValueError) as exc:
            self.error = str(exc)
        self._head = None


# TOC entries that belong to a table and travel with it in a table restore.
ATTACHED = {
    "TABLE DATA", "CONSTRAINT", "CHECK CONSTRAINT", "FK CONSTRAINT", "INDEX", "INDEX ATTACH",
    "TABLE ATTACH", "TRIGGER", "POLICY", "ROW SECURITY", "DEFAULT", "COMMENT", "ACL",
    "SECURITY LABEL", "RULE", "STATISTICS", "SEQUENCE OWNED BY", "SEQUENCE SET",
}  # fmt: skip


_INDEX_DESCS = ("INDEX", "CONSTRAINT")


def select_tables(
    toc: ArchiveToc, tables: tuple[str, ...], *, with_prerequisites: bool
) -> list[TocEntry]:
    """The TOC entries a restore of ``tables`` needs, in archive order."""
    by_id = {e.dump_id: e for e in toc.entries}
    selected: set[int] = set()
    for schema, name in map(split_table, tables):
        found = [
            e for e in toc.entries if e.desc == "TABLE" and (e.namespace, e.tag) == (schema, name)
        ]
        if not found:
            raise UsageError(f"table {schema}.{name} is not in the backup")
        selected.update(e.dump_id for e in found)
    tables_selected = set(selected)
    changed = True
    while changed:  # what hangs off the selection, to a fixed point
        changed = False
        for e in toc.entries:
            if e.dump_id in selected:
                continue
            if e.desc in ("TABLE", "SEQUENCE"):  # children, owned and identity sequences
                join = any(d in tables_selected for d in e.deps)
            else:
                join = e.desc in ATTACHED and any(d in selected for d in e.deps)
            if join:
                selected.add(e.dump_id)
                tables_selected.update([e.dump_id] if e.desc == "TABLE" else [])
                changed = True
    if not with_prerequisites:
        # Into existing objects. A partition restored without its parent: ATTACH PARTITION recreates
        # the partition's copies of the parent's indexes, so leave those out.
        for e in toc.entries:
            if e.desc != "INDEX ATTACH" or e.dump_id not in selected:
                continue
            indexes = [d for d in e.deps if d in by_id and by_id[d].desc in _INDEX_DESCS]
            if not all(d in selected for d in indexes):
                selected -= {e.dump_id, *indexes}
    else:
        # Empty target: leave out foreign keys to tables not restored, and add
        # what the selection depends on (definitions only).
        selected -= {
            e.dump_id
            for e in toc.entries
            if e.dump_id in selected and e.desc == "FK CONSTRAINT"
            and not all(d in selected for d in e.deps)
        }  # fmt: skip
        pending = list(selected)
        while pending:
            for dep in by_id[pending.pop()].deps:
                if dep in by_id and dep not in selected:
                    selected.add(dep)
                    pending.append(dep)
    return [e for e in toc.entries if e.dump_id in selected]


def drop_safe_order(entries: list[TocEntry]) -> list[TocEntry]:
    """Move indexes attached to a partitioned parent's index before the
    post-data section, deepest first, so that ``--clean`` (which drops in
    reverse order) drops a parent index before its partitions' indexes."""
    by_id = {e.dump_id: e for e in entries}
    parent_of: dict[int, int] = {}
    for attach in entries:
        if attach.desc != "INDEX ATTACH":
            continue
        indexes = [by_id[d] for d in attach.deps if d in by_id and by_id[d].desc in _INDEX_DESCS]
        child = next(
            (i for i in indexes if i.namespace == attach.namespace
             and (i.tag == attach.tag or i.tag.endswith(" " + attach.tag))),
            None,
        )  # fmt: skip
        parent = next((i for i in indexes if i is not child), None)
        if child and parent:
            parent_of[child.dump_id] = parent.dump_id

    def depth(dump_id: int) -> int:
        seen = 0
        while dump_id in parent_of and seen < len(parent_of):
            dump_id, seen = parent_of[dump_id], seen + 1
        return seen

    if not parent_of:
        return entries
    moved = sorted((e for e in entries if e.dump_id in parent_of), key=lambda e: -depth(e.dump_id))
    rest = [e for e in entries if e.dump_id not in parent_of]
    at = next((i for i, e in enumerate(rest) if e.section == SECTION_POST_DATA), len(rest))
    return rest[:at] + moved + rest[at:]
