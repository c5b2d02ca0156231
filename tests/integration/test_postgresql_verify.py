"""``verify`` of PostgreSQL snapshots whose restored copies differ in how the
server stores the same data: OIDs renumbered, columns recreated in another
order. Equal data must verify; a changed value must still be found."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from psycopg import sql

from dbfleet.engines.fingerprints import compare_fingerprints
from dbfleet.engines.registry import engine_for
from dbfleet.errors import EngineError
from dbfleet.operations.backup import backup_many
from dbfleet.operations.restore import restore_snapshot, verify_snapshot
from tests.integration.conftest import PgEstate, PgServer

pytestmark = pytest.mark.postgres

NewName = Callable[[str], str]


def _database(server: PgServer, name: str, script: str) -> None:
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with server.connect(name) as conn, conn.cursor() as cur:
        cur.execute(script.encode())  # several statements: simple query protocol


OID_VALUED = """
CREATE TABLE reg (id int PRIMARY KEY, tbl regclass, typ regtype);
INSERT INTO reg VALUES (1, 'reg', 'int4'), (2, 'pg_class', 'reg');
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN table_ref AS regclass;
CREATE TYPE pair AS (m mood, t regtype);
CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2';
CREATE SCHEMA other;
CREATE TABLE other.everything (
    id int PRIMARY KEY, m mood, moods mood[], r table_ref, p pair, pairs pair[],
    rp regproc, rpd regprocedure, ro regoper, rop regoperator, rc regconfig,
    rd regdictionary, rn regnamespace, rr regrole, rco regcollation, rs regclass[],
    plain oid
);
INSERT INTO other.everything VALUES
    (1, 'ok', '{happy,NULL,sad}', 'reg', ('sad', 'mood'), ARRAY[('ok', 'pair')::pair],
     'twice', 'twice(int)', '||/', '+(integer,integer)', 'english', 'simple', 'other',
     current_user::regrole, '"C"', '{reg,other.everything}', 12345),
    (2, NULL, '{}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, 4294967295);
CREATE TABLE moods (m mood, note json);  -- json: the text method
INSERT INTO moods VALUES ('happy', '{"a": 1}'), ('sad', NULL);
"""


def test_verify_passes_for_oid_valued_columns(
    pg_server: PgServer, pg_databases: NewName, pg_estate: PgEstate
) -> None:
    name = pg_databases("oids")
    _database(pg_server, name, OID_VALUED)
    repos = pg_estate({"src": name})
    (result,) = backup_many(repos, ["src"])
    assert result.ok, result.error
    verified = verify_snapshot(repos, "src:latest")
    assert verified.ok, verified.differences

    # The digest still sees the values: another table or enum label is a change.
    copy = pg_databases("oids_copy")
    restore_snapshot(repos, "src:latest", target=copy)
    _, snapshot = repos.locate("src:latest")
    engine = engine_for(repos.inventory.databases["src"])
    copied = engine_for(engine.target(copy))
    assert compare_fingerprints(snapshot.fingerprint or {}, copied.fingerprint()) == []
    with pg_server.connect(copy) as conn:
        conn.execute("UPDATE reg SET tbl = 'other.everything' WHERE id = 1")
        conn.execute("UPDATE other.everything SET m = 'happy' WHERE id = 1")
        conn.execute("UPDATE moods SET m = 'ok' WHERE m = 'sad'")
    differences = compare_fingerprints(snapshot.fingerprint or {}, copied.fingerprint())
    assert [d.split(":")[0] for d in differences] == [
        "other.everything",
        "public.moods",
        "public.reg",
    ]


INHERITANCE = """
CREATE TABLE parent (a int, b text);
CREATE TABLE child (c int) INHERITS (parent);
ALTER TABLE parent ADD COLUMN d date;  -- the child has it after c; a restore puts it before
CREATE TABLE other_parent (e text, a int);
CREATE TABLE grandchild (f int, c int) INHERITS (child, other_parent);
INSERT INTO child VALUES (1, 'one', 10, '2024-01-01'), (2, NULL, 20, NULL);
INSERT INTO grandchild (a, b, c, d, e, f) VALUES (3, 'three', 30, '2024-03-03', 'e', 300);
CREATE TABLE events (at date, kind text, id int) PARTITION BY RANGE (at);
CREATE TABLE events_2024 (id int, kind text, at date);  -- another order, then attached
ALTER TABLE events ATTACH PARTITION events_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO events VALUES ('2024-05-05', 'x', 1), ('2024-06-06', NULL, 2);
"""


def test_verify_passes_for_inheritance_children_recreated_in_another_column_order(
    pg_server: PgServer, pg_databases: NewName, pg_estate: PgEstate
) -> None:
    name = pg_databases("inherit")
    _database(pg_server, name, INHERITANCE)
    repos = pg_estate({"src": name})
    (result,) = backup_many(repos, ["src"])
    assert result.ok, result.error
    verified = verify_snapshot(repos, "src:latest")
    assert verified.ok, verified.differences

    copy = pg_databases("inherit_copy")
    restore_snapshot(repos, "src:latest", target=copy)
    order = (
        "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
    )
    with pg_server.connect(name) as src, pg_server.connect(copy) as dst:
        for table in ("child", "grandchild"):
            before, after = (
                src.execute(order, (table,)).fetchone(),
                dst.execute(order, (table,)).fetchone(),
            )
            assert before != after, f"{table}: the restore kept its order, the test proves nothing"
        dst.execute("UPDATE grandchild SET d = d + 1")
    _, snapshot = repos.locate("src:latest")
    copied = engine_for(engine_for(repos.inventory.databases["src"]).target(copy))
    differences = compare_fingerprints(snapshot.fingerprint or {}, copied.fingerprint())
    assert [d.split(":")[0] for d in differences] == ["public.grandchild"]


def test_table_restore_of_rows_that_name_another_table_says_what_to_do(
    pg_server: PgServer, pg_databases: NewName, pg_estate: PgEstate
) -> None:
    # A regclass value names a table by name; the dump records no dependency.
    name = pg_databases("names")
    _database(pg_server, name, "CREATE TABLE b (id int); CREATE TABLE a (r regclass);"
                               " INSERT INTO a VALUES ('b');")  # fmt: skip
    repos = pg_estate({"src": name})
    (result,) = backup_many(repos, ["src"])
    assert result.ok, result.error
    target = pg_databases("names_a")
    with pytest.raises(EngineError, match='relation "public.b" does not exist') as failure:
        restore_snapshot(repos, "src:latest", target=target, tables=("public.a",))
    assert failure.value.hint and "restore those too" in failure.value.hint
    restore_snapshot(repos, "src:latest", target=target, tables=("public.a", "public.b"))


NUMERIC_SPECIALS = """
CREATE TABLE plain (id int, v numeric);  -- no special values: hashed as ever
INSERT INTO plain VALUES (1, 1.5), (2, NULL);
CREATE TABLE specials (id int, v numeric, vs numeric[], r numrange);
INSERT INTO specials VALUES (1, 'NaN', '{1,NaN}', '[1,Infinity)'), (2, 'Infinity', NULL, NULL),
    (3, '-Infinity', '{NULL}', '(,2]'), (4, NULL, '{-Infinity}', 'empty');
"""


def test_numeric_nan_and_infinities_are_told_apart(
    pg_server: PgServer, pg_databases: NewName, pg_estate: PgEstate
) -> None:
    # numeric's own hash gives NaN, Infinity, -Infinity and NULL the same hash.
    name = pg_databases("specials")
    _database(pg_server, name, NUMERIC_SPECIALS)
    repos = pg_estate({"src": name})
    (result,) = backup_many(repos, ["src"])
    assert result.ok, result.error
    verified = verify_snapshot(repos, "src:latest")
    assert verified.ok, verified.differences
    _, snapshot = repos.locate("src:latest")
    assert snapshot.fingerprint is not None
    with pg_server.connect(name) as conn:
        (old_digest,) = conn.execute(
            "SELECT sum(hash_record_extended(p, 0))::numeric FROM ONLY plain p"
        ).fetchone() or (None,)
    assert snapshot.fingerprint["tables"]["public.plain"]["digest"] == str(old_digest)

    copy_name = pg_databases("specials_copy")
    copy = engine_for(engine_for(repos.inventory.databases["src"]).target(copy_name))
    changed = ["public.specials"]
    for change, expected in (
        ("UPDATE specials SET v = 'Infinity' WHERE id = 1", changed),  # NaN -> Infinity
        ("UPDATE specials SET v = NULL WHERE id = 2", changed),  # Infinity -> NULL
        ("UPDATE specials SET v = 'NaN' WHERE id = 4", changed),  # NULL -> NaN
        ("UPDATE specials SET vs = '{1,Infinity}' WHERE id = 1", changed),  # in an array
        ("UPDATE specials SET vs = '{NaN}' WHERE id = 3", changed),  # NULL element -> NaN
        ("UPDATE specials SET v = v, vs = vs, r = r", []),  # the same values
    ):
        copy.drop()
        restore_snapshot(repos, "src:latest", target=copy_name)
        with pg_server.connect(copy_name) as conn:
            conn.execute(change)
        differences = compare_fingerprints(snapshot.fingerprint, copy.fingerprint())
        assert [d.split(":")[0] for d in differences] == expected, change
