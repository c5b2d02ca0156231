"""API tokens: the file holds hashes only (mode 0600), roles rank viewer <
operator < admin, a change on disk is seen by a running store, and
``dbfleet token`` says what went wrong in one line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dbfleet.errors import ConfigError, UsageError
from dbfleet.web.config import HttpConfig, parse_listen, tokens_path
from dbfleet.web.tokens import ROLES, TokenStore, digest, role_rank


def test_add_verify_remove_and_the_file_holds_only_hashes(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.yaml")
    first = store.add("grafana", "viewer")
    middle = store.add("ci", "operator")
    last = store.add("root", "admin")
    assert len({first, middle, last}) == 3 and all(len(t) >= 43 for t in (first, middle, last))
    text = store.path.read_text()
    for token in (first, middle, last):
        assert token not in text
        assert digest(token) in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    other = TokenStore(store.path)  # a server's store, reading what the CLI wrote
    found = [other.verify(t) for t in (first, middle, last)]
    assert [(t.name, t.role) for t in found if t] == [
        ("grafana", "viewer"), ("ci", "operator"), ("root", "admin"),
    ]  # fmt: skip
    assert other.verify("") is None and other.verify(first + "x") is None
    store.remove("ci")
    assert other.verify(middle) is None  # revocation is seen without a restart
    assert other.verify(last) is not None
    assert [t.public() for t in other.tokens()][0] == {
        "name": "grafana", "role": "viewer", "created_at": found[0].created_at if found[0] else ""
    }  # fmt: skip
    assert not list(tmp_path.glob(".t.yaml.*")), "no staging file left behind"


def test_roles_rank_and_bad_input(tmp_path: Path) -> None:
    assert [role_rank(r) for r in ROLES] == [0, 1, 2]
    store = TokenStore(tmp_path / "t.yaml")
    store.add("a", "viewer")
    with pytest.raises(UsageError, match="exists already"):
        store.add("a", "admin")
    with pytest.raises(UsageError, match="role 'boss'"):
        store.add("b", "boss")
    with pytest.raises(UsageError, match="token name"):
        store.add("-bad name", "viewer")
    with pytest.raises(UsageError, match=r"no token named 'zz'.*defined: a"):
        store.remove("zz")
    store.path.write_text("tokens:\n  - {name: x, role: root, sha256: abc}\n")
    with pytest.raises(ConfigError, match="role"):
        store.tokens()
    store.path.write_text("[1, 2]\n")
    with pytest.raises(ConfigError, match="not a tokens file"):
        store.tokens()
    assert TokenStore(tmp_path / "missing.yaml").tokens() == []


def test_listen_addresses_and_tokens_path(tmp_path: Path) -> None:
    assert parse_listen("127.0.0.1:8470") == ("127.0.0.1", 8470)
    assert parse_listen(":8470") == ("0.0.0.0", 8470)
    assert parse_listen("[::1]:80") == ("::1", 80)
    assert parse_listen("localhost:0") == ("localhost", 0)
    for bad in ("8470", "host:", "host:99999", "host:x"):
        with pytest.raises(ValueError, match="listen address"):
            parse_listen(bad)
    inventory = tmp_path / "prod.yaml"
    assert tokens_path(HttpConfig(), inventory) == tmp_path / "prod.tokens.yaml"
    assert tokens_path(HttpConfig(tokens_file=Path("t/x.yaml")), inventory) == tmp_path / "t/x.yaml"
    assert tokens_path(HttpConfig(tokens_file=Path("/etc/x.yaml")), inventory) == Path(
        "/etc/x.yaml"
    )
