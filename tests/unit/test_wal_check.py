"""``repo check`` over the PostgreSQL WAL archive: holes, damaged objects,
stray names, and which holes matter to a kept base backup."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from repokit import RepoKit

from dbfleet.engines.postgresql.basebackup import KIND as BASE_KIND
from dbfleet.engines.postgresql.wal import list_wal, push_file
from dbfleet.engines.postgresql.wal_check import check_wal_archive, wal_holes
from dbfleet.repo import BackupWriter, Repository, Snapshot
from dbfleet.repo.check import CheckReport

TLI = "00000001"


def seg(log: int, n: int, timeline: str = TLI) -> str:
    return f"{timeline}{log:08X}{n:08X}"


def test_holes_between_segments_of_a_timeline() -> None:
    files = [seg(0, 1), seg(0, 2), seg(0, 5), seg(0, 0xFF), seg(1, 0), seg(1, 1), seg(3, 2)]
    assert wal_holes(files) == [
        (seg(0, 2), seg(0, 5)),
        (seg(0, 5), seg(0, 0xFF)),
        (seg(1, 1), seg(3, 2)),
    ]


def test_timelines_and_other_files_are_judged_apart() -> None:
    files = [
        seg(0, 1), seg(0, 2), seg(0, 3, "00000002"), seg(0, 4, "00000002"),
        "00000002.history", seg(0, 2) + ".00000028.backup", seg(0, 3) + ".partial",
    ]  # fmt: skip
    assert wal_holes(files) == []


def _archive(kit: RepoKit, repo: Repository, tmp_path: Path, names: list[str]) -> None:
    for name in names:
        path = tmp_path / name
        path.write_bytes(name.encode() * 1000)
        push_file(repo, "pg", path)


def _base_backup(repo: Repository, start: str) -> None:
    now = datetime.now(UTC)
    with BackupWriter(repo, workers=1) as writer:
        writer.write_stream("base.tar", io.BytesIO(b"not really a tar"))
        writer.commit(
            Snapshot(
                database="pg",
                engine="postgresql",
                hostname="unit",
                started=now,
                finished=now,
                options={"kind": BASE_KIND},
                consistency_point={"start_wal_file": start},
            )  # fmt: skip
        )


def test_hole_after_a_base_backup_is_an_error_before_it_a_warning(
    kit: RepoKit, tmp_path: Path
) -> None:
    repo = kit.init()
    _archive(kit, repo, tmp_path, [seg(0, 1), seg(0, 3), seg(0, 4), seg(0, 6)])
    _base_backup(repo, seg(0, 4))
    report = CheckReport()
    check_wal_archive(repo, report, read_data=True)
    assert report.wal_files == 4
    assert len(report.errors) == 1 and seg(0, 4) in report.errors[0]
    assert "stops before it" in report.errors[0]
    assert len(report.warnings) == 1 and seg(0, 1) in report.warnings[0]


def test_read_data_finds_a_damaged_object_and_stray_names(kit: RepoKit, tmp_path: Path) -> None:
    repo = kit.init()
    _archive(kit, repo, tmp_path, [seg(0, 1), seg(0, 2)])
    victim = list_wal(repo, "pg")[1]
    sealed = bytearray(repo.storage.get(victim.name))
    sealed[-5] ^= 0x01
    repo.storage.put(victim.name, bytes(sealed))
    repo.storage.put("wal/pg/0000000100000000/notes.txt", b"x")

    quick = CheckReport()
    check_wal_archive(repo, quick)
    assert quick.errors == [] and quick.wal_files == 2
    assert any("notes.txt" in w for w in quick.warnings)

    full = CheckReport()
    check_wal_archive(repo, full, read_data=True)
    assert len(full.errors) == 1 and seg(0, 2) in full.errors[0]


def test_latest_recovery_refuses_a_hole_the_base_backup_needs(kit: RepoKit, tmp_path: Path) -> None:
    from dbfleet.engines.postgresql.pitr import RecoveryTarget, restore_to_datadir
    from dbfleet.engines.postgresql.wal_check import holes_after
    from dbfleet.errors import IntegrityError

    repo = kit.init()
    _archive(kit, repo, tmp_path, [seg(0, 1), seg(0, 3), seg(0, 4), seg(0, 6)])
    _base_backup(repo, seg(0, 3))
    assert holes_after(repo, "pg", seg(0, 3)) == [(seg(0, 4), seg(0, 6))]
    assert holes_after(repo, "pg", seg(0, 6)) == []
    datadir = tmp_path / "restored"
    with pytest.raises(IntegrityError, match="hole after 000000010000000000000004") as refused:
        restore_to_datadir(
            repo, "pg", RecoveryTarget.of(None, None, True), datadir, inventory=tmp_path / "x"
        )
    assert "--accept-wal-gap" in (refused.value.hint or "")
    assert not datadir.exists()  # refused before anything was written
