"""The dependency direction of ARCHITECTURE.md: drivers know bytes, never sales."""

from __future__ import annotations

import ast

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
