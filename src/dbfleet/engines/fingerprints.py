"""Comparing fingerprints: what a verify or drill concludes from the
fingerprint recorded at backup and the one of the restored copy.

Each engine computes its own fingerprint (``Engine.fingerprint``); the shape
every engine shares is ``{"format": n, "tables": {name: {...}}, ...}``.
"""

from __future__ import annotations

from typing import Any


def compare_fingerprints(
    expected: dict[str, Any], actual: dict[str, Any], tables: tuple[str, ...] = ()
) -> list[str]:
    """Differences between two fingerprints, one line each (empty: equal).

    Fingerprints are ``{"tables": {name: {...}}, ...}``; other top-level keys
    (sequences, large objects, schema) are compared whole unless ``tables``
    restricts the comparison to those tables. When ``expected`` is an older
    format than ``actual``, only what it has is compared: a key the newer
    format added (a table's ``schema``, say) is no difference."""
    older = fingerprint_format(expected) < fingerprint_format(actual)
    differences = []
    exp_tables: dict[str, Any] = expected.get("tables", {})
    act_tables: dict[str, Any] = actual.get("tables", {})
    names = set(tables) if tables else set(exp_tables) | set(act_tables)
    for name in sorted(names):
        e, a = exp_tables.get(name), act_tables.get(name)
        if e is None:
            differences.append(f"{name}: present after restore but not in the backup")
        elif a is None:
            differences.append(f"{name}: missing after restore")
        elif keys := _differing(e, a, older):
            differences.append(
                f"{name}: " + ", ".join(f"{k} {e.get(k)} != {a.get(k)}" for k in keys)
            )
    if not tables:
        for key in _differing(expected, actual, older, skip=("tables", "format")):
            differences.append(f"{key}: backup {expected.get(key)} != restored {actual.get(key)}")
    return differences


def _differing(
    expected: dict[str, Any], actual: dict[str, Any], older: bool, skip: tuple[str, ...] = ()
) -> list[str]:
    """The keys whose values differ, in ``expected``'s order (then
    ``actual``'s own keys, unless ``expected`` is an older format)."""
    keys = list(expected) + ([] if older else [k for k in actual if k not in expected])
    return [k for k in keys if k not in skip and expected.get(k) != actual.get(k)]


def fingerprint_format(fingerprint: dict[str, Any]) -> int:
    """The fingerprint's format: an engine raises it when it changes what the
    fingerprint hashes; fingerprints written before the key existed are 1."""
    value = fingerprint.get("format", 1)
    return value if isinstance(value, int) else 1


def incomparable(expected: dict[str, Any], actual: dict[str, Any], differences: list[str]) -> str:
    """Why ``differences`` prove nothing, or ``""`` when they are real.

    A snapshot fingerprinted by an older dbfleet (an older format) may differ
    from what this dbfleet computes for the very same data: reporting that as
    a mismatch would be a false alarm. Equal fingerprints still prove the
    restore whatever their formats, so only differences are in question."""
    old, new = fingerprint_format(expected), fingerprint_format(actual)
    if not differences or old == new:
        return ""
    return (
        f"the snapshot's fingerprint is format {old}, this dbfleet computes format {new}; "
        f"{len(differences)} difference(s) may come from the format alone, so this "
        "restore is neither proved nor disproved (take a new backup and verify that)"
    )
