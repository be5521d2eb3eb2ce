"""The terminal desk: the one owner of the card terminal and of the lock that takes turns at it.

One card payment, card refund, resolution of a doubt or flush of the offline
store runs at a time, each holding the desk's lock. The desk keeps what they
share: the payments in doubt (by payment id, each the body of its open
`card-intent` entry), the payment at the terminal per sale, and how many
payments the terminal stores offline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from drivers.terminal import (
    CardTerminal,
    CardTransaction,
    InDoubt,
    Outcome,
    TerminalError,
    TerminalResult,
)

from ..errors import Reason, Refused
from ..events import EventBus

log = logging.getLogger("tilld.card")

OFFLINE_STORED = "offline_stored"


class TerminalDesk:
    def __init__(self, terminal: CardTerminal | None, events: EventBus) -> None:
        self.terminal = terminal
        self.events = events
        self.offline_stored = 0
        self.lock = asyncio.Lock()  # one card payment (or refund, resolution, flush) at a time
        self.doubts: dict[str, dict[str, Any]] = {}  # payment_id -> the intent's body
        self.running: dict[str, str] = {}  # sale_id -> payment_id of the payment at the terminal

    @property
    def ready(self) -> bool:
        return self.terminal is not None and self.terminal.ready

    def status(self) -> dict[str, Any]:
        return {"in_doubt": len(self.doubts), "ready": self.ready}

    def in_doubt_for(self, sale_id: str) -> bool:
        return any(body["sale_id"] == sale_id for body in self.doubts.values())

    def refund_in_doubt_for(self, receipt_no: int) -> bool:
        return any(
            body.get("kind") == "refund" and body.get("original_receipt_no") == receipt_no
            for body in self.doubts.values()
        )

    async def ask(self, doubt: InDoubt) -> TerminalResult:
        assert self.terminal is not None
        try:
            return await self.terminal.resolve_in_doubt(doubt)
        except (TerminalError, OSError) as exc:
            log.warning("payment %s still in doubt: %s", doubt.ref, exc)
            return TerminalResult(Outcome.IN_DOUBT, doubt.amount, doubt.ref, doubt=doubt)

    def idle_terminal(self) -> CardTerminal:
        terminal = self.require_terminal()
        if self.lock.locked():
            raise Refused(
                Reason.TERMINAL_BUSY,
                "The card terminal is busy with another payment; wait for it to finish.",
            )
        return terminal

    def require_terminal(self) -> CardTerminal:
        if self.terminal is None:
            raise Refused(
                Reason.TERMINAL_UNAVAILABLE,
                "No card terminal is configured on this till. Take another payment method.",
            )
        return self.terminal

    def publish(self, event: str, sale_id: str, payment_id: str, **fields: Any) -> None:
        self.events.publish(
            "terminal", event=event, sale_id=sale_id, payment_id=payment_id, **fields
        )


def doubt_body(sale_id: str, payment_id: str, amount: int, doubt: InDoubt | None) -> dict[str, Any]:
    """The same fields as the card-intent entry, which a restart reads back."""
    return {
        "sale_id": sale_id,
        "payment_id": payment_id,
        "amount": amount,
        "receipt_before": doubt.receipt_before if doubt else None,
        "receipt_before_known": bool(doubt and doubt.receipt_before_known),
    }


def card_record(transaction: CardTransaction, offline: bool) -> dict[str, Any]:
    """What a receipt and the back-end may know of a card: never the full number."""
    return {
        "brand": transaction.brand or "unknown",
        "card_name": transaction.card_name,
        "masked_pan": transaction.masked_pan,
        "offline": offline,
        "auth_code": transaction.auth_code,
        "terminal_id": transaction.terminal_id,
        "trace": transaction.trace,
        "terminal_receipt_no": transaction.receipt_no,
    }
