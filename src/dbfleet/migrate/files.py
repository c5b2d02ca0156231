"""Migration files: discovery, sections, checksums and placeholders.

Layout: ``<directory>/<database>/<version>_<name>.<ext>`` where ``directory``
is ``migrations.directory`` (relative to the inventory) or ``migrations``
next to the inventory. ``version`` is the leading integer (``0001`` or a
timestamp such as ``20260101120000``); ``name`` follows the ``_``.

Sections, by extension:

- ``.sql``, ``.influxql``: lines ``-- migrate:up``, ``-- migrate:down``,
  ``-- migrate:verify``; ``.cypher``: ``// migrate:...``; ``.redis``:
  ``# migrate:...``. Text before the first marker must be blank or comments.
- ``.json``: an object with the keys ``up``, ``down``, ``verify`` (each a
  list of engine commands); each section is kept as its JSON text.
- ``.py``: functions ``up(ctx)``, ``down(ctx)``, ``verify(ctx)``.

No ``down`` section means irreversible. The checksum is SHA-256 over the
*raw* file normalised to LF line ends without a BOM, so a checkout with
CRLF or an editor's BOM does not change it, and neither does a change of
``migrations.vars``. ``${name}`` placeholders are then substituted; an
unknown name is an error (exit 2). Only ``${...}`` is special: ``$$`` and
``$1`` (PostgreSQL dollar quotes, parameters) pass through.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbfleet.errors import ConfigError, UsageError

SECTIONS = ("up", "down", "verify")
COMMENT_PREFIX = {".sql": "--", ".influxql": "--", ".cypher": "//", ".redis": "#"}
EXTENSIONS = (*COMMENT_PREFIX, ".json", ".py")
_FILE = re.compile(r"^(?P<version>\d+)_(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)$")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class MigrationFile:
    """One parsed migration file. ``sections`` hold the raw text of each
    section present (before placeholders); Python files hold ``""`` for each
    function they define."""

    database: str
    version: int
    name: str
    path: Path
    extension: str
    checksum: str
    sections: dict[str, str]

    @property
    def reversible(self) -> bool:
        return "down" in self.sections

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


def normalise(raw: bytes) -> str:
    """The file's text with a BOM removed and CRLF/CR turned into LF."""
    text = raw.decode("utf-8")
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def checksum(raw: bytes) -> str:
    """SHA-256 (hex) of the normalised file."""
    return hashlib.sha256(normalise(raw).encode("utf-8")).hexdigest()


def render(text: str, variables: dict[str, Any], where: str) -> str:
    """``text`` with each ``${name}`` replaced by ``variables[name]``."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise UsageError(
                f"{where}: unknown placeholder ${{{name}}} (migrations.vars defines: {known})"
            )
        item = variables[name]
        return str(item).lower() if isinstance(item, bool) else str(item)

    return _PLACEHOLDER.sub(value, text)


def parse_sections(text: str, extension: str, where: str) -> dict[str, str]:
    """The sections of a normalised file (see the module docstring)."""
    if extension == ".json":
        return _json_sections(text, where)
    if extension == ".py":
        return _python_sections(text, where)
    prefix = COMMENT_PREFIX[extension]
    marker = re.compile(rf"^\s*{re.escape(prefix)}\s*migrate:(\S+)\s*$")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.split("\n"), 1):
        found = marker.match(line)
        if found:
            section = found.group(1)
            if section not in SECTIONS:
                raise ConfigError(
                    f"{where}:{number}: unknown section {section!r} (use {', '.join(SECTIONS)})"
                )
            if section in sections:
                raise ConfigError(f"{where}:{number}: section {section!r} appears twice")
            current = sections[section] = []
        elif current is not None:
            current.append(line)
        elif line.strip() and not line.strip().startswith(prefix):
            raise ConfigError(
                f"{where}:{number}: text before the first '{prefix} migrate:up' marker"
            )
    if "up" not in sections:
        raise ConfigError(f"{where}: no '{prefix} migrate:up' section")
    return {name: "\n".join(lines).strip("\n") for name, lines in sections.items()}


def _json_sections(text: str, where: str) -> dict[str, str]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: invalid JSON: {exc}") from None
    if not isinstance(document, dict) or "up" not in document:
        raise ConfigError(
            f"{where}: a JSON migration is an object with 'up' (and 'down', 'verify')"
        )
    unknown = set(document) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key, value in document.items():
        if not isinstance(value, list):
            raise ConfigError(f"{where}: '{key}' must be a list of commands")
    return {key: json.dumps(value) for key, value in document.items()}


def _python_sections(text: str, where: str) -> dict[str, str]:
    try:
        tree = ast.parse(text, filename=where)
    except SyntaxError as exc:
        raise ConfigError(f"{where}:{exc.lineno}: {exc.msg}") from None
    defined = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name in SECTIONS
    }
    if "up" not in defined:
        raise ConfigError(f"{where}: a Python migration defines up(ctx)")
    return dict.fromkeys(sorted(defined), "")


def read_file(database: str, path: Path) -> MigrationFile:
    """Parse one migration file (``ConfigError`` naming the file and line)."""
    found = _FILE.match(path.stem)
    if not found or path.suffix not in EXTENSIONS:
        raise ConfigError(
            f"{path}: not a migration file name; use <version>_<name>"
            f"{{{','.join(EXTENSIONS)}}}, e.g. 0001_create_users.sql"
        )
    raw = path.read_bytes()
    try:
        text = normalise(raw)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return MigrationFile(
        database=database,
        version=int(found.group("version")),
        name=found.group("name"),
        path=path,
        extension=path.suffix,
        checksum=checksum(raw),
        sections=parse_sections(text, path.suffix, str(path)),
    )


def discover(database: str, directory: Path) -> list[MigrationFile]:
    """The database's migration files, by version; two files with one
    version are an error. A missing directory means no migrations."""
    if not directory.is_dir():
        return []
    files = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.is_dir() or path.suffix in (".md", ".txt"):
            continue
        files.append(read_file(database, path))
    by_version: dict[int, MigrationFile] = {}
    for item in files:
        if item.version in by_version:
            raise ConfigError(
                f"{directory}: version {item.version} is used twice "
                f"({by_version[item.version].path.name}, {item.path.name})"
            )
        by_version[item.version] = item
    return sorted(files, key=lambda f: f.version)


def template(extension: str) -> str:
    """The text of a new migration file (``migrate new``)."""
    if extension == ".json":
        return '{\n  "up": [],\n  "down": [],\n  "verify": []\n}\n'
    if extension == ".py":
        return (
            '"""Migration: up(ctx) applies it, down(ctx) reverts it (delete down if it '
            'cannot be undone)."""\n\n\ndef up(ctx):\n    pass\n\n\ndef down(ctx):\n    pass\n'
        )
    prefix = COMMENT_PREFIX[extension]
    return f"{prefix} migrate:up\n\n\n{prefix} migrate:down\n\n\n{prefix} migrate:verify\n"


ENGINE_EXTENSION = {
    "postgresql": ".sql", "mysql": ".sql", "sqlite": ".sql", "clickhouse": ".sql",
    "mongodb": ".json", "weaviate": ".json", "neo4j": ".cypher", "redis": ".redis",
    "influxdb": ".influxql",
}  # fmt: skip
"""The extension ``migrate new`` gives a database's files (``.py`` works for any)."""
