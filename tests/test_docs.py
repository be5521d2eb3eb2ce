"""The docs name everything the code offers: every config key, operation and refusal reason."""

from __future__ import annotations

import re

from conftest import REPO
from pydantic import BaseModel

from tilld.api.operations import OPERATIONS
from tilld.cli.api_docs import BEGIN, END, with_reason_table
from tilld.config import Settings
from tilld.errors import Reason


def config_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += config_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_every_configuration_key_is_documented():
    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [key for key in config_keys(Settings) if f"`{key}`" not in doc]
    assert not missing, f"docs/configuration.md lacks {missing}"


def test_every_operation_is_documented():
    doc = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [op.name for op in OPERATIONS if f"### `{op.name}`" not in doc]
    assert not missing, f"docs/api.md lacks {missing}"


def test_every_refusal_reason_in_the_code_is_documented():
    doc = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    reasons = set()
    for path in (REPO / "tilld").rglob("*.py"):
        text = path.read_text()
        reasons |= set(re.findall(r'(?:Refused|_refuse)\(\s*"([a-z-]+)"', text))
        members = re.findall(r"(?:Refused|_refuse)\(\s*Reason\.([A-Z_]+)\b", text)
        reasons |= {Reason[name].value for name in members}
    assert len(reasons) > 15, reasons
    missing = sorted(r for r in reasons if f"`{r}`" not in doc)
    assert not missing, f"docs/api.md lacks refusal reasons {missing}"


def test_the_refusal_reason_table_is_what_make_api_docs_writes():
    doc = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    assert with_reason_table(doc) == doc, "docs/api.md is stale: run make api-docs"


def test_every_registered_reason_is_in_the_table():
    doc = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    table = doc.partition(BEGIN)[2].partition(END)[0]
    missing = [r.value for r in Reason if f"| `{r.value}` | {r.when} |" not in table]
    assert not missing, missing


def test_the_dbus_method_table_names_every_method():
    from tilld.api.dbus_schema import METHODS

    doc = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [
        name for name, m in METHODS.items() if f"| `{m.operation.name}` | `{name}` |" not in doc
    ]
    assert not missing, f"docs/api.md's D-Bus table lacks {missing}"
    assert "`LastRefusal`" in doc


def architecture_names(path) -> list[str]:
    """How docs/architecture.md may name a module: its path, in backticks.

    A tilld module by its path under tilld/ (`journal/store.py`) or from the
    repository (`tilld/journal/store.py`); a driver module from the
    repository (`drivers/zvt/device.py`); a package by its folder
    (`journal/`, `drivers/zvt/`)."""
    relative = path.relative_to(REPO)
    if path.name == "__init__.py":
        relative = relative.parent
        names = [f"{relative.as_posix()}/"]
    else:
        names = [relative.as_posix()]
    if relative.parts[0] == "tilld":
        names.append(names[0].removeprefix("tilld/"))
    return [f"`{name}`" for name in names]


def test_every_module_is_named_in_architecture_md():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = [
        path
        for tree in ("tilld", "drivers")
        for path in sorted((REPO / tree).rglob("*.py"))
        # The two roots, and a package's __main__ (its command, named with the package).
        if path.parent != REPO / tree or path.name != "__init__.py"
        if path.name != "__main__.py"
    ]
    assert len(modules) > 100, len(modules)
    missing = [
        str(path.relative_to(REPO))
        for path in modules
        if not any(name in doc for name in architecture_names(path))
    ]
    assert not missing, f"docs/architecture.md does not name {missing}"
