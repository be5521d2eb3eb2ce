"""tilld/api/dbus_names.py is the one home of every D-Bus name (STYLE.md, lesson 14)."""

from __future__ import annotations

import ast
import re

from conftest import REPO

from tilld.api import dbus_names as names
from tilld.api.dbus_schema import EVENT_SIGNALS, PROPERTIES, SIGNALS, introspect
from tilld.events import KINDS


def _defined_names() -> set[str]:
    return {value for key, value in vars(names).items() if key.isupper() and isinstance(value, str)}


def test_no_module_retypes_a_name_dbus_names_defines() -> None:
    defined = _defined_names()
    retyped = []
    for path in sorted((REPO / "tilld").rglob("*.py")):
        if path.name == "dbus_names.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in defined:
                retyped.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not retyped, retyped


def test_the_contracts_signals_and_properties_are_served() -> None:
    # CONTRACT.md, "D-Bus": names UIs bind to.
    assert set(SIGNALS) == {
        "ModeChanged",
        "Scanned",
        "SaleCompleted",
        "SyncProgress",
        "DeviceStatus",
    }
    assert {p.name for p in PROPERTIES} == {
        "Mode",
        "ModeSince",
        "ServerReachable",
        "InternetReachable",
        "PendingEntries",
        "PendingTickets",
        "PendingScans",
        "OldestPendingSince",
        "LastSyncSuccess",
        "OfflineCardStored",
        "OfflineCardLimit",
    }


def test_every_event_kind_has_a_signal_of_its_own() -> None:
    # The static half of tests/test_event_parity.py: a kind added to
    # events.KINDS gets a signal, and no two kinds share one.
    registered = {(topic, kind) for topic, kinds in KINDS.items() for kind in kinds}
    assert set(EVENT_SIGNALS) == registered
    signal_names = [s.name for s in EVENT_SIGNALS.values()]
    assert len(set(signal_names)) == len(signal_names)
    introspected = introspect(names.OBJECT_PATH)
    for name in signal_names:
        assert f'<signal name="{name}">' in introspected, name


def test_every_kind_published_in_the_code_is_registered() -> None:
    """Each (topic, kind) a publish call names is in events.KINDS: a kind of one
    topic (scan `registered`) does not stand in for the same word of another."""
    registered = {(topic, kind) for topic, kinds in KINDS.items() for kind in kinds}
    published = set()
    for path in sorted((REPO / "tilld").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        published |= set(re.findall(r'publish\(\s*"([a-z]+)",\s*event="([a-z-]+)"', text))
        published |= {
            ("terminal", kind) for kind in re.findall(r'desk\.publish\(\s*"([a-z-]+)"', text)
        }
    assert len(published) > 15, published
    assert published <= registered, sorted(published - registered)
