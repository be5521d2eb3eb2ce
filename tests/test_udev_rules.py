"""The shipped udev rules: well-formed, and every device given to tilld alone."""

from __future__ import annotations

import re

from conftest import REPO

RULES = REPO / "udev" / "70-tilld.rules"
# KEY=="value", ATTRS{name}=="value", SYMLINK+="value" ...
CLAUSE = re.compile(r'^(?P<key>[A-Z]+(?:\{[^}]+\})?)(?P<op>==|!=|\+=|:=|=)"(?P<value>[^"]*)"$')
MATCH_KEYS = {"SUBSYSTEM", "KERNEL", "ATTR", "ATTRS", "ENV", "KERNELS", "SUBSYSTEMS"}


def rules() -> list[list[tuple[str, str, str]]]:
    parsed = []
    for number, line in enumerate(RULES.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        clauses = []
        for part in line.split(", "):
            match = CLAUSE.match(part.strip())
            assert match, f"line {number}: cannot parse {part!r}"
            clauses.append((match["key"], match["op"], match["value"]))
        parsed.append(clauses)
    return parsed


def test_the_rules_parse_and_there_are_rules_for_each_kind_of_device() -> None:
    names = {value for rule in rules() for key, _, value in rule if key == "SYMLINK"}
    assert {"tilld/scanner", "tilld/scanner-kbd", "tilld/printer-usb", "tilld/terminal"} <= names


def test_every_rule_matches_a_subsystem_and_gives_the_device_to_tilld_only() -> None:
    for rule in rules():
        keys = {(key.split("{")[0], op) for key, op, _ in rule}
        assert ("SUBSYSTEM", "==") in keys, rule
        assert {k for k, op in keys if op == "=="} <= MATCH_KEYS, rule
        assignments = {key: value for key, op, value in rule if op in ("=", "+=")}
        assert assignments.get("GROUP") == "tilld", rule
        assert assignments.get("MODE") == "0660", rule
        assert assignments.get("SYMLINK", "").startswith("tilld/"), rule


def test_generic_usb_serial_adapters_are_not_claimed_by_vendor() -> None:
    # FTDI and Prolific adapters carry any device; claiming them all would
    # hand a customer display or a modem to tilld.
    for rule in rules():
        vendors = {v for k, _, v in rule if k in ("ATTRS{idVendor}", "ATTR{idVendor}")}
        assert not vendors & {"0403", "067b"}, rule
