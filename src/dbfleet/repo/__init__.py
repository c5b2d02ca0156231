"""The dbfleet repository: chunker, compression, crypto, packs, index, snapshots."""

from dbfleet.repo.reader import iter_stream
from dbfleet.repo.repository import Repository
from dbfleet.repo.snapshot import Snapshot, StreamRef
from dbfleet.repo.writer import BackupWriter, Progress

__all__ = ["BackupWriter", "Progress", "Repository", "Snapshot", "StreamRef", "iter_stream"]
