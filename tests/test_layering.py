"""The dependency direction of ARCHITECTURE.md: drivers know bytes, never sales."""

from __future__ import annotations

import ast

import pytest
from conftest import REPO


def test_drivers_import_nothing_from_tilld() -> None:
    offenders = []
    for path in (REPO / "drivers").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "tilld"
            ]
    assert not offenders, offenders


def tilld_import_graph() -> dict[str, set[str]]:
    """Every tilld module and the tilld modules it imports, type-only imports included."""
    root = REPO / "tilld"
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = (path, is_package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                # `from . import x` may name a submodule or a name of the package.
                targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_tilld_has_no_import_loop_not_even_a_type_only_one() -> None:
    graph = tilld_import_graph()
    assert "tilld.till" in graph and "tilld.journal" in graph["tilld.till"]  # the graph is real
    assert not import_cycles(graph)


def test_the_cycle_finder_sees_a_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]


# The one module that builds the terminal's driver from the configuration.
TERMINAL_BUILDER = "tilld/devices.py"


@pytest.mark.parametrize("protocol", ["zvt", "nexo"])
def test_only_the_terminal_builder_knows_which_protocol_the_terminal_speaks(protocol) -> None:
    """Card payments see the protocol-neutral CardTerminal: a protocol changes one module."""
    package = f"drivers.{protocol}"
    knows = set()
    for path in (REPO / "tilld").rglob("*.py"):
        if "sim" in path.relative_to(REPO / "tilld").parts:
            continue  # the simulators' own commands may start a protocol's simulator
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n == package or n.startswith(f"{package}.") for n in names):
                knows.add(str(path.relative_to(REPO)))
    assert sorted(knows) == [TERMINAL_BUILDER]
