"""A public sample database through backup, verify and table restores: part
of PostgreSQL's own regression database (tests/samples/postgresql, see
tests/samples/PROVENANCE.md). It has multiple inheritance, geometric, array,
jsonb and tsvector data, enums and range types of its own, hash operator
classes and a hash-partitioned table, views (one on a primary key), GIN and
GiST indexes, and the PL/pgSQL "patchfield" schema: triggers keeping tables
consistent and views built on functions.

It is loaded with psql, the way the regression tests load it; everything is
compared through psycopg (independently of dbfleet's fingerprint)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from psycopg import sql

from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.registry import engine_for
from dbfleet.operations.backup import backup_many
from dbfleet.operations.restore import restore_snapshot, verify_snapshot
from tests.integration import conftest as integration
from tests.integration.conftest import PG_PASSWORD_ENV, PgEstate, PgServer
from tests.integration.pg_contents import (
    connect_as_text,
    database_contents,
    differences,
    table_rows,
)

pytestmark = pytest.mark.postgres
pg_server, pg_databases, pg_estate = (  # the fixtures
    integration.pg_server,
    integration.pg_databases,
    integration.pg_estate,
)

SAMPLE = Path(__file__).parent / "postgresql"
SCRIPTS = ("test_setup.sql", "excerpts.sql", "plpgsql_patchfield.sql")
# regress.so (the regression tests' C functions) is not installed.
C_FUNCTION = re.compile(r"CREATE FUNCTION [^;]*AS :'regresslib'[^;]*LANGUAGE C[^;]*;", re.S)
SERVER_COPY = re.compile(
    r"\\set filename :abs_srcdir '(/data/[\w.]+)'\nCOPY (\w+) FROM :'filename';"
)


def _script() -> str:
    """The regression scripts as psql reads them here: without the C
    functions, and reading the data files on the client (the server need
    not see this checkout)."""
    text = "\n".join((SAMPLE / name).read_text() for name in SCRIPTS)
    text = C_FUNCTION.sub("", text)
    return SERVER_COPY.sub(lambda m: f"\\copy {m[2]} FROM '{SAMPLE}{m[1]}'", text)


def _load(server: PgServer, name: str) -> None:
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    conninfo = server.url.rsplit("/", 1)[0] + "/" + name
    loaded = subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-f", "-"],
        input=_script(), text=True, check=False, capture_output=True, timeout=300,
        env={**os.environ, "PGPASSWORD": os.environ[PG_PASSWORD_ENV], "PG_ABS_SRCDIR": str(SAMPLE)},
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr


def test_regression_database_sample(
    pg_server: PgServer, pg_databases: Callable[[str], str], pg_estate: PgEstate
) -> None:
    source, scratch = pg_databases("sample"), pg_databases("sample_scratch")
    _load(pg_server, source)
    repos = pg_estate({"regression": source}, scratch=scratch)
    (backup,) = backup_many(repos, ["regression"])
    assert backup.ok, backup.error

    verified = verify_snapshot(repos, "regression:latest", keep=True)
    assert verified.ok, verified.differences
    with connect_as_text(pg_server, source) as src, connect_as_text(pg_server, scratch) as dst:
        contents = database_contents(src)
        assert differences(contents, database_contents(dst)) == []
        assert contents["tables"]["public.tenk1"]["rows"], "the sample did not load"
        assert {"public.stud_emp", "public.testjsonb", "public.pslot", "public.mchash1"} <= set(
            contents["tables"]
        )
        for kind in ("views", "triggers", "functions", "types", "enum_labels", "indexes"):
            assert contents["catalog"][kind], f"the sample has no {kind}: the test proves nothing"
        # Views and functions work on the copy as on the source.
        for query in (
            "SELECT * FROM pfield_v1 ORDER BY slotname",
            "SELECT * FROM street ORDER BY name, cname",
            "SELECT * FROM toyemp ORDER BY name",
            "SELECT wslot_slotlink_view(slotname) FROM wslot ORDER BY slotname",
        ):
            want, got = src.execute(query).fetchall(), dst.execute(query).fetchall()
            assert want and want == got, query
        # So do the triggers: the same change cascades the same way.
        for conn in (src, dst):
            conn.execute("UPDATE pfield SET name = 'PF0_X' WHERE name = 'PF0_2'")
            conn.execute("DELETE FROM room WHERE roomno = '102'")
        for table in ("pslot", "wslot", "room"):
            assert table_rows(src, "public", table) == table_rows(dst, "public", table)

    # A table with inheritance children (one of them with two parents).
    _, snapshot = repos.locate("regression:latest")
    assert snapshot.fingerprint is not None
    target = pg_databases("sample_person")
    restore_snapshot(repos, "regression:latest", target=target, tables=("public.person",))
    engine = engine_for(repos.inventory.databases["regression"])
    restored = engine_for(engine.target(target)).fingerprint()
    assert set(restored["tables"]) == {
        "public.person",
        "public.emp",
        "public.student",
        "public.stud_emp",
    }
    assert compare_fingerprints(snapshot.fingerprint, restored, tuple(restored["tables"])) == []
    with connect_as_text(pg_server, source) as src, connect_as_text(pg_server, target) as dst:
        for table in restored["tables"]:
            assert table_rows(src, "public", table.split(".")[1]) == table_rows(
                dst, "public", table.split(".")[1]
            )
