"""The refusal reason registry (tilld/errors.py) holds every code the code refuses with.

An unregistered or misspelt code is a bug this file finds by reading the
source (an AST walk, not a regex), so it never reaches a till: every string
that can become the reason of a ``Refused(...)`` or a rules ``_refuse(...)``,
every ``Reason.X`` and every code compared with a ``.reason`` must be there.
And the code names a reason by its member (``Reason.SOLD_OUT``), never by a
string literal: a literal is a second spelling of the code that the registry
cannot rename, document or find.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

from tilld.api.dbus_names import ERROR_PREFIX, reason_of
from tilld.errors import Reason, Refused

REFUSING_CALLS = {"Refused", "_refuse"}
SOURCE_TREES = ("tilld", "drivers")


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    # errors.Refused(...); a method called _refuse (the socket's hang-up) is no refusal reason.
    if isinstance(call.func, ast.Attribute) and call.func.attr == "Refused":
        return call.func.attr
    return None


def _reason_argument(call: ast.Call) -> ast.expr | None:
    if call.args:
        return call.args[0]
    return next((k.value for k in call.keywords if k.arg == "reason"), None)


def _strings_in(node: ast.AST) -> Iterator[ast.Constant]:
    """String constants in an expression, also inside ``a or "x"`` and ``"x" if c else "y"``."""
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            yield child


def _is_reason_attribute(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "reason"


def reasons_used(source: str) -> Iterator[tuple[int, str]]:
    """(line, code) for every refusal reason ``source`` names; ``Reason.X`` as ``Reason.X``."""
    tree = ast.parse(source)
    # A local that is passed as the reason (``reason = "a" if c else "b"``): its strings count.
    reason_locals: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called_name(node) in REFUSING_CALLS:
            arg = _reason_argument(node)
            if arg is None:
                continue
            if isinstance(arg, ast.Name):
                reason_locals.add(arg.id)
            for const in _strings_in(arg):
                yield const.lineno, const.value
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_reason_attribute(side) for side in sides):
                for side in sides:
                    for const in _strings_in(side):
                        yield const.lineno, const.value
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "Reason"
        ):
            yield node.lineno, f"Reason.{node.attr}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in reason_locals for t in node.targets
        ):
            for const in _strings_in(node.value):
                yield const.lineno, const.value


def _registered(code: str) -> bool:
    if code.startswith("Reason."):
        return code.removeprefix("Reason.") in Reason.__members__
    return code in {r.value for r in Reason}


def _source_files() -> Iterator[Path]:
    for tree in SOURCE_TREES:
        yield from sorted((REPO / tree).rglob("*.py"))


def test_every_reason_the_code_refuses_with_is_registered() -> None:
    used: dict[str, list[str]] = {}
    for path in _source_files():
        for line, code in reasons_used(path.read_text(encoding="utf-8")):
            used.setdefault(code, []).append(f"{path.relative_to(REPO)}:{line}")
    # The walk must see the call sites, or this test would pass with none.
    assert len(used) > 40, sorted(used)
    unregistered = {code: where for code, where in used.items() if not _registered(code)}
    assert not unregistered, f"add these to tilld.errors.Reason: {unregistered}"


def literal_reasons(source: str) -> list[tuple[int, str]]:
    """(line, code) for every reason ``source`` spells as a string literal, not ``Reason.X``."""
    return [(line, code) for line, code in reasons_used(source) if not code.startswith("Reason.")]


def test_the_code_names_every_reason_by_its_registry_member() -> None:
    literals = [
        f"{path.relative_to(REPO)}:{line}: {code!r}"
        for path in _source_files()
        for line, code in literal_reasons(path.read_text(encoding="utf-8"))
    ]
    assert not literals, f"use the tilld.errors.Reason member instead of: {literals}"


@pytest.mark.parametrize(
    "source",
    [
        'raise Refused("sold-out", "m")',
        'return _refuse("sold-out", "m")',
        'raise errors.Refused(decision.reason or "refused", "m")',
        'raise Refused(reason="sold-out", message="m")',
        'reason = "sold-out" if a else Reason.REFUSED\nraise Refused(reason, "m")',
        'if exc.reason == "card-payment-in-doubt":\n    pass',
    ],
)
def test_the_walk_finds_a_reason_spelt_as_a_string(source: str) -> None:
    assert literal_reasons(source), source


def test_the_walk_accepts_registry_members() -> None:
    source = (
        "raise Refused(Reason.SOLD_OUT, 'gone')\n"
        "raise Refused(decision.reason or Reason.REFUSED, decision.message or '')\n"
        "if exc.reason == Reason.CARD_PAYMENT_IN_DOUBT:\n    pass\n"
    )
    assert literal_reasons(source) == []


@pytest.mark.parametrize(
    "source",
    [
        'raise Refused("no-such-reason", "m")',
        'return _refuse("no-such-reason", "m")',
        'raise Refused(decision.reason or "no-such-reason", "m")',
        'raise Refused(reason="no-such-reason", message="m")',
        'reason = "sold-out" if a else "no-such-reason"\nraise Refused(reason, "m")',
        'if decision.reason != "no-such-reason":\n    pass',
        "raise Refused(Reason.NO_SUCH_REASON, 'm')",
    ],
)
def test_the_walk_finds_an_unregistered_reason(source: str) -> None:
    found = [code for _, code in reasons_used(source)]
    assert [c for c in found if not _registered(c)], found


def test_codes_are_lowercase_words_joined_by_hyphens() -> None:
    bad = [r.value for r in Reason if not re.fullmatch(r"[a-z]+(-[a-z]+)*", r.value)]
    assert not bad


def test_every_reason_says_when_it_is_used() -> None:
    assert not [r.value for r in Reason if not r.when.strip() or "|" in r.when]


def test_dbus_error_names_are_the_names_clients_already_match() -> None:
    # Derived from the code as tilld/api/dbus.py always did; a change breaks D-Bus clients.
    assert Reason.CARD_BRAND_ONLINE_ONLY.dbus_error == "org.tilld.Till1.Error.CardBrandOnlineOnly"
    assert Reason.SOLD_OUT.dbus_error == "org.tilld.Till1.Error.SoldOut"
    for reason in Reason:
        camel = "".join(word.capitalize() for word in reason.value.split("-"))
        assert reason.dbus_error == ERROR_PREFIX + camel
        assert reason_of(reason.dbus_error) == reason.value


def test_refused_takes_a_reason_or_its_code() -> None:
    by_member = Refused(Reason.SOLD_OUT, "gone")
    by_code = Refused("sold-out", "gone")
    assert by_member.reason is by_code.reason is Reason.SOLD_OUT
    assert by_code.dbus_error == "org.tilld.Till1.Error.SoldOut"
    assert repr(by_code) == "Refused('sold-out', 'gone')"


def test_an_unregistered_code_still_refuses_and_is_logged_as_a_bug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="tilld"):
        refusal = Refused("no-such-reason", "m")
    assert refusal.reason == "no-such-reason"
    assert refusal.dbus_error == "org.tilld.Till1.Error.NoSuchReason"
    assert "no-such-reason" in caplog.text
