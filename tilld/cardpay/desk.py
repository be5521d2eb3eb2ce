"""The terminal desk: the one owner of the card terminal and of the lock that takes turns at it.

One card payment, card refund, resolution of a doubt or flush of the offline
store runs at a time, each holding the desk's lock. The desk keeps what they
share: the payments in doubt (by payment id, each the body of its open
`card-intent` entry), the payment at the terminal per sale, and how many
payments the terminal stores offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
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
from ..journal import SideEffect, count_card
from ..rules import CardFacts

log = logging.getLogger("tilld.card")

# The terminal's offline store as tilld counts it, in the journal's card
# counters: how many payments, their sum in öre, and since when (epoch
# seconds) the oldest has waited. All three change only with the journal
# entry that changes them, and are reset only by what the terminal reports
# after forwarding.
# What a card payment waits for rather than being refused as busy, and how
# long: a ZVT end of day after a long outage can take a minute.
# Not behind the background resolver: it may be waiting for the very sale
# lock the payer holds (cardpay/doubts.py), and a payment resolves doubts
# itself before it starts.
HOUSEKEEPING = ("flush",)
HOUSEKEEPING_WAIT_S = 90.0

OFFLINE_STORED = "offline_stored"
OFFLINE_AMOUNT = "offline_amount"
OFFLINE_SINCE = "offline_since"


class TerminalDesk:
    def __init__(self, terminal: CardTerminal | None, events: EventBus) -> None:
        self.terminal = terminal
        self.events = events
        self.offline_stored = 0
        self.offline_amount = 0
        self.offline_since = 0.0  # 0 when nothing is stored
        self.offline_changed = asyncio.Event()  # wakes the age watch (offline_store.py)
        self.lock = asyncio.Lock()  # one card payment (or refund, resolution, flush) at a time
        self.busy_with: str | None = None  # what holds the lock (``turn``)
        self.queued = 0  # payments or refunds waiting behind a flush (at most one)
        self.doubts: dict[str, dict[str, Any]] = {}  # payment_id -> the intent's body
        self.running: dict[str, str] = {}  # sale_id -> payment_id of the payment at the terminal

    @property
    def ready(self) -> bool:
        return self.terminal is not None and self.terminal.ready

    def status(self) -> dict[str, Any]:
        return {"in_doubt": len(self.doubts), "ready": self.ready}

    def offline_age_h(self, now: float | None = None) -> float | None:
        """How long the oldest payment stored offline has waited; None when none is."""
        if self.offline_stored == 0 or not self.offline_since:
            return None
        return max(0.0, ((now or time.time()) - self.offline_since) / 3600)

    def card_facts(self, amount: int | None = None) -> CardFacts:
        return CardFacts(
            offline_stored=self.offline_stored,
            terminal_ready=True,
            amount=amount,
            offline_amount=self.offline_amount,
            offline_age_h=self.offline_age_h(),
        )

    def store_offline_effects(self, amount: int) -> list[SideEffect]:
        """The journal effects of one more payment stored on the terminal."""
        effects = [count_card(OFFLINE_STORED, 1), count_card(OFFLINE_AMOUNT, amount)]
        if self.offline_stored == 0:
            effects.append(count_card(OFFLINE_SINCE, set_to=int(time.time())))
        return effects

    def stored_offline(self, amount: int) -> None:
        """Count one more stored payment, after its entry committed."""
        if self.offline_stored == 0:
            self.offline_since = float(int(time.time()))
        self.offline_stored += 1
        self.offline_amount += amount
        self.offline_changed.set()

    def unstore_offline_effects(self, amount: int) -> list[SideEffect]:
        """The journal effects of one stored payment reversed on the terminal."""
        effects = [count_card(OFFLINE_STORED, -1), count_card(OFFLINE_AMOUNT, -amount)]
        if self.offline_stored <= 1:
            effects.append(count_card(OFFLINE_SINCE, set_to=0))
        return effects

    def unstored_offline(self, amount: int) -> None:
        self.offline_stored = max(0, self.offline_stored - 1)
        self.offline_amount = max(0, self.offline_amount - amount)
        if self.offline_stored == 0:
            self.offline_amount = 0
            self.offline_since = 0.0
        self.offline_changed.set()

    def in_doubt_for(self, sale_id: str) -> bool:
        return any(body["sale_id"] == sale_id for body in self.doubts.values())

    async def ask(self, doubt: InDoubt) -> TerminalResult:
        assert self.terminal is not None
        try:
            return await self.terminal.resolve_in_doubt(doubt)
        except (TerminalError, OSError) as exc:
            log.warning("payment %s still in doubt: %s", doubt.ref, exc)
            return TerminalResult(Outcome.IN_DOUBT, doubt.amount, doubt.ref, doubt=doubt)

    def idle_terminal(self) -> CardTerminal:
        terminal = self.require_terminal()
        if self.lock.locked() and (self.busy_with not in HOUSEKEEPING or self.queued):
            raise Refused(
                Reason.TERMINAL_BUSY,
                "The card terminal is busy with another payment; wait for it to finish.",
            )
        return terminal

    @contextlib.asynccontextmanager
    async def turn(self, kind: str) -> AsyncIterator[None]:
        """Take the terminal for ``kind`` (payment, refund, flush, resolve).

        A payment or refund never queues behind another one (the cashier is
        told the terminal is busy: ``idle_terminal``), but it waits for
        housekeeping: the flush that runs when the internet returns would
        otherwise refuse the first card payment after an outage.
        """
        waits = kind not in HOUSEKEEPING and self.lock.locked()
        self.queued += waits
        try:
            async with asyncio.timeout(HOUSEKEEPING_WAIT_S):
                await self.lock.acquire()
        except TimeoutError:
            raise Refused(
                Reason.TERMINAL_BUSY,
                f"The card terminal has been busy with {self.busy_with or 'its own work'} for "
                f"over {HOUSEKEEPING_WAIT_S:g} s. Take another payment method and ask a "
                "technician to look at the terminal.",
            ) from None
        finally:
            self.queued -= waits
        self.busy_with = kind
        try:
            yield
        finally:
            self.busy_with = None
            self.lock.release()

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
