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
