"""Generate a deterministic, realistic PostgreSQL database for the backup benchmark.

The data is produced server-side (``INSERT ... SELECT generate_series``) from
hash-based pseudo-random values (``hashint8extended(id, seed)``), so the same
``--size-gb`` always produces the same rows, on any machine with the same
PostgreSQL major version. Text comes from word lists (names, cities, products,
a few hundred words of support-note vocabulary), JSON documents have nested
objects and arrays of varying length, numbers and timestamps are skewed rather
than uniform: the plain dump compresses roughly 3-5x with zstd, like real
application data, and unlike pgbench's repeated filler.

Tables (normal, logged tables, so that ``pg_dump`` dumps them as usual):

- ``customers(id, name, email, country, created_at, profile jsonb)``
- ``orders(id, customer_id, status, amount numeric(12,2), currency, items jsonb,
  note, created_at)``
- ``events(id bigserial, customer_id, kind, payload jsonb, ts)``

Usage::

    export PGPASSWORD=...
    python bench/generate_pg.py --url postgresql://dbfleet@127.0.0.1:15432/postgres \
        --size-gb 1.0
    python bench/generate_pg.py --url ... --mutate-percent 1

``--url`` names the server (its database part is the maintenance database used
to drop and create ``dbfleet_bench``); the default is ``$DBFLEET_BENCH_PG_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

DB_NAME = "dbfleet_bench"
DEFAULT_URL = "postgresql://dbfleet@127.0.0.1:15432/postgres"
GENERATOR_VERSION = 1
"""Bump when the generated data changes, so that ``--keep`` regenerates."""

# Rows per "customer unit": every customer comes with this many orders and events.
ORDERS_PER_CUSTOMER = 5
EVENTS_PER_CUSTOMER = 8
# pg_database_size() growth per customer unit (heap + indexes), measured on
# PostgreSQL 15; it only decides row counts, the real size is reported.
BYTES_PER_CUSTOMER_UNIT = 8150
EMPTY_DATABASE_BYTES = 7_500_000
BATCH_ROWS = 250_000

MARKER_PREFIX = "dbfleet-bench"


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Margaret Mark Sandra Donald Ashley Steven Kimberly Paul Emily "
    "Andrew Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Dorothy George Melissa "
    "Timothy Deborah Lukas Sofia Mateo Chiara Hiroshi Yuki Olga Ivan Aisha Omar Priya Arjun "
    "Wei Mei Pierre Camille Jan Anna Lars Ingrid Diego Lucia"
)
LAST_NAMES = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
    "Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter "
    "Roberts Muller Schmidt Schneider Fischer Weber Rossi Russo Ferrari Dubois Laurent Tanaka "
    "Suzuki Kowalski Nowak Ivanov Petrov Sharma Patel Chen Wang Jansen Larsen Silva Santos"
)
DOMAINS = _words(
    "gmail.com yahoo.com outlook.com hotmail.com icloud.com proton.me gmx.de web.de "
    "orange.fr libero.it example.com acme-corp.com fastmail.com yandex.ru qq.com"
)
COUNTRIES = _words(
    "US US US US US DE DE DE GB GB GB FR FR IT ES NL SE NO DK PL CZ AT CH BE PT IE CA CA "
    "AU JP JP IN BR MX KR SG ZA"
)
CITIES = _words(
    "Springfield Riverside Fairview Franklin Greenville Bristol Clinton Salem Madison "
    "Georgetown Arlington Ashland Dover Oxford Jackson Burlington Manchester Milton Newport "
    "Auburn Dayton Lexington Milford Winchester Berlin Hamburg Munich Cologne Paris Lyon "
    "Milan Rome Madrid Barcelona Amsterdam Rotterdam Stockholm Oslo Copenhagen Warsaw Prague "
    "Vienna Zurich Brussels Lisbon Dublin Toronto Sydney Tokyo Osaka Mumbai Seoul Singapore"
)
STREETS = _words(
    "Main Oak Pine Maple Cedar Elm Washington Lake Hill Park View Sunset Highland Church "
    "Mill River Spring Ridge Meadow Forest Lincoln Jefferson Station Market Bridge Harbor "
    "Garden Valley Willow Chestnut"
)
STREET_KINDS = _words("Street Avenue Road Lane Drive Boulevard Way Court Place Terrace")
TIERS = _words("free free free free basic basic standard standard premium enterprise")
LANGUAGES = _words("en en en en de de fr es it nl sv pl ja pt")
TAGS = _words(
    "vip newsletter b2b b2c churn-risk early-adopter wholesale reseller student nonprofit "
    "beta-tester referral gift-buyer mobile-first returning"
)
STATUSES = _words(
    "delivered delivered delivered delivered delivered delivered delivered delivered "
    "delivered delivered delivered delivered shipped shipped shipped pending pending "
    "cancelled refunded processing"
)
NEXT_STATUS = {
    "pending": "processing",
    "processing": "shipped",
    "shipped": "delivered",
    "delivered": "refunded",
    "refunded": "refunded",
    "cancelled": "cancelled",
}
CURRENCIES = _words("USD USD USD USD EUR EUR EUR GBP JPY CHF SEK CAD AUD")
ADJECTIVES = _words(
    "wireless ergonomic compact portable stainless organic vintage premium lightweight "
    "waterproof smart classic deluxe eco-friendly handmade adjustable foldable heavy-duty "
    "rechargeable ceramic wooden leather cotton bamboo"
)
PRODUCTS = _words(
    "headphones keyboard mouse monitor lamp backpack bottle mug chair desk notebook pen "
    "charger cable speaker camera tripod jacket sneakers blender kettle toaster pan knife "
    "blanket pillow towel watch wallet sunglasses umbrella drill hammer router"
)
NOTE_WORDS = _words(
    "the the the the a a a and and and to to to of of in in for for is is on with "
    "customer customer order order package delivery delivered shipped shipping address "
    "please please call called email emailed asked requested wants would like before "
    "after during today tomorrow yesterday monday friday weekend morning afternoon evening "
    "door front back side gate garage neighbour reception office building floor apartment "
    "leave left ring bell knock do not fragile careful box boxes wrapped gift wrap card "
    "message happy birthday anniversary thanks thank you refund refunded partial full "
    "replacement replace exchange return returned label printed missing damaged broken "
    "wrong size color colour item items arrived late early on time tracking number "
    "carrier courier ups dhl fedox postal service warehouse stock backorder backordered "
    "restock available unavailable discount coupon code applied expired invoice receipt "
    "vat tax exempt company business account manager support ticket escalated resolved "
    "pending waiting confirm confirmed confirmation payment card declined retried paid "
    "bank transfer paypal cash loyalty points redeemed upgrade express standard priority "
    "overnight signature required safe place instructions updated changed cancel cancelled "
    "duplicate charge charged twice agent spoke chat phone note see previous contact "
    "again soon asap urgent not urgent ok fine good great poor quality issue problem "
    "fixed sent new one two three four five days weeks hours minutes"
)
EVENT_KINDS = _words(
    "page_view page_view page_view page_view page_view page_view click click click search "
    "search add_to_cart add_to_cart remove_from_cart checkout_start checkout_complete "
    "login logout signup password_reset"
)
PATHS = _words(
    "/ /products /products/new /products/sale /cart /checkout /checkout/payment "
    "/checkout/confirm /account /account/orders /account/settings /help /help/returns "
    "/help/shipping /search /blog /about /contact /wishlist /login"
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.@V@ Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.@V@ Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "okhttp/4.12.0",
    "ShopApp/3.14.2 (iOS 17.2; iPhone15,2)",
)
REFERRERS = _words(
    "https://www.google.com/ https://www.google.com/ https://www.google.com/ "
    "https://www.bing.com/ https://duckduckgo.com/ https://t.co/ https://www.facebook.com/ "
    "https://www.instagram.com/ https://news.ycombinator.com/ https://www.reddit.com/"
)
SEARCH_TERMS = ADJECTIVES + PRODUCTS

WORD_LISTS: dict[str, Sequence[str]] = {
    "first_names": FIRST_NAMES,
    "last_names": LAST_NAMES,
    "domains": DOMAINS,
    "countries": COUNTRIES,
    "cities": CITIES,
    "streets": STREETS,
    "street_kinds": STREET_KINDS,
    "tiers": TIERS,
    "languages": LANGUAGES,
    "tags": TAGS,
    "statuses": STATUSES,
    "currencies": CURRENCIES,
    "adjectives": ADJECTIVES,
    "products": PRODUCTS,
    "note_words": NOTE_WORDS,
    "event_kinds": EVENT_KINDS,
    "paths": PATHS,
    "user_agents": USER_AGENTS,
    "referrers": REFERRERS,
    "search_terms": SEARCH_TERMS,
}


# --- connection helpers -------------------------------------------------------------------


def server_url(explicit: str | None) -> str:
    return explicit or os.environ.get("DBFLEET_BENCH_PG_URL") or DEFAULT_URL


def with_database(url: str, dbname: str) -> str:
    """``url`` with its database part replaced by ``dbname``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def ensure_password_env() -> None:
    """Accept the test-server script's variable when PGPASSWORD is not set."""
    if "PGPASSWORD" not in os.environ and os.environ.get("DBFLEET_TEST_PG_PASSWORD"):
        os.environ["PGPASSWORD"] = os.environ["DBFLEET_TEST_PG_PASSWORD"]


def connect(url: str, autocommit: bool = True) -> psycopg.Connection[TupleRow]:
    ensure_password_env()
    return psycopg.connect(url, autocommit=autocommit)


# --- SQL ------------------------------------------------------------------------------------


def _helpers_sql() -> sql.Composed:
    """Schema ``bench_gen``: the pseudo-random helpers and the word lists.

    Dropped again after generating or mutating, so the dump holds only the tables.
    """
    statements: list[sql.Composable] = [
        sql.SQL("DROP SCHEMA IF EXISTS bench_gen CASCADE;\nCREATE SCHEMA bench_gen;\n"),
        # r: a non-negative 63-bit pseudo-random integer for (id, seed).
        sql.SQL(
            "CREATE FUNCTION bench_gen.r(id bigint, seed bigint) RETURNS bigint\n"
            "  LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
            "  AS 'SELECT hashint8extended(id, seed) & 9223372036854775807';\n"
        ),
        # u: uniform in [0, 1).
        sql.SQL(
            "CREATE FUNCTION bench_gen.u(id bigint, seed bigint) RETURNS double precision\n"
            "  LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
            "  AS 'SELECT (hashint8extended(id, seed) & 4503599627370495)::float8"
            " / 4503599627370496.0';\n"
        ),
        # pick: one element of a word list.
        sql.SQL(
            "CREATE FUNCTION bench_gen.pick(words text[], id bigint, seed bigint) RETURNS text\n"
            "  LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
            "  AS 'SELECT words[1 + bench_gen.r(id, seed) % cardinality(words)]';\n"
        ),
        # phrase: n words drawn from a list, joined by spaces.
        sql.SQL(
            "CREATE FUNCTION bench_gen.phrase(words text[], n integer, id bigint, seed bigint)\n"
            "  RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
            "  AS 'SELECT string_agg(words[1 + bench_gen.r(id, seed * 64 + k)"
            " % cardinality(words)], '' '' ORDER BY k) FROM generate_series(1, n) AS k';\n"
        ),
    ]
    for name, words in WORD_LISTS.items():
        statements.append(
            sql.SQL(
                "CREATE FUNCTION bench_gen.{}() RETURNS text[] LANGUAGE sql IMMUTABLE "
                "PARALLEL SAFE AS {};\n"
            ).format(
                sql.Identifier(name),
                sql.Literal("SELECT " + _array_literal(words)),
            )
        )
    return sql.Composed(statements)


def _array_literal(words: Sequence[str]) -> str:
    quoted = ", ".join("'" + w.replace("'", "''") + "'" for w in words)
    return f"ARRAY[{quoted}]::text[]"


SCHEMA_SQL = """
DROP TABLE IF EXISTS events, orders, customers CASCADE;
CREATE TABLE customers (
    id          bigint NOT NULL,
    name        text NOT NULL,
    email       text NOT NULL,
    country     char(2) NOT NULL,
    created_at  timestamptz NOT NULL,
    profile     jsonb NOT NULL
);
CREATE TABLE orders (
    id          bigint NOT NULL,
    customer_id bigint NOT NULL,
    status      text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    currency    char(3) NOT NULL,
    items       jsonb NOT NULL,
    tracking_number text,
    note        text,
    created_at  timestamptz NOT NULL
);
CREATE TABLE events (
    id          bigserial NOT NULL,
    customer_id bigint,
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    ts          timestamptz NOT NULL
);
"""

CONSTRAINTS_SQL = """
ALTER TABLE customers ADD PRIMARY KEY (id);
CREATE UNIQUE INDEX customers_email_key ON customers (email);
ALTER TABLE orders ADD PRIMARY KEY (id);
ALTER TABLE events ADD PRIMARY KEY (id);
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk
    FOREIGN KEY (customer_id) REFERENCES customers (id);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX events_ts_idx ON events (ts);
SELECT setval('events_id_seq', (SELECT coalesce(max(id), 1) FROM events));
"""

# %(lo)s / %(hi)s: the id range of one batch; %(n_customers)s: for foreign keys.
CUSTOMERS_INSERT = """
INSERT INTO customers (id, name, email, country, created_at, profile)
SELECT g.id,
       f.first || ' ' || l.last,
       lower(f.first) || '.' || lower(l.last) || g.id::text || '@'
           || bench_gen.pick(bench_gen.domains(), g.id, 3),
       bench_gen.pick(bench_gen.countries(), g.id, 4),
       timestamptz '2016-01-01 00:00:00+00'
           + make_interval(secs => floor(sqrt(bench_gen.u(g.id, 5)) * 283996800)),
       jsonb_build_object(
           'phone', '+' || (1 + bench_gen.r(g.id, 6) %% 98)::text || ' '
               || lpad((bench_gen.r(g.id, 7) %% 10000000000)::text, 10, '0'),
           'tier', bench_gen.pick(bench_gen.tiers(), g.id, 8),
           'marketing_opt_in', bench_gen.r(g.id, 9) %% 3 = 0,
           'address', jsonb_build_object(
               'street', (1 + bench_gen.r(g.id, 10) %% 400)::text || ' '
                   || bench_gen.pick(bench_gen.streets(), g.id, 11) || ' '
                   || bench_gen.pick(bench_gen.street_kinds(), g.id, 12),
               'city', bench_gen.pick(bench_gen.cities(), g.id, 13),
               'zip', lpad((bench_gen.r(g.id, 14) %% 100000)::text, 5, '0')),
           'preferences', jsonb_build_object(
               'language', bench_gen.pick(bench_gen.languages(), g.id, 15),
               'newsletter', bench_gen.r(g.id, 16) %% 4 = 0,
               'dark_mode', bench_gen.r(g.id, 17) %% 2 = 0),
           'tags', to_jsonb(coalesce(string_to_array(
               bench_gen.phrase(bench_gen.tags(), (bench_gen.r(g.id, 18) %% 4)::int, g.id, 19),
               ' '), '{}'::text[])),
           'lifetime_value', round((power(bench_gen.u(g.id, 20), 3) * 25000)::numeric, 2),
           'last_login', to_char(timestamptz '2024-01-01 00:00:00+00'
               + make_interval(secs => floor(bench_gen.u(g.id, 21) * 31536000)),
               'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g(id)
CROSS JOIN LATERAL (SELECT bench_gen.pick(bench_gen.first_names(), g.id, 1) AS first) f
CROSS JOIN LATERAL (SELECT bench_gen.pick(bench_gen.last_names(), g.id, 2) AS last) l
"""

ORDERS_INSERT = """
INSERT INTO orders (id, customer_id, status, amount, currency, items, tracking_number, note,
                    created_at)
SELECT g.id,
       1 + bench_gen.r(g.id, 101) %% %(n_customers)s,
       bench_gen.pick(bench_gen.statuses(), g.id, 102),
       it.total,
       bench_gen.pick(bench_gen.currencies(), g.id, 103),
       it.items,
       CASE WHEN bench_gen.r(g.id, 102) %% 20 < 15
            THEN '1Z' || upper(substr(md5(g.id::text || '/trk'), 1, 16)) END,
       CASE WHEN bench_gen.r(g.id, 104) %% 5 < 2 THEN NULL
            ELSE bench_gen.phrase(bench_gen.note_words(),
                                  (3 + bench_gen.r(g.id, 105) %% 28)::int, g.id, 106)
       END,
       timestamptz '2018-01-01 00:00:00+00'
           + make_interval(secs => floor(g.id::float8 / %(n_orders)s * 220000000
                                         + bench_gen.u(g.id, 107) * 3600))
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g(id)
CROSS JOIN LATERAL (
    SELECT jsonb_agg(jsonb_build_object(
               'sku', 'SKU-' || lpad((bench_gen.r(g.id * 8 + k, 110) %% 50000)::text, 5, '0'),
               'name', bench_gen.pick(bench_gen.adjectives(), g.id * 8 + k, 111) || ' '
                   || bench_gen.pick(bench_gen.products(), g.id * 8 + k, 112),
               'qty', 1 + (power(bench_gen.u(g.id * 8 + k, 113), 4) * 6)::int,
               'unit_price', round((2 + power(bench_gen.u(g.id * 8 + k, 114), 2) * 400)::numeric,
                                   2))
               ORDER BY k) AS items,
           round(sum((1 + (power(bench_gen.u(g.id * 8 + k, 113), 4) * 6)::int)
                     * round((2 + power(bench_gen.u(g.id * 8 + k, 114), 2) * 400)::numeric,
                             2)), 2) AS total
    FROM generate_series(1, (1 + power(bench_gen.u(g.id, 108), 2) * 5)::int) AS k
) it
"""

EVENTS_INSERT = """
INSERT INTO events (id, customer_id, kind, payload, ts)
SELECT g.id,
       CASE WHEN bench_gen.r(g.id, 201) %% 4 = 0 THEN NULL
            ELSE 1 + bench_gen.r(g.id, 202) %% %(n_customers)s END,
       e.kind,
       jsonb_strip_nulls(jsonb_build_object(
           'session', substr(md5((bench_gen.r(g.id / 4, 203))::text), 1, 16),
           'path', CASE WHEN e.kind = 'search' THEN '/search'
                        ELSE bench_gen.pick(bench_gen.paths(), g.id, 204) END,
           'query', CASE WHEN e.kind = 'search' THEN bench_gen.phrase(
                        bench_gen.search_terms(), (1 + bench_gen.r(g.id, 205) %% 3)::int,
                        g.id, 206) END,
           'request_id', (substr(md5(g.id::text || '/req'), 1, 32))::uuid::text,
           'span_id', substr(md5(g.id::text || '/span'), 1, 16),
           'ua', replace(bench_gen.pick(bench_gen.user_agents(), g.id / 4, 207), '@V@',
                         (5000 + bench_gen.r(g.id / 4, 219) %% 1500)::text || '.'
                         || (bench_gen.r(g.id / 4, 220) %% 200)::text),
           'timing', jsonb_build_object(
               'dns', (power(bench_gen.u(g.id, 223), 4) * 120)::int,
               'ttfb', 20 + (power(bench_gen.u(g.id, 224), 2) * 900)::int,
               'render', (bench_gen.u(g.id, 225) * 2500)::int),
           'geo', jsonb_build_object(
               'lat', round((bench_gen.u(g.id / 4, 221) * 140 - 60)::numeric, 4),
               'lon', round((bench_gen.u(g.id / 4, 222) * 360 - 180)::numeric, 4)),
           'ip', '10.' || (bench_gen.r(g.id / 4, 208) %% 256)::text || '.'
               || (bench_gen.r(g.id / 4, 209) %% 256)::text || '.'
               || (bench_gen.r(g.id / 4, 210) %% 256)::text,
           'referrer', CASE WHEN bench_gen.r(g.id, 211) %% 3 = 0
                            THEN bench_gen.pick(bench_gen.referrers(), g.id, 212) END,
           'duration_ms', (power(bench_gen.u(g.id, 213), 3) * 30000)::int,
           'screen', jsonb_build_object('w', (ARRAY[390, 412, 1280, 1440, 1920, 2560])
                                                 [1 + bench_gen.r(g.id / 4, 214) %% 6],
                                        'h', (ARRAY[844, 915, 720, 900, 1080, 1440])
                                                 [1 + bench_gen.r(g.id / 4, 214) %% 6]),
           'experiment', CASE WHEN bench_gen.r(g.id, 215) %% 5 = 0 THEN jsonb_build_object(
                             'name', 'exp-' || (bench_gen.r(g.id, 216) %% 40)::text,
                             'variant', (ARRAY['control', 'a', 'b'])
                                            [1 + bench_gen.r(g.id, 217) %% 3]) END)),
       timestamptz '2023-01-01 00:00:00+00'
           + make_interval(secs => floor(g.id::float8 / %(n_events)s * 63000000
                                         + bench_gen.u(g.id, 218) * 600))
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g(id)
CROSS JOIN LATERAL (SELECT bench_gen.pick(bench_gen.event_kinds(), g.id, 200) AS kind) e
"""


# --- generate -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    size_gb: float
    customers: int
    orders: int
    events: int

    @classmethod
    def for_size(cls, size_gb: float) -> Plan:
        target = size_gb * 1e9
        units = max(1000, int((target - EMPTY_DATABASE_BYTES) / BYTES_PER_CUSTOMER_UNIT))
        return cls(
            size_gb=size_gb,
            customers=units,
            orders=units * ORDERS_PER_CUSTOMER,
            events=units * EVENTS_PER_CUSTOMER,
        )


@dataclass
class GenerateResult:
    plan: Plan
    database_bytes: int
    seconds: float


def marker(size_gb: float, mutations: int) -> str:
    return (
        f"{MARKER_PREFIX} generator={GENERATOR_VERSION} size_gb={size_gb:g} mutations={mutations}"
    )


def parse_marker(comment: str | None) -> dict[str, str] | None:
    if not comment or not comment.startswith(MARKER_PREFIX + " "):
        return None
    fields = dict(part.split("=", 1) for part in comment.split()[1:] if "=" in part)
    return fields


@dataclass
class ExistingDatabase:
    size_gb: float
    mutations: int
    database_bytes: int


def existing_database(url: str) -> ExistingDatabase | None:
    """What ``dbfleet_bench`` holds, if it exists and was made by this generator version."""
    with connect(url) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database'), pg_database_size(oid)"
            " FROM pg_database WHERE datname = %s",
            (DB_NAME,),
        ).fetchone()
    if row is None:
        return None
    comment, size = row
    fields = parse_marker(comment if isinstance(comment, str) else None)
    if not fields or fields.get("generator") != str(GENERATOR_VERSION):
        return None
    return ExistingDatabase(
        size_gb=float(fields.get("size_gb", "0")),
        mutations=int(fields.get("mutations", "0")),
        database_bytes=int(size),
    )


def _set_marker(conn: psycopg.Connection[TupleRow], size_gb: float, mutations: int) -> None:
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(DB_NAME), sql.Literal(marker(size_gb, mutations))
        )
    )


def _batches(total: int, size: int = BATCH_ROWS) -> list[tuple[int, int]]:
    return [(lo, min(lo + size - 1, total)) for lo in range(1, total + 1, size)]


def _fill(
    url: str,
    table: str,
    statement: str,
    total: int,
    params: dict[str, int],
    log: Callable[[str], None],
) -> None:
    with connect(url) as conn:
        started = time.perf_counter()
        for lo, hi in _batches(total):
            conn.execute(statement, {**params, "lo": lo, "hi": hi})
            log(f"  {table}: {hi:,}/{total:,} rows ({time.perf_counter() - started:.0f} s)")


def generate(
    url: str, size_gb: float, jobs: int = 2, log: Callable[[str], None] = print
) -> GenerateResult:
    """Drop and create ``dbfleet_bench`` on the server of ``url`` and fill it."""
    plan = Plan.for_size(size_gb)
    started = time.perf_counter()
    log(
        f"generating {DB_NAME}: {plan.customers:,} customers, {plan.orders:,} orders, "
        f"{plan.events:,} events (target {size_gb:g} GB)"
    )
    with connect(url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
    bench_url = with_database(url, DB_NAME)
    with connect(bench_url) as conn:
        conn.execute(_helpers_sql())
        conn.execute(SCHEMA_SQL)
    params = {"n_customers": plan.customers, "n_orders": plan.orders, "n_events": plan.events}
    work = [
        ("customers", CUSTOMERS_INSERT, plan.customers),
        ("orders", ORDERS_INSERT, plan.orders),
        ("events", EVENTS_INSERT, plan.events),
    ]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [
            pool.submit(_fill, bench_url, table, statement, total, params, log)
            for table, statement, total in work
        ]
        for future in futures:
            future.result()
    log("  adding keys and indexes, VACUUM ANALYZE")
    with connect(bench_url) as conn:
        conn.execute(CONSTRAINTS_SQL)
        conn.execute("DROP SCHEMA bench_gen CASCADE")
        conn.execute("VACUUM (FREEZE, ANALYZE)")
        conn.execute("CHECKPOINT")
        _set_marker(conn, size_gb, 0)
        size = _database_size(conn)
    seconds = time.perf_counter() - started
    log(f"generated {DB_NAME}: {size / 1e9:.3f} GB (pg_database_size) in {seconds:.0f} s")
    return GenerateResult(plan=plan, database_bytes=size, seconds=seconds)


def _database_size(conn: psycopg.Connection[TupleRow]) -> int:
    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


def database_size(url: str) -> int:
    with connect(with_database(url, DB_NAME)) as conn:
        return _database_size(conn)


# --- mutate ---------------------------------------------------------------------------------

# %(round)s: which mutation this is (1, 2, ...): each round touches other rows.
# %(per10k)s: rows per 10,000 to change (percent * 100).
# spread: rows chosen by hash, all over the table; recent: the newest ids.
SELECT_SPREAD = "bench_gen.r(id, 9000 + %(round)s) %% 10000 < %(per10k)s"
SELECT_RECENT = "id > (SELECT max(id) FROM {table}) * (10000 - %(per10k)s) / 10000"

MUTATE_CUSTOMERS = """
UPDATE customers SET
    email = CASE WHEN bench_gen.r(id, 9100 + %(round)s) %% 4 = 0
                 THEN split_part(email, '@', 1) || '@'
                      || bench_gen.pick(bench_gen.domains(), id, 9200 + %(round)s)
                 ELSE email END,
    profile = profile || jsonb_build_object(
        'last_login', to_char(timestamptz '2025-01-01 00:00:00+00'
            + make_interval(days => %(round)s::int,
                            secs => floor(bench_gen.u(id, 9300 + %(round)s) * 86400)),
            'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'tier', bench_gen.pick(bench_gen.tiers(), id, 9400 + %(round)s))
WHERE {where}
"""

MUTATE_ORDERS = """
UPDATE orders SET
    status = CASE status
        WHEN 'pending' THEN 'processing' WHEN 'processing' THEN 'shipped'
        WHEN 'shipped' THEN 'delivered' WHEN 'delivered' THEN 'refunded'
        ELSE status END,
    note = concat_ws(' / ', note, bench_gen.phrase(bench_gen.note_words(),
        (4 + bench_gen.r(id, 9500 + %(round)s) %% 12)::int, id, 9600 + %(round)s))
WHERE {where}
"""

MUTATE_EVENTS = """
UPDATE events SET
    payload = payload || jsonb_build_object(
        'processed', true,
        'batch', 'b-' || %(round)s::text || '-'
                 || (bench_gen.r(id, 9700 + %(round)s) %% 1000)::text)
WHERE {where}
"""


@dataclass
class MutateResult:
    percent: float
    mode: str
    round: int
    rows: dict[str, int]
    seconds: float


def mutate(
    url: str,
    percent: float,
    mode: str = "spread",
    round_: int | None = None,
    log: Callable[[str], None] = print,
) -> MutateResult:
    """Update ``percent`` % of the rows of every table, deterministically.

    ``mode='spread'`` picks rows by hash all over each table (a worst case for
    dedup: nearly every chunk of the dump sees a change); ``mode='recent'``
    updates the newest ``percent`` % of ids (orders changing status, recent
    events being enriched), which is closer to many real workloads.
    Each call is one "round"; round N touches other rows than round N-1.
    Afterwards VACUUM ANALYZE, so that autovacuum does not run during timing.
    """
    if not 0 < percent <= 100:
        raise ValueError("percent must be in (0, 100]")
    if mode not in ("spread", "recent"):
        raise ValueError("mode must be 'spread' or 'recent'")
    existing = existing_database(url)
    if existing is None:
        raise RuntimeError(f"{DB_NAME} does not exist or was not made by this generator")
    round_ = round_ if round_ is not None else existing.mutations + 1
    params = {"round": round_, "per10k": round(percent * 100)}
    started = time.perf_counter()
    rows: dict[str, int] = {}
    with connect(with_database(url, DB_NAME)) as conn:
        conn.execute(_helpers_sql())
        for table, statement in (
            ("customers", MUTATE_CUSTOMERS),
            ("orders", MUTATE_ORDERS),
            ("events", MUTATE_EVENTS),
        ):
            where = (SELECT_SPREAD if mode == "spread" else SELECT_RECENT).format(table=table)
            cur = conn.execute(statement.format(where=where), params)
            rows[table] = cur.rowcount
            log(f"  mutated {cur.rowcount:,} rows of {table}")
        conn.execute("DROP SCHEMA bench_gen CASCADE")
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
        _set_marker(conn, existing.size_gb, round_)
    seconds = time.perf_counter() - started
    return MutateResult(percent=percent, mode=mode, round=round_, rows=rows, seconds=seconds)


# --- CLI ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url", help=f"server URL (default $DBFLEET_BENCH_PG_URL or {DEFAULT_URL})"
    )
    parser.add_argument(
        "--size-gb",
        type=float,
        default=1.0,
        help="target pg_database_size in GB (default 1.0; 0.05 for a quick run)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="tables filled in parallel (default 2)")
    parser.add_argument(
        "--keep", action="store_true", help="do nothing if the database exists with this --size-gb"
    )
    parser.add_argument(
        "--mutate-percent",
        type=float,
        help="instead of generating: update this %% of the rows of each table",
    )
    parser.add_argument("--mutate-mode", choices=("spread", "recent"), default="spread")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    url = server_url(args.url)
    if args.mutate_percent is not None:
        result: MutateResult | ExistingDatabase | GenerateResult = mutate(
            url, args.mutate_percent, args.mutate_mode
        )
    else:
        existing = existing_database(url)
        if args.keep and existing is not None and existing.size_gb == args.size_gb:
            print(
                f"{DB_NAME} exists ({existing.database_bytes / 1e9:.3f} GB, "
                f"{existing.mutations} mutations); kept"
            )
            result = existing
        else:
            result = generate(url, args.size_gb, jobs=args.jobs)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
