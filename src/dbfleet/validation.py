"""Checks of the names and locations a user types, shared by the inventory
model and the commands: inventory names, restore targets and scratch names,
and URLs that must not carry a password (passwords come from
``password_env``/``password_file``, never from a URL that would be echoed)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
"""Inventory names (databases, repositories): they appear in snapshot
selectors (``notes:latest``), file names and job names, so no ``:``, ``/``,
spaces or control characters."""

NAME_RULE = "names are 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"


def has_url_password(text: str) -> bool:
    """Whether ``text`` is a URL with a password in its userinfo."""
    if "://" not in text:
        return False
    try:
        return urlsplit(text).password is not None
    except ValueError:
        return "@" in text.split("://", 1)[1].split("/", 1)[0]


def target_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a restore target or scratch location (for
    every engine), or ``None``. Engines check their own syntax on top."""
    if not name.strip():
        return "must not be empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "must not contain control characters (newline, tab, NUL, ...)"
    if has_url_password(name):
        return "must not contain a password; use password_env or --password-env"
    if ".." in re.split(r"[/\\]", name):
        return "must not contain '..' (a target is written where it is named, never above it)"
    return None


def nested_url_passwords(value: Any, where: str) -> list[str]:
    """Paths of strings nested in ``value`` that are URLs with a password."""
    if isinstance(value, str):
        return [where] if has_url_password(value) else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in nested_url_passwords(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nested_url_passwords(v, f"{where}.{i}")]
    return []
