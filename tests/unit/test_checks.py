"""Check verdicts and the HTTP status they give."""

from __future__ import annotations

import pytest

from dbfleet.observe.checks import Check, http_status, worst


def test_all_pass_or_none_is_200() -> None:
    assert http_status([]) == 200
    assert http_status([Check("reachable", "pass", True, True)]) == 200


def test_a_warning_is_200_unless_strict() -> None:
    checks = [Check("reachable", "pass"), Check("connections", "warn", 0.85, 0.8)]
    assert worst(checks) == "warn"
    assert http_status(checks) == 200
    assert http_status(checks, strict=True) == 503


@pytest.mark.parametrize("position", [0, 1, 2])
def test_one_failure_anywhere_is_503(position: int) -> None:
    checks = [Check("a", "pass"), Check("b", "warn"), Check("c", "pass")]
    checks.insert(position, Check("reachable", "fail", False, True))
    assert worst(checks) == "fail"
    assert http_status(checks) == 503
    assert http_status(checks, strict=True) == 503


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="pass, warn, fail"):
        Check("x", "ok")  # type: ignore[arg-type]


def test_as_dict_has_the_four_fields() -> None:
    assert Check("lag", "warn", 40.0, 30.0).as_dict() == {
        "name": "lag",
        "status": "warn",
        "observed": 40.0,
        "threshold": 30.0,
    }
