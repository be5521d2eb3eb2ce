"""What a registered ticket scan tells the person at the entrance, in words.

The back-end answers a status and a detail meant for machines (for
``registered`` the scan time); the gate needs a sentence. One rule for the
live answer of ``scan.submit`` and the ``registered`` events sync sends later.
"""

from __future__ import annotations

GATE_WORDS = {
    "registered": "Valid: let the guest in",
    "already-used": "ALREADY USED: check the guest's ticket",
    "invalid": "NOT VALID: do not let the guest in",
    "unknown": "UNKNOWN TICKET: not sold by this venue's server",
}


def gate_words(status: str, detail: str | None) -> str:
    """The sentence for ``status``; the back-end's detail follows, except a bare scan time."""
    words = GATE_WORDS.get(status, status)
    if status == "registered" or not detail:
        return words + "."
    return f"{words} ({detail})."
