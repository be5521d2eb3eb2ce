"""The error taxonomy that crosses every API boundary.

A domain refusal is a value with a stable reason code and a message in plain
words for the cashier or technician. The JSON-RPC adapter turns it into error
-32010 with ``data.reason``; other adapters map the same code their own way,
so the code never has to be parsed back out of message text.
"""

from __future__ import annotations


class TillError(Exception):
    """Base of every error tilld reports on purpose (never a bug)."""


class Refused(TillError):
    """The till refuses a request: the reason code is stable, the message says what to do."""

    def __init__(self, reason: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = details

    def __repr__(self) -> str:
        return f"Refused({self.reason!r}, {self.message!r})"


class ConfigError(TillError):
    """The configuration cannot be used; ``problems`` lists each bad key and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class StartupError(TillError):
    """The daemon cannot start safely; the message names the cause and the fix."""
