"""ClickHouse fingerprints of values whose text 18.16 gets wrong."""

from __future__ import annotations

from collections.abc import Callable

from dbfleet.engines.clickhouse import ClickHouseEngine
from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.registry import engine_for
from dbfleet.repo import Repository
from tests.integration.conftest import BackupFn, restore_as
from tests.integration.fixtures_clickhouse import ClickHouseServer

NewName = Callable[[str], str]

DECIMAL_EXTREMES = (
    "-99999999999999999999999999.999999999999",
    "99999999999999999999999999.999999999999",
    "0.000000000001",
    "-0.000000000001",
    "0",
)


def test_decimal128_extremes_verify_without_a_false_mismatch(
    ch_server: ClickHouseServer, ch_databases: NewName, repo: Repository, backup: BackupFn
) -> None:
    """18.16's toString of a Decimal128(12) near its limits returns garbage
    bytes that depend on how rows sit in blocks: the fingerprint must not go
    through that text (issue #17, defect 6)."""
    db = ch_databases("dec")
    ch_server.query(f"CREATE DATABASE `{db}`")
    ch_server.query(
        f"CREATE TABLE `{db}`.d (id UInt32, d128 Decimal128(12), d64 Decimal64(18),"
        " d32 Decimal32(9), n Nullable(Decimal128(12)), a Array(Decimal128(12)))"
        " ENGINE = MergeTree ORDER BY id"
    )
    for part, value in enumerate(DECIMAL_EXTREMES):  # one part per value, then all together
        ch_server.query(
            f"INSERT INTO `{db}`.d SELECT number + {part * 100} AS id,"
            f" toDecimal128('{value}', 12) AS v, toDecimal64('-0.999999999999999999', 18),"
            " toDecimal32('-0.999999999', 9), if(number % 2 = 0, NULL, v), [v, -v]"
            " FROM system.numbers LIMIT 3"
        )
    engine = engine_for(ch_server.config(db))
    meta, snapshot = backup(engine)
    assert meta.fingerprint is not None
    restored = restore_as(ClickHouseEngine, repo, snapshot, engine.target(ch_databases("dec_rt")))
    # the restored copy holds its rows in one part: other blocks than the source
    assert compare_fingerprints(meta.fingerprint, restored.fingerprint()) == []
    ch_server.query(f"OPTIMIZE TABLE `{db}`.d FINAL")
    assert compare_fingerprints(meta.fingerprint, engine.fingerprint()) == []
