"""ClickHouse objects: what kind each one is, how its CREATE statement is
moved to another database, and how its rows are fingerprinted.

Pure functions over SQL text and type names; no server access.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Engines whose rows dbfleet copies. Everything else is schema only: views,
# Distributed/Merge/Buffer (their data lives in other tables), Null, Set and
# Join (not readable with SELECT in older releases), external tables (MySQL,
# URL, S3, ...), dictionaries.
LOCAL_DATA_ENGINES = {"Log", "TinyLog", "StripeLog", "Memory", "EmbeddedRocksDB"}
# Engines whose merges change rows (collapse, replace, sum): fingerprinted
# with FINAL, the merged view that merges cannot change.
FINAL_ENGINE_PREFIXES = (
    "Replacing",
    "Collapsing",
    "VersionedCollapsing",
    "Summing",
    "Aggregating",
    "Graphite",
    "CoalescingMergeTree",
)
# Engines that consume an external queue: created by a restore they would
# start taking messages from the production topic, so restore skips them.
STREAM_ENGINES = {"Kafka", "RabbitMQ", "NATS", "S3Queue", "AzureQueue", "FileLog"}
VIEW_ENGINES = {"View", "MaterializedView", "LiveView", "WindowView"}
SYSTEM_DATABASES = {"system", "information_schema", "INFORMATION_SCHEMA"}

_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_IDENT = r"(?:`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"|[A-Za-z_][A-Za-z0-9_]*)"
_CREATE_HEAD = re.compile(
    r"\A\s*(?P<verb>CREATE|ATTACH)\s+(?P<kind>(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?"
    r"(?:TABLE|VIEW|MATERIALIZED\s+VIEW|LIVE\s+VIEW|WINDOW\s+VIEW|DICTIONARY))\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?(?:(?P<db>" + _IDENT + r")\s*\.\s*)?(?P<name>" + _IDENT + r")",
    re.I,
)
_MV_TO = re.compile(r"\s*TO\s+", re.I)


def quote(name: str) -> str:
    """A ClickHouse identifier in backquotes."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unquote_ident(token: str) -> str:
    if token[:1] in '`"' and token[-1:] == token[:1]:
        body = token[1:-1]
        return re.sub(r"\\(.)", r"\1", body)
    return token


@dataclass
class SchemaObject:
    """One table, view or dictionary of the backed-up database."""

    name: str
    engine: str
    create: str
    data: bool
    """Rows are copied (a ``data/<name>`` stream)."""
    final: bool = False
    """Fingerprinted with FINAL (merges change its rows)."""

    @property
    def stream(self) -> str:
        return f"data/{self.name}"

    @property
    def is_view(self) -> bool:
        return self.engine in VIEW_ENGINES

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "engine": self.engine, "create": self.create,
                "data": self.data, "final": self.final}  # fmt: skip

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> SchemaObject:
        return cls(
            name=str(item["name"]),
            engine=str(item["engine"]),
            create=str(item["create"]),
            data=bool(item["data"]),
            final=bool(item.get("final", False)),
        )


def classify(name: str, engine: str, create: str) -> SchemaObject:
    """Decide whether ``name``'s rows are copied and how they are fingerprinted."""
    if engine.endswith("MergeTree"):
        base = engine.removeprefix("Replicated").removeprefix("Shared")
        return SchemaObject(name, engine, create, data=True,
                            final=base.startswith(FINAL_ENGINE_PREFIXES))  # fmt: skip
    if engine == "MaterializedView":
        # Without TO the view owns an inner table: its rows are read and
        # written through the view's own name. With TO they belong to the
        # target table, which is backed up itself.
        inner = re.search(r"\bENGINE\s*=\s*(\w+)", create)
        inner_engine = inner.group(1).removeprefix("Replicated") if inner else ""
        return SchemaObject(name, engine, create, data=not materialized_view_has_to(create),
                            final=inner_engine.startswith(FINAL_ENGINE_PREFIXES))  # fmt: skip
    return SchemaObject(name, engine, create, data=engine in LOCAL_DATA_ENGINES)


def materialized_view_has_to(create: str) -> bool:
    match = _CREATE_HEAD.match(create)
    return bool(match and _MV_TO.match(create, match.end()))


def _skip_literal(sql: str, i: int) -> int:
    """Index after the string literal that starts at ``sql[i]`` (a quote)."""
    j = i + 1
    while j < len(sql):
        if sql[j] == "\\":
            j += 2
            continue
        if sql[j] == "'":
            if sql[j + 1 : j + 2] == "'":
                j += 2
                continue
            return j + 1
        j += 1
    return j


def rewrite_create(create: str, source_db: str, target_db: str, name: str) -> str:
    """``create`` for object ``name`` in ``target_db``: the object's own name is
    replaced, and so is every qualified reference ``source_db.x`` outside
    string literals (in a view's query, an MV's TO clause, engine arguments
    such as Buffer's or Merge's). Names inside string literals stay."""
    match = _CREATE_HEAD.match(create)
    if not match:
        raise ValueError(f"unexpected statement for {name}: {create[:80]!r}")
    head = f"{match.group('verb').upper()} {' '.join(match.group('kind').upper().split())} "
    head += f"{quote(target_db)}.{quote(name)}"
    rest = create[match.end() :]
    if source_db == target_db:
        return head + rest
    return head + _rewrite_engine_database(_rewrite_qualified(rest, source_db, target_db),
                                           source_db, target_db)  # fmt: skip


def _rewrite_qualified(rest: str, source_db: str, target_db: str) -> str:
    out: list[str] = []
    ident = re.compile(_IDENT + r"(?=\s*\.)")
    i = 0
    while i < len(rest):
        ch = rest[i]
        if ch == "'":
            j = _skip_literal(rest, i)
            out.append(rest[i:j])
            i = j
            continue
        prev = rest[i - 1] if i else " "
        if not (prev.isalnum() or prev in '_.`"'):
            m = ident.match(rest, i)
            if m:
                token = m.group(0)
                out.append(quote(target_db) if unquote_ident(token) == source_db else token)
                i = m.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)


# Engines that name a database in an argument: Buffer(db, table, ...),
# Merge(db, regexp), Distributed(cluster, db, table, ...).
_ENGINE_DB_ARG = {"Buffer": 0, "Merge": 0, "Distributed": 1}
_ENGINE_CALL = re.compile(r"\bENGINE\s*=\s*(Buffer|Merge|Distributed)\s*\(", re.I)
_ARG = re.compile(r"\s*(" + _IDENT + r"|'(?:[^'\\]|\\.)*')\s*(?=[,)])")


def _rewrite_engine_database(sql: str, source_db: str, target_db: str) -> str:
    match = _ENGINE_CALL.search(sql)
    if not match:
        return sql
    position = {k.lower(): v for k, v in _ENGINE_DB_ARG.items()}[match.group(1).lower()]
    i = match.end()
    for _ in range(position + 1):
        arg = _ARG.match(sql, i)
        if not arg:
            return sql
        if _ == position:
            token = arg.group(1)
            value = token[1:-1] if token.startswith("'") else unquote_ident(token)
            if value == source_db:
                new = quote_literal(target_db) if token.startswith("'") else quote(target_db)
                return sql[: arg.start(1)] + new + sql[arg.end(1) :]
            return sql
        i = arg.end() + 1
    return sql


def replicated_path_is_shared(create: str, engine: str, source_db: str, target_db: str) -> bool:
    """True when restoring this Replicated* table under another database name
    would reuse the source's coordination path (and so join its replicas)."""
    if not engine.startswith("Replicated") or source_db == target_db:
        return False
    args = re.search(r"ENGINE\s*=\s*Replicated\w*\s*\(([^)]*)\)", create, re.I)
    if not args or not args.group(1).strip():
        return False  # default path from the server's config: {database} and {table} by default
    return not any(m in args.group(1) for m in ("{database}", "{uuid}", "{table}"))


# -- fingerprint expressions ------------------------------------------------

# Taken by cityHash64 as they are on every release from 18.16 on, which
# hashes their binary value (a NaN's bits, -0.0 apart from 0.0,
# ``DateTime('tz')`` the timestamp, an Enum its number).
_HASHABLE = {
    "UInt8", "UInt16", "UInt32", "UInt64", "Int8", "Int16", "Int32", "Int64",
    "Float32", "Float64", "String", "FixedString", "Date", "DateTime", "Enum8", "Enum16",
}  # fmt: skip
# Fixed-size values cityHash64 refuses: hashed as their raw bytes
# (``reinterpretAsString``, little-endian, trailing zero bytes dropped, which
# is still one string per value of a given width). Never through their text:
# 18.16's ``toString`` of a Decimal128 can return garbage bytes, differently
# for the same value depending on how the rows sit in blocks.
_RAW_BYTES = {
    "Decimal", "Decimal32", "Decimal64", "Decimal128", "Decimal256", "UUID",
    "Int128", "UInt128", "Int256", "UInt256",
}  # fmt: skip
_NAMED_ELEMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s+(\S.*)\Z", re.S)


def split_type(type_name: str) -> tuple[str, list[str]]:
    """``'Array(Tuple(A, B))'`` -> ``('Array', ['Tuple(A, B)'])``: a type's
    name and its top-level arguments (commas inside quotes or parentheses do
    not split)."""
    text = type_name.strip()
    head, paren, rest = text.partition("(")
    if not paren or not rest.endswith(")"):
        return text, []
    body, args, depth, start, i = rest[:-1], [], 0, 0, 0
    while i < len(body):
        ch = body[i]
        if ch == "'":
            i = _skip_literal(body, i)
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(body[start:i].strip())
            start = i + 1
        i += 1
    args.append(body[start:].strip())
    return head.strip(), [a for a in args if a]


def value_hash_terms(expr: str, type_name: str, depth: int = 1) -> list[str]:
    """Expressions of types cityHash64 takes on every release (18.16 takes no
    Nullable, Decimal, UUID, LowCardinality or Tuple inside an Array) that
    together say exactly what ``expr``, of ``type_name``, holds."""
    name, args = split_type(type_name)
    if name in _HASHABLE:
        return [expr]
    if name in _RAW_BYTES:
        return [f"reinterpretAsString({expr})"]
    if name == "Nullable" and len(args) == 1:
        return [f"isNull({expr})", *value_hash_terms(f"assumeNotNull({expr})", args[0], depth)]
    if name == "LowCardinality" and len(args) == 1:
        # 18.16 mishandles isNull() of a LowCardinality(Nullable): cast first.
        return value_hash_terms(f"CAST({expr} AS {args[0]})", args[0], depth)
    if name == "Tuple" and args:
        terms = []
        for i, arg in enumerate(args, 1):
            named = _NAMED_ELEMENT.match(arg)
            element = named.group(2) if named else arg  # Tuple(a String, ...)
            terms += value_hash_terms(f"tupleElement({expr}, {i})", element, depth)
        return terms
    if name == "Array" and len(args) == 1:
        var = f"x{depth}"
        inner = value_hash_terms(var, args[0], depth + 1)
        return [f"arrayMap({var} -> {term}, {expr})" for term in inner]
    # Anything else hashes its text form: tuple() so that NULL is text too.
    # Text may depend on the server: compare fingerprints on one version.
    return [f"toString(tuple({expr}))"]


def column_hash_terms(name: str, type_name: str) -> list[str]:
    """Arguments to ``cityHash64`` that describe one column's value."""
    return value_hash_terms(quote(name), type_name)


def fingerprint_sql(db: str, obj: SchemaObject, columns: list[tuple[str, str]]) -> str:
    """One query: the row count and an order-independent digest (the sum,
    modulo 2^64, of a 64-bit hash of each row)."""
    terms = [t for name, type_name in columns for t in column_hash_terms(name, type_name)]
    digest = f"sum(cityHash64({', '.join(terms)}))" if terms else "toUInt64(0)"
    final = " FINAL" if obj.final else ""
    return (
        f"SELECT count() AS rows, toString({digest}) AS digest "
        f"FROM {quote(db)}.{quote(obj.name)}{final}"
    )


def version_key(parts: list[dict[str, Any]], mutations: list[dict[str, Any]]) -> Any:
    """What changes when rows of a MergeTree table change, and stays when
    only background merges run: per partition the lowest and highest block
    number (every INSERT takes a new, higher one; DROP PARTITION removes the
    partition), and the table's mutations (ALTER UPDATE/DELETE)."""
    by_partition: dict[str, list[int]] = {}
    for part in parts:
        lo, hi = int(part["min_block"]), int(part["max_block"])
        span = by_partition.setdefault(str(part["partition_id"]), [lo, hi])
        span[0], span[1] = min(span[0], lo), max(span[1], hi)
    return (
        sorted((k, v[0], v[1]) for k, v in by_partition.items()),
        sorted(str(m["mutation_id"]) for m in mutations),
    )
