"""Refunding to a card: the intent (with the receipt it will become) first, then the terminal."""

from __future__ import annotations

import logging
from typing import Any

from drivers.terminal import InDoubt, Outcome, TerminalResult, TerminalUnavailable

from ..errors import Reason, Refused
from ..ids import time_ordered_uuid
from ..journal import Entry, Journal, open_card_intent
from .desk import TerminalDesk, doubt_body
from .doubts import DoubtResolver
from .records import CardRecords

log = logging.getLogger("tilld.card")


class CardRefunding:
    def __init__(
        self, desk: TerminalDesk, records: CardRecords, doubts: DoubtResolver, journal: Journal
    ) -> None:
        self.desk = desk
        self.records = records
        self.doubts = doubts
        self.journal = journal

    async def refund(self, body: dict[str, Any], original_cards: list[str]) -> Entry:
        """Pay a planned refund receipt back to the customer's card.

        The same order as a payment: the intent (with the whole refund receipt
        it will become) is journaled first, so a refund in doubt is written
        as a receipt if, and only if, the terminal booked it. `original_cards`
        are the masked numbers the receipt was paid with: money going to
        another card is allowed (a customer's new card) but marked.
        """
        terminal = self.desk.idle_terminal()
        async with self.desk.turn("refund"):
            await self.doubts.resolve()
            if self.desk.doubts:
                raise Refused(
                    Reason.CARD_PAYMENT_IN_DOUBT,
                    "An earlier card payment's outcome is still unknown; tilld asks the "
                    "terminal again by itself. Refund in cash or by manual Swish meanwhile.",
                )
            amount, payment_id = body["total"], time_ordered_uuid()
            doubt = terminal.doubt_record(amount, payment_id, kind="refund")
            intent = {
                **doubt_body(body["original_sale_id"], payment_id, amount, doubt),
                "kind": "refund",
                "original_receipt_no": body["original_receipt_no"],
                "original_cards": original_cards,
                "refund": body,
            }
            await self.journal.append(
                "card-intent", intent, effects=(open_card_intent(payment_id),)
            )
            sale_id = intent["sale_id"]
            self.desk.running[sale_id] = payment_id
            self.desk.publish(
                "refund-started",
                sale_id,
                payment_id,
                amount=amount,
                original_receipt_no=body["original_receipt_no"],
            )
            try:
                try:
                    result = await terminal.refund(
                        amount,
                        payment_id,
                        on_status=lambda s: self.desk.publish(
                            "status", sale_id, payment_id, code=s.code, text=s.text
                        ),
                    )
                finally:
                    self.desk.running.pop(sale_id, None)
                return await self._settle_refund(intent, result, doubt)
            except TerminalUnavailable as exc:
                await self.records.close_refund(intent, "unavailable", str(exc))
                raise Refused(
                    Reason.TERMINAL_UNAVAILABLE,
                    f"The card terminal is not connected ({exc}); nothing went back to the "
                    "card. Refund in cash or by manual Swish.",
                ) from None
            except Refused:
                raise
            except BaseException:
                # The intent is on disk and open: whatever went wrong, the
                # terminal is asked before the next card payment or refund.
                self.desk.doubts[payment_id] = intent
                log.exception("card refund %s: outcome not recorded", payment_id)
                raise

    async def _settle_refund(
        self, intent: dict[str, Any], result: TerminalResult, doubt: InDoubt
    ) -> Entry:
        lost = result.outcome is Outcome.IN_DOUBT
        if lost:
            assert result.doubt is not None
            result = await self.desk.ask(result.doubt)
        if result.outcome is Outcome.APPROVED and result.transaction is None:
            result = await self.desk.ask(doubt)
        if result.outcome is Outcome.IN_DOUBT or (result.transaction is None and result.approved):
            self.desk.doubts[intent["payment_id"]] = intent
            self.desk.publish(
                "in-doubt", intent["sale_id"], intent["payment_id"], amount=doubt.amount
            )
            raise Refused(
                Reason.CARD_PAYMENT_IN_DOUBT,
                "The terminal did not say whether the money went back to the card. Do not "
                "refund again: tilld asks the terminal by itself and writes the refund "
                "receipt if it went through. Check the terminal's display meanwhile.",
                payment_id=intent["payment_id"],
            )
        if not result.approved:
            await self.records.close_refund(intent, result.outcome.value, result.result_text)
            if result.outcome is Outcome.ABORTED:
                raise Refused(
                    Reason.CARD_ABORTED,
                    f"The card refund was cancelled ({result.result_text}); nothing went "
                    "back to the card.",
                )
            if lost:
                raise Refused(
                    Reason.CARD_REFUND_NOT_BOOKED,
                    "The link to the terminal broke before it booked the refund; nothing went "
                    "back to the card. Refund again.",
                )
            raise Refused(
                Reason.CARD_DECLINED,
                f"The terminal refused the refund ({result.result_text}); nothing went back "
                "to the card. Refund in cash or by manual Swish.",
                result_code=result.result_code,
            )
        assert result.transaction is not None
        try:
            return await self.records.refund_receipt(
                intent, result.transaction, result.receipt_lines
            )
        except Refused as exc:
            self.desk.doubts[intent["payment_id"]] = intent
            raise Refused(
                Reason.CARD_PAYMENT_IN_DOUBT,
                f"The money went back to the card but could not be recorded ({exc.message}). "
                "Do not refund again: tilld records it as soon as it can.",
                payment_id=intent["payment_id"],
            ) from None
