"""Paying by card: intent first, then the terminal, then the result with the sale."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from drivers.terminal import (
    CardTransaction,
    DeclineReason,
    InDoubt,
    Outcome,
    TerminalError,
    TerminalResult,
    TerminalUnavailable,
)

from ..config import Settings
from ..errors import Reason, Refused
from ..journal import Journal, keep_open_sale, open_card_intent
from ..payment_policy import card_policy
from ..rules import CardFacts, CardPolicy, Connectivity, check_payment
from ..sales import Payment, Sale
from ..settlement import Settlement
from .desk import TerminalDesk, card_record, doubt_body
from .doubts import DoubtResolver
from .records import CardRecords

log = logging.getLogger("tilld.card")


class CardPaying:
    def __init__(
        self,
        desk: TerminalDesk,
        records: CardRecords,
        doubts: DoubtResolver,
        journal: Journal,
        settlement: Settlement,
        *,
        connectivity: Callable[[], Connectivity],
        settings: Callable[[], Settings],
    ) -> None:
        self.desk = desk
        self.records = records
        self.doubts = doubts
        self.journal = journal
        self.settlement = settlement  # where an approved payment settles its sale
        self._connectivity = connectivity
        self._settings = settings

    @property
    def connectivity(self) -> Connectivity:
        return self._connectivity()

    @property
    def card_policy(self) -> CardPolicy:
        return card_policy(self._settings())

    async def pay(self, sale: Sale, amount: int) -> dict[str, Any]:
        """Charge `amount` to a card (the caller holds the sale's lock and checked the rules)."""
        terminal = self.desk.idle_terminal()
        async with self.desk.turn("payment"):
            paid_before = sale.paid
            await self.doubts.resolve(held_sale_id=sale.sale_id)
            if sale.paid != paid_before:
                raise Refused(
                    Reason.CARD_PAYMENT_RECOVERED,
                    "An earlier card payment for this sale went through after all and was "
                    f"added to it; {sale.due} öre is due now. Do not charge the card again.",
                    due=sale.due,
                )
            if self.desk.doubts:
                raise Refused(
                    Reason.CARD_PAYMENT_IN_DOUBT,
                    "An earlier card payment's outcome is still unknown; tilld asks the "
                    "terminal again by itself. Take cash or manual Swish meanwhile, and check "
                    "the terminal's display or last receipt if it lasts.",
                )
            # Checked again here: resolving a doubt may just have used the last
            # offline slot.
            self._check_rules(self.desk.card_facts(amount))
            payment = sale.tender("card", amount)
            doubt = terminal.doubt_record(amount, payment.payment_id)
            await self.journal.append(
                "card-intent",
                {
                    "sale_id": sale.sale_id,
                    "payment_id": payment.payment_id,
                    "amount": amount,
                    "receipt_before": doubt.receipt_before,
                    "receipt_before_known": doubt.receipt_before_known,
                },
                effects=(
                    open_card_intent(payment.payment_id),
                    keep_open_sale(sale.sale_id, sale.state()),
                ),
            )
            self.desk.running[sale.sale_id] = payment.payment_id
            self.desk.publish("started", sale.sale_id, payment.payment_id, amount=amount)
            try:
                try:
                    result = await terminal.authorize(
                        amount,
                        payment.payment_id,
                        on_status=lambda s: self.desk.publish(
                            "status", sale.sale_id, payment.payment_id, code=s.code, text=s.text
                        ),
                    )
                finally:
                    self.desk.running.pop(sale.sale_id, None)
                return await self._settle(sale, payment, result, doubt)
            except TerminalUnavailable as exc:
                # Nothing was sent: close the intent as not charged.
                await self.records.result(sale, payment.payment_id, amount, "unavailable", str(exc))
                raise Refused(
                    Reason.TERMINAL_UNAVAILABLE,
                    f"The card terminal is not connected ({exc}). Take another payment method.",
                ) from None
            except Refused:
                raise
            except BaseException:
                # The intent is on disk and open: whatever went wrong, the
                # payment must be asked about before the next card payment.
                self.desk.doubts[payment.payment_id] = doubt_body(
                    sale.sale_id, payment.payment_id, amount, doubt
                )
                log.exception("card payment %s: outcome not recorded", payment.payment_id)
                raise

    async def cancel(self, sale_id: str, payment_id: str) -> dict[str, Any] | None:
        """The cashier cancels a card payment waiting at the terminal (None: not ours)."""
        if self.desk.running.get(sale_id) != payment_id or self.desk.terminal is None:
            return None
        await self.desk.terminal.abort()
        return {"payment_id": payment_id, "status": "cancel-requested"}

    def _check_rules(self, facts: CardFacts) -> None:
        decision = check_payment(
            "card",
            self.connectivity,
            card=facts,
            policy=self.card_policy,
        )
        if not decision.allowed:
            raise Refused(
                decision.reason or Reason.REFUSED, decision.message or "", **decision.details
            )

    async def _settle(
        self, sale: Sale, payment: Payment, result: TerminalResult, intent: InDoubt
    ) -> dict[str, Any]:
        payment_id, amount = payment.payment_id, payment.amount
        if result.outcome is Outcome.IN_DOUBT:
            # Ask at once: most doubts are a blip the terminal can answer now.
            assert result.doubt is not None
            result = await self.desk.ask(result.doubt)
        if result.outcome is Outcome.APPROVED and result.transaction is None:
            # Approved, but the terminal's report of it was unreadable: what
            # was charged is known only by asking again.
            result = await self.desk.ask(intent)
        if result.outcome is Outcome.IN_DOUBT or (
            result.outcome is Outcome.APPROVED and result.transaction is None
        ):
            return self._keep_in_doubt(sale, payment_id, amount, intent)
        if result.outcome is not Outcome.APPROVED:
            await self.records.result(
                sale, payment_id, amount, result.outcome.value, result.result_text
            )
            return self._refuse_outcome(result)
        transaction = result.transaction
        assert transaction is not None
        offline = transaction.offline or not self.connectivity.internet
        brand_refusal = self._brand_refusal(transaction, offline)
        if brand_refusal is not None:
            await self._reverse(sale, payment_id, amount, transaction)
            raise brand_refusal
        payment.card = card_record(transaction, offline)
        if result.receipt_lines:
            # The terminal's own slip text (masked PAN only), printed with the receipt.
            payment.card["slip"] = list(result.receipt_lines)
        sale.payments.append(payment)
        try:
            await self.records.result(
                sale,
                payment_id,
                amount,
                "approved",
                result.result_text,
                transaction=transaction,
                offline=offline,
                keep_sale=True,
                receipt_lines=result.receipt_lines,
            )
        except Refused as exc:
            # Charged, but the journal could not take it (a full disk): the
            # intent is still open, so it is resolved again once it can be.
            sale.payments.remove(payment)
            self.desk.doubts[payment_id] = doubt_body(sale.sale_id, payment_id, amount, intent)
            raise Refused(
                Reason.CARD_PAYMENT_IN_DOUBT,
                f"The card was charged but could not be recorded ({exc.message}). Do not "
                "charge it again: tilld records it as soon as it can.",
                payment_id=payment_id,
            ) from None
        outcome = await self.settlement.settle(sale)
        return {
            "payment_id": payment_id,
            "change": 0,
            "card": {k: payment.card[k] for k in ("brand", "masked_pan", "offline")},
            **outcome,
        }

    def _keep_in_doubt(
        self, sale: Sale, payment_id: str, amount: int, intent: InDoubt
    ) -> dict[str, Any]:
        self.desk.doubts[payment_id] = doubt_body(sale.sale_id, payment_id, amount, intent)
        self.desk.publish("in-doubt", sale.sale_id, payment_id, amount=amount)
        raise Refused(
            Reason.CARD_PAYMENT_IN_DOUBT,
            "The terminal did not say whether the card was charged. Do not charge the "
            "card again: tilld asks the terminal by itself and adds the payment to the "
            "sale if it went through. Check the terminal's display meanwhile.",
            payment_id=payment_id,
        )

    def _brand_refusal(self, transaction: CardTransaction, offline: bool) -> Refused | None:
        if not offline:
            return None
        brand = transaction.brand or "unknown"
        decision = check_payment(
            "card",
            self.connectivity,
            card=CardFacts(offline_stored=0, brand=brand, terminal_ready=True),
            policy=self.card_policy,
        )
        if decision.allowed or decision.reason != Reason.CARD_BRAND_ONLINE_ONLY:
            return None
        return Refused(decision.reason, decision.message or "", **decision.details)

    async def _reverse(
        self, sale: Sale, payment_id: str, amount: int, transaction: CardTransaction
    ) -> None:
        """Undo an offline approval the rules do not allow, and journal both."""
        assert self.desk.terminal is not None
        await self.records.result(
            sale,
            payment_id,
            amount,
            "approved",
            "approved offline, brand needs the internet: reversing",
            transaction=transaction,
            offline=True,
        )
        reversal: TerminalResult | None = None
        if transaction.receipt_no is None:
            text = "the terminal gave no receipt number to reverse"
        else:
            try:
                reversal = await self.desk.terminal.reverse(transaction.receipt_no)
                text = reversal.result_text
            except (TerminalError, OSError) as exc:
                text = f"the reversal could not be sent: {exc}"
        ok = reversal is not None and reversal.approved
        await self.journal.append(
            "card-reversal",
            {
                "sale_id": sale.sale_id,
                "payment_id": payment_id,
                "amount": amount,
                "reversed_receipt_no": transaction.receipt_no,
                "outcome": reversal.outcome.value if reversal else "not-sent",
                "result_text": text,
            },
            # Only a payment the terminal stored offline was counted.
            effects=tuple(self.desk.unstore_offline_effects(amount))
            if ok and transaction.offline
            else (),
        )
        if not ok:
            log.error(
                "could not reverse the offline %s payment (terminal receipt %s): %s; "
                "void it on the terminal by hand",
                transaction.brand,
                transaction.receipt_no,
                text,
            )
            self.desk.publish("reversal-failed", sale.sale_id, payment_id, text=text)
        else:
            if transaction.offline:
                self.desk.unstored_offline(amount)
            self.desk.publish("reversed", sale.sale_id, payment_id, amount=amount)

    def _refuse_outcome(self, result: TerminalResult) -> dict[str, Any]:
        reason = result.decline_reason
        if reason is DeclineReason.NEEDS_ONLINE and not self.connectivity.internet:
            # The terminal itself would not take this card offline: a brand
            # that must go online (Maestro, Visa Electron, V PAY).
            allowed = ", ".join(sorted(self.card_policy.offline_brands)) or "none"
            raise Refused(
                Reason.CARD_BRAND_ONLINE_ONLY,
                "This card needs the internet, which is down; nothing was charged. Without "
                f"it only these brands work: {allowed}. Ask for another card, cash or "
                "manual Swish.",
            )
        if reason is DeclineReason.OFFLINE_STORE_FULL:
            raise Refused(
                Reason.OFFLINE_CARD_LIMIT_REACHED,
                "The terminal's offline store is full; nothing was charged. Take cash or "
                "manual Swish until the internet is back.",
                stored=self.desk.offline_stored,
                limit=self.card_policy.offline_limit,
            )
        if result.outcome is Outcome.ABORTED:
            raise Refused(
                Reason.CARD_ABORTED,
                f"The card payment was cancelled ({result.result_text}); nothing was charged.",
            )
        raise Refused(
            Reason.CARD_DECLINED,
            f"The card was declined ({result.result_text}); nothing was charged. "
            "Ask for another card or another payment method.",
            result_code=result.result_code,
        )
