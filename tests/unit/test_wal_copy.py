"""The WAL archive goes along with ``copy``: only files the destination lacks,
re-sealed under the destination's key, byte-identical when fetched there."""

from __future__ import annotations

from pathlib import Path

from repokit import RepoKit

from dbfleet.engines.postgresql.wal import (
    archived_databases,
    copy_archive,
    list_wal,
    load,
    push_file,
)


def _segment(n: int) -> str:
    return f"00000001000000000000{n:04X}"


def test_copy_archive_copies_what_is_missing_and_reads_back(kit: RepoKit, tmp_path: Path) -> None:
    source, destination = kit.init(), kit.init(passphrase="another passphrase")
    originals = {}
    for n in range(1, 5):
        path = tmp_path / _segment(n)
        path.write_bytes(bytes([n]) * 50_000 + path.name.encode())
        originals[path.name] = path.read_bytes()
        push_file(source, "app pg/x", path)
    push_file(destination, "app pg/x", tmp_path / _segment(1))  # already there

    first = copy_archive(source, destination, "app pg/x", "offsite")
    assert (first.wal_files, first.copied_files) == (4, 3) and first.added_bytes > 0
    assert archived_databases(destination) == ["app pg/x"]
    assert [o.file for o in list_wal(destination, "app pg/x")] == sorted(originals)
    for file, data in originals.items():
        assert load(destination, "app pg/x", file) == data
    again = copy_archive(source, destination, "app pg/x", "offsite")
    assert (again.copied_files, again.added_bytes) == (0, 0)
