"""Chinook as a Redis application would keep it (see PROVENANCE.md): hashes
per artist, album, track and customer, each album's tracks as a list,
playlists as sets, sales per genre and top tracks as sorted sets, the
invoice lines as a stream with a consumer group, sessions with TTLs.
Backed up (logical), restored whole and by key pattern, compared through
redis-py, verified by fingerprint."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import redis

from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.redis import RedisEngine
from tests.generated.roundtrip import backed_up, restore_as
from tests.generated.test_redis_generated import contents
from tests.integration.fixtures_redis import RedisServer
from tests.samples.chinook import records

pytestmark = pytest.mark.redis


def _text(value: Any) -> str:
    return "" if value is None else str(value)


ALBUMS = 120
"""Albums kept (of 347), with their tracks, playlist entries and sales: the
keyspace stays about 1500 keys, so the test takes seconds."""


def load(client: redis.Redis) -> None:
    pipe = client.pipeline(transaction=False)
    for artist in records("Artist"):
        pipe.hset(f"artist:{artist['ArtistId']}", mapping={"name": _text(artist["Name"])})
    for album in records("Album")[:ALBUMS]:
        pipe.hset(f"album:{album['AlbumId']}",
                  mapping={"title": album["Title"], "artist": album["ArtistId"]})  # fmt: skip
    genres = {g["GenreId"]: g["Name"] for g in records("Genre")}
    tracks = [t for t in records("Track") if t["AlbumId"] <= ALBUMS]
    kept = {t["TrackId"] for t in tracks}
    for track in tracks:
        pipe.hset(f"track:{track['TrackId']}", mapping={k: _text(v) for k, v in track.items()})
        pipe.rpush(f"album:{track['AlbumId']}:tracks", track["TrackId"])
    for customer in records("Customer"):
        pipe.hset(f"customer:{customer['CustomerId']}",
                  mapping={k: _text(v) for k, v in customer.items()})  # fmt: skip
    for entry in (e for e in records("PlaylistTrack") if e["TrackId"] in kept):
        pipe.sadd(f"playlist:{entry['PlaylistId']}:tracks", entry["TrackId"])
    pipe.sadd("genre:ids", *genres)
    genre_of = {t["TrackId"]: genres.get(t["GenreId"]) for t in tracks}
    sales: dict[str, float] = defaultdict(float)
    sold: dict[int, int] = defaultdict(int)
    invoices = {i["InvoiceId"]: i for i in records("Invoice")}
    for line in (x for x in records("InvoiceLine") if x["TrackId"] in kept):
        invoice = invoices[line["InvoiceId"]]
        sales[genre_of[line["TrackId"]] or "(none)"] += line["UnitPrice"] * line["Quantity"]
        sold[line["TrackId"]] += line["Quantity"]
        fields = {"invoice": invoice["InvoiceId"], "track": line["TrackId"],
                  "price": line["UnitPrice"], "city": _text(invoice["BillingCity"])}  # fmt: skip
        pipe.xadd("sales:lines", fields, id=f"{line['InvoiceLineId']}-1")
    pipe.zadd("sales:by-genre", sales)
    pipe.zadd("sales:top-tracks", {f"track:{t}": n for t, n in sold.items()})
    for customer in records("Customer")[:20]:
        pipe.set(f"session:{customer['Email']}", customer["CustomerId"], ex=3600)
    pipe.execute()
    client.xgroup_create("sales:lines", "billing", id="0")
    client.xreadgroup("billing", "worker-1", {"sales:lines": ">"}, count=25)


def test_chinook_keyspace_round_trip(
    redis_server: RedisServer, redis_dbs: Callable[[], int]
) -> None:
    source, whole_db, subset_db = redis_dbs(), redis_dbs(), redis_dbs()
    load(redis_server.client(source))
    repo, snapshot = backed_up(RedisEngine(redis_server.config(source)))
    assert snapshot.fingerprint is not None
    assert {"track:*", "album:*", "sales:*", "session:*"} <= set(snapshot.fingerprint["tables"])

    whole = restore_as(RedisEngine, repo, snapshot, redis_server.config(whole_db))
    assert contents(redis_server.client(whole_db)) == contents(redis_server.client(source))
    assert compare_fingerprints(snapshot.fingerprint, whole.fingerprint()) == []

    subset = restore_as(RedisEngine, repo, snapshot, redis_server.config(subset_db),
                        tables=("sales:*", "playlist:*"))  # fmt: skip
    expected = contents(
        redis_server.client(source), lambda k: k.startswith((b"sales:", b"playlist:"))
    )
    assert contents(redis_server.client(subset_db)) == expected
    tables = ("sales:*", "playlist:*")
    assert compare_fingerprints(snapshot.fingerprint, subset.fingerprint(tables), tables) == []

    redis_server.client(whole_db).hset("track:77", "UnitPrice", "1.29")
    differences = compare_fingerprints(snapshot.fingerprint, whole.fingerprint())
    assert [d.split(": ")[0] for d in differences] == ["track:*", "types"], differences
