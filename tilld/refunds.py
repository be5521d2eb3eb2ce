"""Refunds of a receipt: what is left to refund, which tickets may go back, and how.

Cash and manual Swish refunds are recorded here; a card refund goes to the
terminal (tilld/cardpay/), which records its receipt through settlement
once the money is back on the card.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from .config import Settings
from .errors import Reason, Refused
from .journal import Entry, Journal
from .payment_policy import PaymentPolicy, raise_if_refused
from .rules import Connectivity, check_ticket_refund
from .sales import card_refundable, plan_refund, refund_body, refund_ticket_codes
from .settlement import Settlement


class CardRefunds(Protocol):
    """What refunding needs of card payments (tilld/cardpay/)."""

    async def refund(self, body: dict[str, Any], original_cards: list[str]) -> Entry: ...


class Refunds:
    def __init__(
        self,
        settings: Callable[[], Settings],
        journal: Journal,
        connectivity: Callable[[], Connectivity],
        settlement: Settlement,
        policy: PaymentPolicy,
        card: CardRefunds,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.connectivity = connectivity
        self.settlement = settlement
        self.policy = policy
        self.card = card
        self._lock = asyncio.Lock()
        self._refunding: set[int] = set()  # receipts with a card refund at the terminal

    async def refund(
        self, receipt_no: int, lines: dict[int, int | None] | None, method: str, reason: str
    ) -> dict[str, Any]:
        self.settlement.require_accepting()
        raise_if_refused(self.policy.refund_decision(method))
        original = await self.journal.find_receipt(receipt_no)
        if original is None or original.type != "sale":
            raise Refused(
                Reason.UNKNOWN_RECEIPT,
                f"There is no sale with receipt number {receipt_no} in this till's journal.",
                receipt_no=receipt_no,
            )
        # Refunds are rare: one at a time keeps two of the same receipt from
        # both passing the "what is left" check. A card refund leaves the lock
        # once its receipt is marked as refunding, so a customer at the
        # terminal does not hold up refunds of other receipts.
        async with self._lock:
            await self._refuse_if_refunding(receipt_no)
            earlier = [e.body for e in await self.journal.refunds_of(receipt_no)]
            plan = plan_refund(original.body, earlier, lines)
            mode = self.connectivity().mode.value
            body = refund_body(original.body, plan, method, mode, reason)
            used = await self.journal.scanned_codes(refund_ticket_codes(body))
            allow_used = self.settings().refunds.allow_used_tickets
            raise_if_refused(check_ticket_refund(used, allow_used=allow_used))
            raise_if_refused(
                self.policy.refund_decision(
                    method,
                    training=bool(original.body.get("training")),
                    amount=body["total"],
                    card_left=card_refundable(original.body, earlier),
                )
            )
            if method != "card":
                entry = await self.settlement.record_refund(body)
                return {
                    "receipt_no": entry.body["receipt_no"],
                    "seq": entry.seq,
                    "refund": entry.body,
                }
            self._refunding.add(receipt_no)
        cards = [p["card"]["masked_pan"] for p in original.body["payments"] if p.get("card")]
        try:
            entry = await self.card.refund(body, cards)
        finally:
            self._refunding.discard(receipt_no)
        return {"receipt_no": entry.body["receipt_no"], "seq": entry.seq, "refund": entry.body}

    async def _refuse_if_refunding(self, receipt_no: int) -> None:
        if receipt_no in self._refunding:
            raise Refused(
                Reason.REFUND_IN_PROGRESS,
                f"A card refund of receipt {receipt_no} is at the terminal now; wait for it, "
                "then refund what is left.",
                receipt_no=receipt_no,
            )
        # Asked of the journal, not of the card desk: a resolved refund's
        # receipt closes its intent in the journal's transaction, and the desk
        # hears of it only after what follows the commit (a control unit's code).
        if any(
            intent.body.get("kind") == "refund"
            and intent.body.get("original_receipt_no") == receipt_no
            for intent in await self.journal.open_card_intents()
        ):
            raise Refused(
                Reason.CARD_PAYMENT_IN_DOUBT,
                f"A card refund of receipt {receipt_no} is still in doubt; tilld asks the "
                "terminal by itself. Refund the rest once it is settled.",
                receipt_no=receipt_no,
            )
