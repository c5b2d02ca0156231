"""The Chinook sample database in SQLite (schema as Chinook_Sqlite.sql
defines it: NVARCHAR/NUMERIC/DATETIME columns, composite primary key,
foreign keys, their indexes), plus what real SQLite applications add to
it: a view, a trigger, an FTS5 index over the tracks, an AUTOINCREMENT
table whose counter runs ahead, ``PRAGMA user_version``. Backed up,
restored whole and table by table, compared through sqlite3, verified by
fingerprint."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from dbfleet.config import DatabaseConfig
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.sqlite import SQLiteEngine
from tests.generated.roundtrip import backed_up, restore_as
from tests.samples.chinook import chinook

SCHEMA = """
CREATE TABLE [Album] ([AlbumId] INTEGER NOT NULL, [Title] NVARCHAR(160) NOT NULL,
    [ArtistId] INTEGER NOT NULL, CONSTRAINT [PK_Album] PRIMARY KEY ([AlbumId]),
    FOREIGN KEY ([ArtistId]) REFERENCES [Artist] ([ArtistId])
    ON DELETE NO ACTION ON UPDATE NO ACTION);
CREATE TABLE [Artist] ([ArtistId] INTEGER NOT NULL, [Name] NVARCHAR(120),
    CONSTRAINT [PK_Artist] PRIMARY KEY ([ArtistId]));
CREATE TABLE [Customer] ([CustomerId] INTEGER NOT NULL, [FirstName] NVARCHAR(40) NOT NULL,
    [LastName] NVARCHAR(20) NOT NULL, [Company] NVARCHAR(80), [Address] NVARCHAR(70),
    [City] NVARCHAR(40), [State] NVARCHAR(40), [Country] NVARCHAR(40), [PostalCode] NVARCHAR(10),
    [Phone] NVARCHAR(24), [Fax] NVARCHAR(24), [Email] NVARCHAR(60) NOT NULL, [SupportRepId] INTEGER,
    CONSTRAINT [PK_Customer] PRIMARY KEY ([CustomerId]),
    FOREIGN KEY ([SupportRepId]) REFERENCES [Employee] ([EmployeeId]));
CREATE TABLE [Employee] ([EmployeeId] INTEGER NOT NULL, [LastName] NVARCHAR(20) NOT NULL,
    [FirstName] NVARCHAR(20) NOT NULL, [Title] NVARCHAR(30), [ReportsTo] INTEGER,
    [BirthDate] DATETIME, [HireDate] DATETIME, [Address] NVARCHAR(70), [City] NVARCHAR(40),
    [State] NVARCHAR(40), [Country] NVARCHAR(40), [PostalCode] NVARCHAR(10), [Phone] NVARCHAR(24),
    [Fax] NVARCHAR(24), [Email] NVARCHAR(60), CONSTRAINT [PK_Employee] PRIMARY KEY ([EmployeeId]),
    FOREIGN KEY ([ReportsTo]) REFERENCES [Employee] ([EmployeeId]));
CREATE TABLE [Genre] ([GenreId] INTEGER NOT NULL, [Name] NVARCHAR(120),
    CONSTRAINT [PK_Genre] PRIMARY KEY ([GenreId]));
CREATE TABLE [Invoice] ([InvoiceId] INTEGER NOT NULL, [CustomerId] INTEGER NOT NULL,
    [InvoiceDate] DATETIME NOT NULL, [BillingAddress] NVARCHAR(70), [BillingCity] NVARCHAR(40),
    [BillingState] NVARCHAR(40), [BillingCountry] NVARCHAR(40), [BillingPostalCode] NVARCHAR(10),
    [Total] NUMERIC(10,2) NOT NULL, CONSTRAINT [PK_Invoice] PRIMARY KEY ([InvoiceId]),
    FOREIGN KEY ([CustomerId]) REFERENCES [Customer] ([CustomerId]));
CREATE TABLE [InvoiceLine] ([InvoiceLineId] INTEGER NOT NULL, [InvoiceId] INTEGER NOT NULL,
    [TrackId] INTEGER NOT NULL, [UnitPrice] NUMERIC(10,2) NOT NULL, [Quantity] INTEGER NOT NULL,
    CONSTRAINT [PK_InvoiceLine] PRIMARY KEY ([InvoiceLineId]),
    FOREIGN KEY ([InvoiceId]) REFERENCES [Invoice] ([InvoiceId]),
    FOREIGN KEY ([TrackId]) REFERENCES [Track] ([TrackId]));
CREATE TABLE [MediaType] ([MediaTypeId] INTEGER NOT NULL, [Name] NVARCHAR(120),
    CONSTRAINT [PK_MediaType] PRIMARY KEY ([MediaTypeId]));
CREATE TABLE [Playlist] ([PlaylistId] INTEGER NOT NULL, [Name] NVARCHAR(120),
    CONSTRAINT [PK_Playlist] PRIMARY KEY ([PlaylistId]));
CREATE TABLE [PlaylistTrack] ([PlaylistId] INTEGER NOT NULL, [TrackId] INTEGER NOT NULL,
    CONSTRAINT [PK_PlaylistTrack] PRIMARY KEY ([PlaylistId], [TrackId]),
    FOREIGN KEY ([PlaylistId]) REFERENCES [Playlist] ([PlaylistId]),
    FOREIGN KEY ([TrackId]) REFERENCES [Track] ([TrackId]));
CREATE TABLE [Track] ([TrackId] INTEGER NOT NULL, [Name] NVARCHAR(200) NOT NULL,
    [AlbumId] INTEGER, [MediaTypeId] INTEGER NOT NULL, [GenreId] INTEGER,
    [Composer] NVARCHAR(220), [Milliseconds] INTEGER NOT NULL, [Bytes] INTEGER,
    [UnitPrice] NUMERIC(10,2) NOT NULL, CONSTRAINT [PK_Track] PRIMARY KEY ([TrackId]),
    FOREIGN KEY ([AlbumId]) REFERENCES [Album] ([AlbumId]),
    FOREIGN KEY ([GenreId]) REFERENCES [Genre] ([GenreId]),
    FOREIGN KEY ([MediaTypeId]) REFERENCES [MediaType] ([MediaTypeId]));
CREATE INDEX [IFK_AlbumArtistId] ON [Album] ([ArtistId]);
CREATE INDEX [IFK_CustomerSupportRepId] ON [Customer] ([SupportRepId]);
CREATE INDEX [IFK_EmployeeReportsTo] ON [Employee] ([ReportsTo]);
CREATE INDEX [IFK_InvoiceCustomerId] ON [Invoice] ([CustomerId]);
CREATE INDEX [IFK_InvoiceLineInvoiceId] ON [InvoiceLine] ([InvoiceId]);
CREATE INDEX [IFK_InvoiceLineTrackId] ON [InvoiceLine] ([TrackId]);
CREATE INDEX [IFK_PlaylistTrackTrackId] ON [PlaylistTrack] ([TrackId]);
CREATE INDEX [IFK_TrackAlbumId] ON [Track] ([AlbumId]);
CREATE INDEX [IFK_TrackGenreId] ON [Track] ([GenreId]);
CREATE INDEX [IFK_TrackMediaTypeId] ON [Track] ([MediaTypeId]);
"""
# What applications put next to such a schema.
EXTRAS = """
CREATE VIEW [InvoiceTotals] AS SELECT i.InvoiceId, sum(l.UnitPrice * l.Quantity) AS Total
    FROM Invoice i JOIN InvoiceLine l USING (InvoiceId) GROUP BY i.InvoiceId;
CREATE TABLE [AuditLog] ([Id] INTEGER PRIMARY KEY AUTOINCREMENT, [At] TEXT, [What] TEXT);
CREATE TRIGGER [TrackPriceAudit] AFTER UPDATE OF UnitPrice ON Track
    BEGIN INSERT INTO AuditLog (At, What) VALUES ('now', 'price of ' || NEW.TrackId); END;
CREATE VIRTUAL TABLE [TrackSearch] USING fts5(Name, Composer, content='Track',
    content_rowid='TrackId');
INSERT INTO TrackSearch (rowid, Name, Composer) SELECT TrackId, Name, Composer FROM Track;
UPDATE Track SET UnitPrice = 1.29 WHERE TrackId <= 30;
DELETE FROM AuditLog WHERE Id > 20;
PRAGMA user_version = 14;
"""


def build(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(SCHEMA)
        for table, data in chinook().items():
            marks = ", ".join("?" * len(data["columns"]))
            conn.executemany(f"INSERT INTO [{table}] VALUES ({marks})", data["rows"])
        conn.commit()
        conn.executescript(EXTRAS)


def everything(path: Path, tables: list[str] | None = None) -> dict[str, Any]:
    """sqlite_master, every table's rows with their rowids, sqlite_sequence
    and user_version, through sqlite3 (``tables``: only those tables)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        schema = sorted(
            (t, n, sql) for t, n, tb, sql in
            conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
            if tables is None or (tb in tables and t != "view")
        )  # fmt: skip
        names = [n for t, n, _ in schema if t == "table" and not n.startswith("sqlite_")]
        rows = {}
        for name in names:
            select = "SELECT * FROM" if name.startswith("TrackSearch_") else "SELECT rowid, * FROM"
            rows[name] = sorted(map(repr, conn.execute(f"{select} [{name}]")))
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")
        sequence = (
            sorted(conn.execute("SELECT * FROM sqlite_sequence")) if exists.fetchone() else []
        )
        version = conn.execute("PRAGMA user_version").fetchone()[0] if tables is None else None
    if tables is not None:
        sequence = [s for s in sequence if s[0] in tables]
    return {"schema": schema, "rows": rows, "sequence": sequence, "user_version": version}


def test_chinook_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "chinook.db"
    build(source)
    with closing(sqlite3.connect(source)) as conn:
        assert conn.execute("SELECT count(*) FROM Track").fetchone()[0] == 3503
        assert conn.execute("SELECT count(*) FROM PlaylistTrack").fetchone()[0] == 8715
    repo, snapshot = backed_up(SQLiteEngine(DatabaseConfig(engine="sqlite", path=source)))
    assert snapshot.fingerprint is not None

    target = DatabaseConfig(engine="sqlite", path=tmp_path / "restored.db")
    restored = restore_as(SQLiteEngine, repo, snapshot, target)
    assert everything(tmp_path / "restored.db") == everything(source)
    assert compare_fingerprints(snapshot.fingerprint, restored.fingerprint()) == []
    with closing(sqlite3.connect(tmp_path / "restored.db")) as conn:
        hits = conn.execute("SELECT rowid FROM TrackSearch WHERE TrackSearch MATCH 'Angus'")
        assert len(hits.fetchall()) > 0  # the full-text index came along, and works

    with closing(sqlite3.connect(tmp_path / "restored.db")) as conn, conn:
        conn.execute("UPDATE Invoice SET Total = Total + 0.01 WHERE InvoiceId = 200")
    differences = compare_fingerprints(snapshot.fingerprint, restored.fingerprint())
    assert [d.split(":")[0] for d in differences] == ["Invoice"]


@pytest.mark.parametrize("table", ["Album", "AuditLog", "PlaylistTrack", "Track"])
def test_chinook_table_restore(tmp_path: Path, table: str) -> None:
    source = tmp_path / "chinook.db"
    build(source)
    repo, snapshot = backed_up(SQLiteEngine(DatabaseConfig(engine="sqlite", path=source)))
    assert snapshot.fingerprint is not None
    target = tmp_path / f"{table}.db"
    subset = restore_as(SQLiteEngine, repo, snapshot, DatabaseConfig(engine="sqlite", path=target),
                        tables=(table,))  # fmt: skip
    assert everything(target, [table]) == everything(source, [table])
    assert compare_fingerprints(snapshot.fingerprint, subset.fingerprint((table,)), (table,)) == []
