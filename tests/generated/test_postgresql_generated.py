"""Generated PostgreSQL databases (see :mod:`tests.generated.pg_cases`) through
backup, verify and table restores against the real test server.

For each case: backup -> ``verify`` (restore into scratch, fingerprints
equal) -> every row and catalog entry of the scratch copy equals the
source's, read as text with psycopg (independent of dbfleet's fingerprint) ->
the first, middle and last table of the dump restored alone equal the
source's -> one value changed in the scratch copy: the fingerprint comparison
names exactly that table (and its partitioned parent)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from psycopg import sql

from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.postgresql.archive import read_toc
from dbfleet.engines.registry import engine_for
from dbfleet.operations.backup import backup_many
from dbfleet.operations.restore import restore_snapshot, verify_snapshot
from dbfleet.repo import iter_stream
from tests.conftest import generated_examples
from tests.generated.pg_cases import Case, TableSpec, case_types, cases, everything, statements
from tests.generated.pg_types import builtin
from tests.integration import conftest as integration
from tests.integration.conftest import DatabaseNames, PgEstate, PgServer
from tests.integration.pg_contents import (
    connect_as_text,
    database_contents,
    differences,
    table_rows,
)

pytestmark = pytest.mark.postgres
pg_server, pg_estate = integration.pg_server, integration.pg_estate  # the fixtures


def _create(server: PgServer, name: str, case: Case) -> None:
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with connect_as_text(server, name) as conn, conn.transaction():
        for statement in statements(case):
            conn.execute(statement.encode())


def _dump_order(repos: Any) -> list[str]:
    """The tables whose rows the dump holds, in the dump's order."""
    repo, snapshot = repos.locate("src:latest")
    toc = read_toc(iter_stream(repo, snapshot, "dump"))
    return [f"{e.namespace}.{e.tag}" for e in toc.entries if e.desc == "TABLE DATA"]


def _mutate(server: PgServer, name: str, case: Case) -> set[str]:
    """Change one value (NULL <-> a value) in one table of database ``name``;
    the fingerprint entries that must change."""
    candidates = []
    with connect_as_text(server, name) as conn:
        for table in case.tables:
            for physical, parent in case.physical(table):
                ident = sql.Identifier(case.schema, physical)
                count = conn.execute(
                    sql.SQL("SELECT count(*) FROM ONLY {}").format(ident)
                ).fetchone()
                if table.columns and count and int(count[0]):
                    candidates.append((table, physical, parent))
        if not candidates:
            return set()
        table, physical, parent = candidates[case.mutate % len(candidates)]
        column, typ = table.columns[case.mutate % len(table.columns)]
        value = typ.extreme_values()[0] if typ.extremes else None
        assert value is not None
        update = sql.SQL(
            "UPDATE ONLY {t} SET {c} = CASE WHEN {c} IS NULL THEN {v} END"
            " WHERE ctid = (SELECT ctid FROM ONLY {t} LIMIT 1)"
        ).format(
            t=sql.Identifier(case.schema, physical), c=sql.Identifier(column), v=sql.SQL(value)
        )
        conn.execute(update)
    return {case.qualified(physical)} | ({case.qualified(parent)} if parent else set())


def _table_restores(
    repos: Any, server: PgServer, dbs: DatabaseNames, source: str, snapshot_fp: dict[str, Any]
) -> None:
    order = _dump_order(repos)
    assert order, "the dump holds no table data"
    chosen = dict.fromkeys([order[0], order[len(order) // 2], order[-1]])
    engine = engine_for(repos.inventory.databases["src"])
    for i, table in enumerate(chosen):
        target = dbs(f"gen_table{i}")
        restore_snapshot(repos, "src:latest", target=target, tables=(table,))
        schema, _, name = table.partition(".")
        with connect_as_text(server, source) as src, connect_as_text(server, target) as dst:
            found = differences(
                {"tables": {table: table_rows(src, schema, name)}, "catalog": {}},
                {"tables": {table: table_rows(dst, schema, name)}, "catalog": {}},
            )
            assert not found, "\n".join(found)
        restored = engine_for(engine.target(target)).fingerprint()
        assert compare_fingerprints(snapshot_fp, restored, (table,)) == [], table


def run_case(server: PgServer, estate: PgEstate, case: Case) -> None:
    dbs = DatabaseNames()
    try:
        source, scratch = dbs("gen_src"), dbs("gen_scratch")
        with server.connect() as conn:
            available = {n for (n,) in conn.execute("SELECT name FROM pg_available_extensions")}
        case = case.without(available)
        _create(server, source, case)
        repos = estate({"src": source}, scratch=scratch)
        (backup,) = backup_many(repos, ["src"])
        assert backup.ok, backup.error

        verified = verify_snapshot(repos, "src:latest", keep=True)
        assert verified.ok, verified.differences
        with connect_as_text(server, source) as src, connect_as_text(server, scratch) as dst:
            found = differences(database_contents(src), database_contents(dst))
            assert not found, "\n".join(found)

        _, snapshot = repos.locate("src:latest")
        assert snapshot.fingerprint is not None
        _table_restores(repos, server, dbs, source, snapshot.fingerprint)

        changed = _mutate(server, scratch, case)
        engine = engine_for(repos.inventory.databases["src"])
        after = engine_for(engine.target(scratch)).fingerprint()
        named = {d.split(": ")[0] for d in compare_fingerprints(snapshot.fingerprint, after)}
        assert named == changed
    finally:
        dbs.drop(server.drop_database)


# Found by the deep profile: numeric NaN hashed like NULL (fingerprint blind to it).
NAN_LIKE_NULL = Case(
    case_types("public", "select_enum", ("select",), ("pg_class",)),
    (TableSpec("0", "plain", (("select", builtin("numeric")), ("User", builtin("smallint"))),
               ((None, None),), (0,)),),
)  # fmt: skip


@settings(max_examples=generated_examples(5))
@given(case=cases())
@example(case=everything())
@example(case=NAN_LIKE_NULL)
def test_generated_database_round_trip(
    pg_server: PgServer, pg_estate: PgEstate, case: Case
) -> None:
    run_case(pg_server, pg_estate, case)
