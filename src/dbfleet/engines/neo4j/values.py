"""Neo4j property values <-> JSON, with type tags, and content hashes.

Property values in the ``graph`` stream are JSON with their Neo4j type kept
(see docs/neo4j.md): booleans, integers (64-bit, written as JSON integers),
floats (always with a ``.`` or exponent, so ``1.0`` stays a float; NaN and
infinities as Python's ``NaN``/``Infinity`` literals), strings and lists of
those are plain JSON. Every other type is a one-key object whose key says
the type (properties are never maps, so an object is always such a tag):

=========  ===========================================  =====================
tag        value                                        Neo4j type
=========  ===========================================  =====================
``$b``     base64                                       byte array
``$d``     ``[y, m, d]``                                Date
``$lt``    ``[h, m, s, ns]``                            LocalTime
``$t``     ``[h, m, s, ns, offset_seconds]``            Time
``$ldt``   ``[y, m, d, h, mi, s, ns]``                  LocalDateTime
``$dt``    ``[y, m, d, h, mi, s, ns, zone]``            DateTime; zone: an
                                                        offset in seconds or
                                                        an IANA name
``$dur``   ``[months, days, seconds, nanoseconds]``     Duration
``$pt``    ``[srid, x, y]`` or ``[srid, x, y, z]``      Point
=========  ===========================================  =====================

A DateTime with a named zone is kept as wall-clock time plus the zone name
(what Neo4j stores); the offset follows from the zone rules on restore. The
driver reads both ``...Z`` (offset) and ``...Z[UTC]`` (zone id) as pytz's
UTC, so both are kept as offset 0 and restored as ``...Z``.

Content hashes (for fingerprints) digest the canonical JSON of the encoded
value, so they do not depend on the order properties come in, and a float
never equals an integer.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import math
from typing import Any

import pytz  # type: ignore[import-untyped]  # the driver's own time zones
from neo4j.spatial import CartesianPoint, Point, WGS84Point
from neo4j.time import Date, DateTime, Duration, Time

from dbfleet.errors import EngineError

Encoded = Any
_POINTS: dict[int, type[Point]] = {7203: CartesianPoint, 9157: CartesianPoint,
                                   4326: WGS84Point, 4979: WGS84Point}  # fmt: skip


def _zone(value: DateTime | Time) -> str | int | None:
    tz = value.tzinfo
    if tz is None:
        return None
    name = getattr(tz, "zone", None) or getattr(tz, "key", None)  # pytz / zoneinfo
    if name and not str(name).startswith("UTC+") and str(name) not in ("UTC",):
        return str(name)
    offset = value.utcoffset()
    if offset is None:
        return None
    return int(offset.total_seconds())


def encode(value: Any) -> Encoded:
    """A driver value as type-tagged JSON data (``EngineError`` for a type
    dbfleet does not know, rather than storing it wrongly)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, list):  # not tuple: Duration and Point are tuples
        return [encode(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Point):
        return {"$pt": [int(value.srid or 0), *(float(c) for c in value)]}
    if isinstance(value, DateTime):
        fields = [value.year, value.month, value.day, value.hour, value.minute,
                  int(value.second), value.nanosecond]  # fmt: skip
        zone = _zone(value)
        return {"$ldt": fields} if zone is None else {"$dt": [*fields, zone]}
    if isinstance(value, Date):
        return {"$d": [value.year, value.month, value.day]}
    if isinstance(value, Time):
        fields = [value.hour, value.minute, int(value.second), value.nanosecond]
        if value.tzinfo is None:
            return {"$lt": fields}
        offset = value.utcoffset()
        return {"$t": [*fields, int(offset.total_seconds()) if offset is not None else 0]}
    if isinstance(value, Duration):
        return {"$dur": [value.months, value.days, value.seconds, value.nanoseconds]}
    broken = getattr(value, "error", None)
    if type(value).__name__ == "BrokenHydrationObject" and broken is not None:
        # Neo4j holds temporal values the driver cannot represent: years
        # outside 1..9999, or a zone its pytz does not know.
        raise EngineError(
            f"the Python driver cannot read a value of this graph ({broken})",
            hint="a logical backup needs dates within years 1-9999 and time zones pytz knows; "
            "back the database up with options.mode: offline",
        )
    raise EngineError(f"cannot back up a Neo4j property of type {type(value).__name__}")


def _offset(seconds: int) -> _dt.tzinfo:
    """A fixed offset the driver can send: it takes pytz zones (zoneinfo
    crashes it) and whole minutes only."""
    if seconds % 60:
        raise EngineError(f"the driver cannot restore a UTC offset of {seconds} s (not whole "
                          "minutes)")  # fmt: skip
    tz: _dt.tzinfo = pytz.FixedOffset(seconds // 60)
    return tz


def decode(data: Encoded) -> Any:
    """The driver value for type-tagged JSON data (inverse of :func:`encode`)."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    ((tag, v),) = data.items()
    if tag == "$b":
        return bytearray(base64.b64decode(v))
    if tag == "$pt":
        srid, *coords = v
        cls = _POINTS.get(int(srid))
        if cls is None:
            raise EngineError(f"the backup holds a point with unknown SRID {srid}")
        return cls(coords)
    if tag == "$d":
        return Date(*v)
    if tag == "$lt":
        return Time(*v)
    if tag == "$t":
        return Time(v[0], v[1], v[2], v[3], tzinfo=_offset(int(v[4])))
    if tag == "$ldt":
        return DateTime(*v)
    if tag == "$dt":
        zone = v[7]
        if isinstance(zone, str):
            # pytz zones need localize(): a tzinfo passed to the constructor
            # would use the zone's first (local mean time) offset.
            return pytz.timezone(zone).localize(DateTime(*v[:7]))
        # A stdlib offset, which the driver sends as an offset: pytz's
        # FixedOffset(0) is pytz.utc, which it sends as the zone id "UTC", so
        # "...Z" would come back as "...Z[UTC]".
        _offset(int(zone))  # whole minutes only
        offset = _dt.timezone(_dt.timedelta(seconds=int(zone)))
        return DateTime(v[0], v[1], v[2], v[3], v[4], v[5], v[6], tzinfo=offset)
    if tag == "$dur":
        return Duration(months=v[0], days=v[1], seconds=v[2], nanoseconds=v[3])
    raise EngineError(f"unknown value tag {tag!r} in the backup (made by a newer dbfleet?)")


def encode_props(props: dict[str, Any]) -> dict[str, Encoded]:
    encoded = {}
    for key, value in props.items():
        try:
            encoded[key] = encode(value)
        except EngineError as exc:
            raise EngineError(f"property {key!r}: {exc.message}", hint=exc.hint) from None
    return encoded


def decode_props(props: dict[str, Encoded]) -> dict[str, Any]:
    return {k: decode(v) for k, v in props.items()}


def _canonical(data: Any) -> Any:
    """JSON that digests the same for equal values: floats as their exact
    hex (also NaN), never confusable with integers."""
    if isinstance(data, float):
        return {"$f": data.hex() if math.isfinite(data) else repr(data)}
    if isinstance(data, list):
        return [_canonical(v) for v in data]
    if isinstance(data, dict):
        return {k: _canonical(v) for k, v in data.items()}
    return data


def node_hash(labels: list[str], props: dict[str, Encoded]) -> bytes:
    """16-byte content hash of a node: its labels (as a set) and properties."""
    text = json.dumps([sorted(labels), _canonical(props)], sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=16, person=b"dbfleet-neo4j-n").digest()


def rel_hash(rel_type: str, props: dict[str, Encoded], start: bytes, end: bytes) -> bytes:
    """16-byte content hash of a relationship: type, properties and the
    content hashes of its start and end nodes (direction matters)."""
    text = json.dumps([rel_type, _canonical(props)], sort_keys=True, ensure_ascii=False)
    h = hashlib.blake2b(digest_size=16, person=b"dbfleet-neo4j-r")
    h.update(start)
    h.update(end)
    h.update(text.encode())
    return h.digest()
