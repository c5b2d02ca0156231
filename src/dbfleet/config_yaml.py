"""Reading the inventory file: bytes -> text -> YAML document, strictly.

Every way a file can fail to be an inventory ends in one ``ConfigError``
line naming the file: not found, unreadable, too big, binary, not UTF-8,
YAML syntax, a key given twice in one mapping (PyYAML's own loader keeps
the last one silently, so a second ``notes:`` database would quietly replace
the first; here both lines are named), and an empty file or one without
repositories or databases (almost always the wrong file).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode

from dbfleet.errors import ConfigError

MAX_INVENTORY_BYTES = 4 * 1024 * 1024
"""An inventory is a few KB; a bigger file (or /dev/zero) is the wrong file."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
HINT = "see the README's inventory section"


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, first_line: int, line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.first_line, self.line = key, first_line, line


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping
    (merge keys, ``<<: *base``, may still be overridden explicitly)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            line = key_node.start_mark.line + 1
            if first is not None:
                raise DuplicateKeyError(key, first, line)
            seen[key] = line
        return super().construct_mapping(node, deep)


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_INVENTORY_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"inventory file {path} not found",
            hint="pass --config FILE, set DBFLEET_CONFIG, or create ./dbfleet.yaml; " + HINT,
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read inventory {path}: {exc.strerror}") from None
    if len(data) > MAX_INVENTORY_BYTES:
        raise ConfigError(
            f"{path} is larger than {MAX_INVENTORY_BYTES // 1024 // 1024} MiB: "
            "not an inventory (is it the right file?)"
        )
    return data


def _decode(path: Path, data: bytes) -> str:
    if b"\0" in data:
        raise ConfigError(f"{path} is a binary file, not a YAML inventory (is it the right file?)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, "
            f"column {column}",
            hint="save the inventory as UTF-8",
        ) from None


def read_document(path: Path) -> Any:
    """The YAML document in ``path`` (``None`` for an empty file)."""
    text = _decode(path, _read_bytes(path))
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except DuplicateKeyError as exc:
        raise ConfigError(
            f"{path}: key {exc.key!r} at line {exc.line} is already given at line {exc.first_line}",
            hint="each key once per mapping: the second would silently replace the first",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None


def missing_sections(path: Path, document: Any, known: Collection[str]) -> None:
    """An inventory file without repositories or without databases is
    almost always the wrong file (or an unfinished one): say which.
    ``known``: the top-level keys of an inventory."""
    hint = "is it the right file? see the README's inventory section"
    if document is None or document == {}:
        raise ConfigError(
            f"{path} is empty: an inventory names its repositories and databases", hint=hint
        )
    if not isinstance(document, dict) or set(map(str, document)) - set(known):
        return  # parse_inventory says what is wrong with it (a misspelt section, say)
    missing = [k for k in ("repositories", "databases") if document.get(k) in (None, {}, [])]
    if missing:
        raise ConfigError(
            f"{path} has no {' and no '.join(missing)}: an inventory needs at least one "
            "repository and one database",
            hint=hint,
        )
