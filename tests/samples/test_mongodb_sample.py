"""Chinook as documents (see PROVENANCE.md): albums with their tracks
embedded, invoices with their lines, customers with their support
representative, playlists with arrays of track ids, and the artists;
indexes on the fields an application queries. Backed up with mongodump,
restored whole and one collection alone,
compared through pymongo, verified by fingerprint."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.mongodb import MongoDBEngine
from tests.generated.roundtrip import backed_up, restore_as
from tests.generated.test_mongodb_generated import _client, contents
from tests.integration.fixtures_mongodb import MongoServer
from tests.samples.chinook import records

COLLECTIONS = ["albums", "artists", "customers", "invoices", "playlists"]
ALBUMS = 60
"""Albums kept (of 347) with their tracks; FerretDB writes slowly."""


def _date(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def documents() -> dict[str, list[dict[str, Any]]]:
    tracks: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for track in records("Track"):
        album = track.pop("AlbumId")
        if album > ALBUMS:
            continue
        tracks[album].append({"_id": track.pop("TrackId"), **track})
    albums = [{"_id": a["AlbumId"], "title": a["Title"], "artist": a["ArtistId"],
               "tracks": tracks[a["AlbumId"]]} for a in records("Album")[:ALBUMS]]  # fmt: skip
    employees = {e["EmployeeId"]: e for e in records("Employee")}
    customers = []
    for customer in records("Customer"):
        rep = employees.get(customer.pop("SupportRepId"))
        customers.append({"_id": customer.pop("CustomerId"), **customer, "support": None if rep
                          is None else {k: _date(v) if k.endswith("Date") else v
                                        for k, v in rep.items()}})  # fmt: skip
    lines: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in records("InvoiceLine"):
        lines[line.pop("InvoiceId")].append(line)
    invoices = [{"_id": i["InvoiceId"], **{k: v for k, v in i.items() if k != "InvoiceId"},
                 "InvoiceDate": _date(i["InvoiceDate"]), "lines": lines[i["InvoiceId"]]}
                for i in records("Invoice")]  # fmt: skip
    members: dict[int, list[int]] = defaultdict(list)
    for entry in records("PlaylistTrack"):
        members[entry["PlaylistId"]].append(entry["TrackId"])
    playlists = [{"_id": p["PlaylistId"], "name": p["Name"], "tracks": members[p["PlaylistId"]]}
                 for p in records("Playlist")]  # fmt: skip
    artists = [{"_id": a["ArtistId"], "name": a["Name"]} for a in records("Artist")]
    return {"albums": albums, "artists": artists, "customers": customers,
            "invoices": invoices, "playlists": playlists}  # fmt: skip


def load(server: MongoServer, db: str) -> None:
    with _client(server) as client:
        database = client[db]
        for name, docs in documents().items():
            database[name].insert_many(docs)
        database.albums.create_index([("artist", ASCENDING)])
        database.albums.create_index([("tracks.GenreId", ASCENDING), ("title", DESCENDING)])
        database.customers.create_index("Email", unique=True)
        database.invoices.create_index([("CustomerId", ASCENDING), ("InvoiceDate", DESCENDING)])


def test_chinook_documents_round_trip(
    mongo_server: MongoServer, mongo_databases: Callable[[str], str]
) -> None:
    source = mongo_databases("chinook")
    load(mongo_server, source)
    repo, snapshot = backed_up(MongoDBEngine(mongo_server.config(source)))
    assert snapshot.fingerprint is not None
    assert sorted(snapshot.fingerprint["tables"]) == COLLECTIONS
    before = contents(mongo_server, source)

    whole_db = mongo_databases("chinookr")
    whole = restore_as(MongoDBEngine, repo, snapshot, mongo_server.config(whole_db))
    assert contents(mongo_server, whole_db) == before
    assert compare_fingerprints(snapshot.fingerprint, whole.fingerprint()) == []
    with _client(mongo_server) as client:
        client[whole_db].invoices.update_one({"_id": 98}, {"$inc": {"lines.0.Quantity": 1}})
    differences = compare_fingerprints(snapshot.fingerprint, whole.fingerprint())
    assert [d.split(": ")[0] for d in differences] == ["invoices"], differences

    for collection in (COLLECTIONS[2],):  # the generated suite takes first, middle and last
        subset_db = mongo_databases("chinooks")
        subset = restore_as(MongoDBEngine, repo, snapshot, mongo_server.config(subset_db),
                            tables=(collection,))  # fmt: skip
        assert contents(mongo_server, subset_db) == {collection: before[collection]}
        tables = (collection,)
        assert compare_fingerprints(snapshot.fingerprint, subset.fingerprint(tables), tables) == []
