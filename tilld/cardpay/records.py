"""What card payments write to the journal: results, refund receipts, detached outcomes.

Each record closes its `card-intent` in the same transaction, so a payment
or refund is either in doubt (its intent open) or recorded, never both.
"""

from __future__ import annotations

import logging
from typing import Any

from drivers.terminal import CardTransaction

from ..journal import Entry, Journal, close_card_intent, keep_open_sale
from ..sales import Sale
from ..settlement import Settlement
from .desk import TerminalDesk, card_record

log = logging.getLogger("tilld.card")


class CardRecords:
    def __init__(self, desk: TerminalDesk, journal: Journal, settlement: Settlement) -> None:
        self.desk = desk
        self.journal = journal
        self.settlement = settlement  # a card refund's receipt is recorded there

    async def result(
        self,
        sale: Sale,
        payment_id: str,
        amount: int,
        outcome: str,
        text: str,
        *,
        transaction: CardTransaction | None = None,
        offline: bool = False,
        keep_sale: bool = False,
        receipt_lines: tuple[str, ...] = (),
    ) -> None:
        body: dict[str, Any] = {
            "sale_id": sale.sale_id,
            "payment_id": payment_id,
            "amount": amount,
            "outcome": outcome,
            "result_text": text,
        }
        effects = [close_card_intent(payment_id)]
        if transaction is not None:
            body["card"] = card_record(transaction, offline)
            if transaction.offline:
                effects.extend(self.desk.store_offline_effects(amount))
        if receipt_lines:
            body["terminal_receipt"] = list(receipt_lines)
        if keep_sale:
            effects.append(keep_open_sale(sale.sale_id, sale.state()))
        await self.journal.append("card-result", body, effects=tuple(effects))
        self.desk.doubts.pop(payment_id, None)
        if transaction is not None and transaction.offline:
            self.desk.stored_offline(amount)
        self.desk.publish(outcome, sale.sale_id, payment_id, amount=amount, text=text)

    async def refund_receipt(
        self,
        intent: dict[str, Any],
        transaction: CardTransaction,
        receipt_lines: tuple[str, ...],
    ) -> Entry:
        """The refund receipt, closing its intent in the same transaction."""
        card = card_record(transaction, offline=False)
        card["same_card"] = transaction.masked_pan in intent.get("original_cards", ())
        if receipt_lines:
            card["slip"] = list(receipt_lines)
        if not card["same_card"]:
            log.warning(
                "card refund %s of receipt %s went to another card (%s %s) than it was paid with",
                intent["payment_id"],
                intent["original_receipt_no"],
                card["brand"],
                card["masked_pan"],
            )
        payment = {
            "payment_id": intent["payment_id"],
            "method": "card",
            "amount": intent["amount"],
            "card": card,
        }
        body = {**intent["refund"], "payments": [payment]}
        entry = await self.settlement.record_refund(body, close_card_intent(intent["payment_id"]))
        self.desk.doubts.pop(intent["payment_id"], None)
        self.desk.publish(
            "refunded",
            intent["sale_id"],
            intent["payment_id"],
            amount=intent["amount"],
            receipt_no=entry.body["receipt_no"],
        )
        return entry

    async def close_refund(self, intent: dict[str, Any], outcome: str, text: str) -> None:
        """A card refund that paid nothing back: close its intent."""
        await self.journal.append(
            "card-result",
            {
                "kind": "refund",
                "sale_id": intent["sale_id"],
                "payment_id": intent["payment_id"],
                "original_receipt_no": intent["original_receipt_no"],
                "amount": intent["amount"],
                "outcome": outcome,
                "result_text": text,
            },
            effects=(close_card_intent(intent["payment_id"]),),
        )
        self.desk.doubts.pop(intent["payment_id"], None)
        self.desk.publish(
            f"refund-{outcome}", intent["sale_id"], intent["payment_id"], amount=intent["amount"]
        )

    async def detached(
        self,
        sale_id: str,
        payment_id: str,
        amount: int,
        outcome: str,
        transaction: CardTransaction | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "sale_id": sale_id,
            "payment_id": payment_id,
            "amount": amount,
            "outcome": outcome,
            "result_text": "resolved after the link was lost",
        }
        effects = [close_card_intent(payment_id)]
        if transaction is not None:
            body["card"] = card_record(transaction, transaction.offline)
            if transaction.offline:
                effects.extend(self.desk.store_offline_effects(amount))
            log.error(
                "card payment %s was charged but its sale %s is gone: refund %d öre to the "
                "customer (terminal receipt %s)",
                payment_id,
                sale_id,
                amount,
                transaction.receipt_no,
            )
        await self.journal.append("card-result", body, effects=tuple(effects))
        self.desk.doubts.pop(payment_id, None)
        if transaction is not None and transaction.offline:
            self.desk.stored_offline(amount)
        self.desk.publish(outcome, sale_id, payment_id, amount=amount)
