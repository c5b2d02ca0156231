"""The package layout's rules (issue #11), checked on the source itself:

- ``operations/``, ``cli/``, ``schedule/`` and ``migrate/`` reach engines only through
  ``dbfleet.engines.base``, ``.fingerprints``, ``.registry`` and ``.names``, never an engine
  package by name;
- no import circle among dbfleet's modules, counting imports inside
  functions too (only those under ``TYPE_CHECKING`` never run);
- the registry, the engine names and the conformance suite list the same
  engines, and each engine's ``capabilities`` agree with what the registry
  offers for it.
"""

from __future__ import annotations

import ast
import graphlib
import importlib
from pathlib import Path

import pytest
from tests.conformance.engine_cases import CASES

from dbfleet.engines import registry
from dbfleet.engines.names import ENGINES

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "dbfleet"
ENGINE_FACING = {
    "dbfleet.engines.base",
    "dbfleet.engines.fingerprints",
    "dbfleet.engines.registry",
    "dbfleet.engines.names",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The dbfleet modules ``path`` imports (``from pkg import sub`` counts
    as an import of ``pkg.sub`` when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("dbfleet"))
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if not node.module.startswith("dbfleet"):
                    continue
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in MODULES else node.module)
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif (
                isinstance(node, ast.Try)
                or not top_level_only
                and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            ):
                visit(node.body)

    visit(tree.body)
    return found


@pytest.mark.parametrize("layer", ["operations", "cli", "schedule", "observe", "migrate"])
def test_layers_reach_engines_only_through_the_registry(layer: str) -> None:
    offending = []
    for name, path in MODULES.items():
        if not name.startswith(f"dbfleet.{layer}"):
            continue
        for imported in imports(path, top_level_only=False):
            if imported.startswith("dbfleet.engines") and imported not in ENGINE_FACING:
                offending.append(f"{name} imports {imported}")
    assert offending == []


def test_no_import_circles() -> None:
    graph = {
        name: imports(path, top_level_only=False) & MODULES.keys() for name, path in MODULES.items()
    }
    try:
        graphlib.TopologicalSorter(graph).static_order()
    except graphlib.CycleError as exc:
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")


def test_the_check_finds_a_circle() -> None:
    """The circle check is not vacuous: a made-up circle is found."""
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).static_order())


def test_registry_names_and_conformance_list_the_same_engines() -> None:
    assert set(registry.ENTRIES) == ENGINES
    assert set(CASES) == ENGINES, "every engine package runs the conformance suite"


def test_every_engine_is_a_package() -> None:
    for engine, entry in registry.ENTRIES.items():
        module = entry.engine.partition(":")[0]
        assert module == f"dbfleet.engines.{engine}"
        assert (PACKAGE / "engines" / engine / "__init__.py").is_file()


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_capabilities_agree_with_the_registry(engine: str) -> None:
    entry = registry.ENTRIES[engine]
    capabilities = registry.engine_class(engine).capabilities
    assert capabilities.point_in_time == (entry.point_in_time is not None)
    assert capabilities.health_sample == (entry.health_sampler is not None)
    targets = (entry.point_in_time, entry.change_archive, entry.chained_snapshots,
               entry.health_sampler)  # fmt: skip
    for target in targets:
        if target:
            module, _, attribute = target.partition(":")
            assert hasattr(importlib.import_module(module), attribute), target
    assert capabilities.migrations == (entry.migrations is not None)
    if entry.migrations:
        module, _, attribute = entry.migrations.partition(":")
        assert hasattr(importlib.import_module(module), attribute), entry.migrations
    assert not capabilities.subjects


def test_an_engine_without_point_in_time_says_unsupported() -> None:
    from dbfleet.errors import UsageError

    with pytest.raises(UsageError, match="unsupported for redis"):
        registry.point_in_time("redis")


def test_an_engine_without_migrations_says_unsupported() -> None:
    from dbfleet.config import DatabaseConfig
    from dbfleet.errors import UsageError

    config = DatabaseConfig(engine="redis", url="redis://127.0.0.1:6379/0")
    with pytest.raises(UsageError, match="migrations are unsupported for redis"):
        registry.migrations_for(config)
