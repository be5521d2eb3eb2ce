"""Ask before anything that closes or resets: on a terminal a question, otherwise --yes.

A script that pipes into tillctl cannot answer a question, so without --yes
it is refused with a line that says how to go on; a person at a terminal is
asked and must type "yes".
"""

from __future__ import annotations

import sys
from typing import Any

# (operation, the parameters that make it dangerous or None for always) -> what it does.
DANGEROUS: tuple[tuple[str, dict[str, Any] | None, str], ...] = (
    ("admin.report", {"kind": "z"}, "close the fiscal day with a Z report (cannot be undone)"),
    (
        "admin.terminal_flush",
        None,
        "send the card payments the terminal stored offline and close the terminal's day",
    ),
    (
        "admin.acknowledge_rollback",
        None,
        "accept that the journal's lost entries are gone for good (journaled with your name)",
    ),
    (
        "admin.controlunit_settle",
        None,
        "settle a control-unit registration in doubt as you found it at the unit: a wrong "
        "answer registers the receipt twice or prints a code the unit never gave "
        "(journaled with your name)",
    ),
)


class NotConfirmed(Exception):
    """The technician said no, or could not be asked and gave no --yes."""


def danger_of(method: str, params: dict[str, Any]) -> str | None:
    for name, when, what in DANGEROUS:
        if name == method and (when is None or all(params.get(k) == v for k, v in when.items())):
            return what
    return None


def confirm(what: str, yes: bool) -> None:
    """Return if the technician agreed to ``what``; raise NotConfirmed otherwise."""
    if yes:
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise NotConfirmed(
            f"this would {what}; not asking, since no one is at a terminal: pass --yes to do it"
        )
    sys.stderr.write(f"tillctl: this will {what}.\nType yes to go on: ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        answer = ""
    if answer.strip().lower() not in ("yes", "y"):
        raise NotConfirmed("not done (you did not answer yes)")


def call_confirmed(client: Any, method: str, params: dict[str, Any], yes: bool) -> Any:
    """A call that asks first when it is dangerous."""
    what = danger_of(method, params)
    if what is not None:
        confirm(what, yes)
    return client.call(method, params)
