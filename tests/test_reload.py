"""Which keys reload live and which need a restart: the table in tilld/reload.py and its docs."""

from __future__ import annotations

import re

from conftest import REPO
from test_docs import config_keys

from tilld.config import Settings
from tilld.reload import changed_keys, keep_restart_only, needs_restart


def settings(**sections: dict) -> Settings:
    return Settings(**sections)


def test_changed_keys_names_each_differing_leaf_including_secrets():
    old = settings()
    new = settings(
        card={"offline_limit": 10},
        devices={"terminal": {"password": "123456"}},
        connectivity={"internet_probes": ["tcp://192.0.2.1:443"]},
    )
    assert changed_keys(old, new) == [
        "card.offline_limit",
        "connectivity.internet_probes",
        "devices.terminal.password",
    ]
    assert changed_keys(old, settings()) == []


def test_restart_only_keys_keep_their_running_value_and_the_rest_take_the_new_one():
    old = settings(till={"id": "till-a"}, api={"socket_path": "/run/a.sock"})
    new = settings(
        till={"id": "till-b", "seller_name": "New AB"},
        api={"socket_path": "/run/b.sock"},
        sync={"batch_size": 5},
    )
    merged = keep_restart_only(old, new)
    assert merged.till.id == "till-a" and str(merged.api.socket_path) == "/run/a.sock"
    assert merged.till.seller_name == "New AB" and merged.sync.batch_size == 5
    assert changed_keys(old, merged) == ["sync.batch_size", "till.seller_name"]


def test_the_configuration_docs_mark_exactly_the_restart_only_keys():
    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    marked = {
        m.group(1)
        for m in re.finditer(r"^\| `([a-z_.]+)` \|.*\*\*restart\*\* \|$", doc, re.MULTILINE)
    }
    assert marked == {key for key in config_keys(Settings) if needs_restart(key)}
