"""Card payments through the terminal: no double charge, no lost approval.

The order of things is what makes a card payment safe:

1. Before the terminal sees anything, a `card-intent` entry is journaled,
   with the sale kept on disk and the terminal's last receipt number (the
   driver's `doubt_record`). A crash from here on leaves an open intent.
2. The terminal runs the payment; its intermediate texts ("insert card",
   "enter PIN") are `terminal` events for the cashier's screen.
3. The outcome is journaled as `card-result`, closing the intent. An
   approval is added to the sale in the same transaction, so it can never be
   lost even if the sale is not complete yet.
4. An outcome the terminal could not give (link lost, tilld killed) stays
   an open intent. Before any new card payment, every open intent is
   resolved by asking the terminal what it booked; while one cannot be
   resolved, card payments are refused rather than risk charging twice.

Without internet the terminal approves offline and stores the payment. The
count of stored payments is kept with the entries that change it; the limit
is checked before the terminal sees the card, the brand after it has read
it: a brand that must go online, approved offline anyway, is reversed at
once and both are journaled. When the internet returns the terminal is told
to send its stored payments and close the day, and the count is set from
its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from drivers.terminal import (
    CardTerminal,
    CardTransaction,
    DeclineReason,
    InDoubt,
    Outcome,
    TerminalError,
    TerminalResult,
    TerminalUnavailable,
)

from .config import Settings
from .errors import Refused
from .events import EventBus
from .journal import (
    Entry,
    IntentClosed,
    Journal,
    close_card_intent,
    count_card,
    keep_open_sale,
    open_card_intent,
)
from .payment_policy import card_policy
from .rules import CardFacts, CardPolicy, Connectivity, check_payment
from .sales import Payment, Sale
from .settlement import Settlement

log = logging.getLogger("tilld.card")

OFFLINE_STORED = "offline_stored"
# A terminal that has just reconnected needs a moment before it can answer
# what it booked; a payment in doubt is retried this often in the background.
RESOLVE_RETRY_S = 5.0


class CardPayments:
    def __init__(
        self,
        terminal: CardTerminal | None,
        journal: Journal,
        events: EventBus,
        settlement: Settlement,
        *,
        connectivity: Callable[[], Connectivity],
        settings: Callable[[], Settings],
    ) -> None:
        self.terminal = terminal
        self.journal = journal
        self.events = events
        # Where an approved payment settles its sale and a refund gets its receipt.
        self.settlement = settlement
        self._connectivity = connectivity
        self._settings = settings
        self.offline_stored = 0
        self._lock = asyncio.Lock()  # one card payment (or resolution, or flush) at a time
        self._doubts: dict[str, dict[str, Any]] = {}  # payment_id -> the intent's body
        self._running: dict[str, str] = {}  # sale_id -> payment_id of the payment at the terminal
        self._task: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None

    @property
    def connectivity(self) -> Connectivity:
        return self._connectivity()

    @property
    def card_policy(self) -> CardPolicy:
        return card_policy(self._settings())

    @property
    def ready(self) -> bool:
        return self.terminal is not None and bool(getattr(self.terminal, "ready", False))

    async def load(self) -> None:
        """Read the offline count and the open intents: before the API serves anyone."""
        journal = self.journal
        self.offline_stored = await journal.card_counter(OFFLINE_STORED)
        for entry in await journal.open_card_intents():
            self._doubts[entry.body["payment_id"]] = entry.body
        if self._doubts:
            log.warning(
                "%d card payment(s) were at the terminal when tilld stopped; "
                "asking the terminal what it booked before the next card payment",
                len(self._doubts),
            )

    async def start(self) -> None:
        if self.terminal is not None:
            self._task = asyncio.create_task(self._resolve_in_background(), name="card doubts")

    async def stop(self) -> None:
        for task in (self._task, self._flush_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        return {"in_doubt": len(self._doubts), "ready": self.ready}

    # -- paying ---------------------------------------------------------------

    async def pay(self, sale: Sale, amount: int) -> dict[str, Any]:
        """Charge `amount` to a card (the caller holds the sale's lock and checked the rules)."""
        terminal = self._idle_terminal()
        async with self._lock:
            paid_before = sale.paid
            await self._resolve_doubts(held_sale_id=sale.sale_id)
            if sale.paid != paid_before:
                raise Refused(
                    "card-payment-recovered",
                    "An earlier card payment for this sale went through after all and was "
                    f"added to it; {sale.due} öre is due now. Do not charge the card again.",
                    due=sale.due,
                )
            if self._doubts:
                raise Refused(
                    "card-payment-in-doubt",
                    "An earlier card payment's outcome is still unknown; tilld asks the "
                    "terminal again by itself. Take cash or manual Swish meanwhile, and check "
                    "the terminal's display or last receipt if it lasts.",
                )
            # Checked again here: resolving a doubt may just have used the last
            # offline slot.
            self._check_rules(CardFacts(offline_stored=self.offline_stored, terminal_ready=True))
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
            self._running[sale.sale_id] = payment.payment_id
            self._publish("started", sale.sale_id, payment.payment_id, amount=amount)
            try:
                try:
                    result = await terminal.authorize(
                        amount,
                        payment.payment_id,
                        on_status=lambda s: self._publish(
                            "status", sale.sale_id, payment.payment_id, code=s.code, text=s.text
                        ),
                    )
                finally:
                    self._running.pop(sale.sale_id, None)
                return await self._settle(sale, payment, result, doubt)
            except TerminalUnavailable as exc:
                # Nothing was sent: close the intent as not charged.
                await self._record(sale, payment.payment_id, amount, "unavailable", str(exc))
                raise Refused(
                    "terminal-unavailable",
                    f"The card terminal is not connected ({exc}). Take another payment method.",
                ) from None
            except Refused:
                raise
            except BaseException:
                # The intent is on disk and open: whatever went wrong, the
                # payment must be asked about before the next card payment.
                self._doubts[payment.payment_id] = self._doubt_body(
                    sale.sale_id, payment.payment_id, amount, doubt
                )
                log.exception("card payment %s: outcome not recorded", payment.payment_id)
                raise

    async def cancel(self, sale_id: str, payment_id: str) -> dict[str, Any] | None:
        """The cashier cancels a card payment waiting at the terminal (None: not ours)."""
        if self._running.get(sale_id) != payment_id or self.terminal is None:
            return None
        await self.terminal.abort()
        return {"payment_id": payment_id, "status": "cancel-requested"}

    def _check_rules(self, facts: CardFacts) -> None:
        decision = check_payment(
            "card",
            self.connectivity,
            card=facts,
            policy=self.card_policy,
        )
        if not decision.allowed:
            raise Refused(decision.reason or "refused", decision.message or "", **decision.details)

    async def _settle(
        self, sale: Sale, payment: Payment, result: TerminalResult, intent: InDoubt
    ) -> dict[str, Any]:
        payment_id, amount = payment.payment_id, payment.amount
        if result.outcome is Outcome.IN_DOUBT:
            # Ask at once: most doubts are a blip the terminal can answer now.
            assert result.doubt is not None
            result = await self._ask(result.doubt)
        if result.outcome is Outcome.APPROVED and result.transaction is None:
            # Approved, but the terminal's report of it was unreadable: what
            # was charged is known only by asking again.
            result = await self._ask(intent)
        if result.outcome is Outcome.IN_DOUBT or (
            result.outcome is Outcome.APPROVED and result.transaction is None
        ):
            return self._keep_in_doubt(sale, payment_id, amount, intent)
        if result.outcome is not Outcome.APPROVED:
            await self._record(sale, payment_id, amount, result.outcome.value, result.result_text)
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
            await self._record(
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
            self._doubts[payment_id] = self._doubt_body(sale.sale_id, payment_id, amount, intent)
            raise Refused(
                "card-payment-in-doubt",
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
        self._doubts[payment_id] = self._doubt_body(sale.sale_id, payment_id, amount, intent)
        self._publish("in-doubt", sale.sale_id, payment_id, amount=amount)
        raise Refused(
            "card-payment-in-doubt",
            "The terminal did not say whether the card was charged. Do not charge the "
            "card again: tilld asks the terminal by itself and adds the payment to the "
            "sale if it went through. Check the terminal's display meanwhile.",
            payment_id=payment_id,
        )

    def _doubt_body(
        self, sale_id: str, payment_id: str, amount: int, doubt: InDoubt | None
    ) -> dict[str, Any]:
        """The same fields as the card-intent entry, which a restart reads back."""
        return {
            "sale_id": sale_id,
            "payment_id": payment_id,
            "amount": amount,
            "receipt_before": doubt.receipt_before if doubt else None,
            "receipt_before_known": bool(doubt and doubt.receipt_before_known),
        }

    def in_doubt_for(self, sale_id: str) -> bool:
        return any(body["sale_id"] == sale_id for body in self._doubts.values())

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
        if decision.allowed or decision.reason != "card-brand-online-only":
            return None
        return Refused(decision.reason, decision.message or "", **decision.details)

    async def _reverse(
        self, sale: Sale, payment_id: str, amount: int, transaction: CardTransaction
    ) -> None:
        """Undo an offline approval the rules do not allow, and journal both."""
        assert self.terminal is not None
        await self._record(
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
                reversal = await self.terminal.reverse(transaction.receipt_no)
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
            effects=(count_card(OFFLINE_STORED, -1),) if ok and transaction.offline else (),
        )
        if not ok:
            log.error(
                "could not reverse the offline %s payment (terminal receipt %s): %s; "
                "void it on the terminal by hand",
                transaction.brand,
                transaction.receipt_no,
                text,
            )
            self._publish("reversal-failed", sale.sale_id, payment_id, text=text)
        else:
            if transaction.offline:
                self.offline_stored = max(0, self.offline_stored - 1)
            self._publish("reversed", sale.sale_id, payment_id, amount=amount)

    async def _record(
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
                effects.append(count_card(OFFLINE_STORED, 1))
        if receipt_lines:
            body["terminal_receipt"] = list(receipt_lines)
        if keep_sale:
            effects.append(keep_open_sale(sale.sale_id, sale.state()))
        await self.journal.append("card-result", body, effects=tuple(effects))
        self._doubts.pop(payment_id, None)
        if transaction is not None and transaction.offline:
            self.offline_stored += 1
        self._publish(outcome, sale.sale_id, payment_id, amount=amount, text=text)

    def _refuse_outcome(self, result: TerminalResult) -> dict[str, Any]:
        reason = result.decline_reason
        if reason is DeclineReason.NEEDS_ONLINE and not self.connectivity.internet:
            # The terminal itself would not take this card offline: a brand
            # that must go online (Maestro, Visa Electron, V PAY).
            allowed = ", ".join(sorted(self.card_policy.offline_brands)) or "none"
            raise Refused(
                "card-brand-online-only",
                "This card needs the internet, which is down; nothing was charged. Without "
                f"it only these brands work: {allowed}. Ask for another card, cash or "
                "manual Swish.",
            )
        if reason is DeclineReason.OFFLINE_STORE_FULL:
            raise Refused(
                "offline-card-limit-reached",
                "The terminal's offline store is full; nothing was charged. Take cash or "
                "manual Swish until the internet is back.",
                stored=self.offline_stored,
                limit=self.card_policy.offline_limit,
            )
        if result.outcome is Outcome.ABORTED:
            raise Refused(
                "card-aborted",
                f"The card payment was cancelled ({result.result_text}); nothing was charged.",
            )
        raise Refused(
            "card-declined",
            f"The card was declined ({result.result_text}); nothing was charged. "
            "Ask for another card or another payment method.",
            result_code=result.result_code,
        )

    # -- paying back --------------------------------------------------------------

    async def refund(self, body: dict[str, Any], original_cards: list[str]) -> Entry:
        """Pay a planned refund receipt back to the customer's card.

        The same order as a payment: the intent (with the whole refund receipt
        it will become) is journaled first, so a refund in doubt is written
        as a receipt if, and only if, the terminal booked it. `original_cards`
        are the masked numbers the receipt was paid with: money going to
        another card is allowed (a customer's new card) but marked.
        """
        terminal = self._idle_terminal()
        async with self._lock:
            await self._resolve_doubts()
            if self._doubts:
                raise Refused(
                    "card-payment-in-doubt",
                    "An earlier card payment's outcome is still unknown; tilld asks the "
                    "terminal again by itself. Refund in cash or by manual Swish meanwhile.",
                )
            amount, payment_id = body["total"], str(uuidlib.uuid4())
            doubt = terminal.doubt_record(amount, payment_id, kind="refund")
            intent = {
                **self._doubt_body(body["original_sale_id"], payment_id, amount, doubt),
                "kind": "refund",
                "original_receipt_no": body["original_receipt_no"],
                "original_cards": original_cards,
                "refund": body,
            }
            await self.journal.append(
                "card-intent", intent, effects=(open_card_intent(payment_id),)
            )
            sale_id = intent["sale_id"]
            self._running[sale_id] = payment_id
            self._publish("refund-started", sale_id, payment_id, amount=amount)
            try:
                try:
                    result = await terminal.refund(
                        amount,
                        payment_id,
                        on_status=lambda s: self._publish(
                            "status", sale_id, payment_id, code=s.code, text=s.text
                        ),
                    )
                finally:
                    self._running.pop(sale_id, None)
                return await self._settle_refund(intent, result, doubt)
            except TerminalUnavailable as exc:
                await self._close_refund(intent, "unavailable", str(exc))
                raise Refused(
                    "terminal-unavailable",
                    f"The card terminal is not connected ({exc}); nothing went back to the "
                    "card. Refund in cash or by manual Swish.",
                ) from None
            except Refused:
                raise
            except BaseException:
                # The intent is on disk and open: whatever went wrong, the
                # terminal is asked before the next card payment or refund.
                self._doubts[payment_id] = intent
                log.exception("card refund %s: outcome not recorded", payment_id)
                raise

    def refund_in_doubt_for(self, receipt_no: int) -> bool:
        return any(
            body.get("kind") == "refund" and body.get("original_receipt_no") == receipt_no
            for body in self._doubts.values()
        )

    async def _settle_refund(
        self, intent: dict[str, Any], result: TerminalResult, doubt: InDoubt
    ) -> Entry:
        lost = result.outcome is Outcome.IN_DOUBT
        if lost:
            assert result.doubt is not None
            result = await self._ask(result.doubt)
        if result.outcome is Outcome.APPROVED and result.transaction is None:
            result = await self._ask(doubt)
        if result.outcome is Outcome.IN_DOUBT or (result.transaction is None and result.approved):
            self._doubts[intent["payment_id"]] = intent
            self._publish("in-doubt", intent["sale_id"], intent["payment_id"], amount=doubt.amount)
            raise Refused(
                "card-payment-in-doubt",
                "The terminal did not say whether the money went back to the card. Do not "
                "refund again: tilld asks the terminal by itself and writes the refund "
                "receipt if it went through. Check the terminal's display meanwhile.",
                payment_id=intent["payment_id"],
            )
        if not result.approved:
            await self._close_refund(intent, result.outcome.value, result.result_text)
            if result.outcome is Outcome.ABORTED:
                raise Refused(
                    "card-aborted",
                    f"The card refund was cancelled ({result.result_text}); nothing went "
                    "back to the card.",
                )
            if lost:
                raise Refused(
                    "card-refund-not-booked",
                    "The link to the terminal broke before it booked the refund; nothing went "
                    "back to the card. Refund again.",
                )
            raise Refused(
                "card-declined",
                f"The terminal refused the refund ({result.result_text}); nothing went back "
                "to the card. Refund in cash or by manual Swish.",
                result_code=result.result_code,
            )
        assert result.transaction is not None
        try:
            return await self._record_refund(intent, result.transaction, result.receipt_lines)
        except Refused as exc:
            self._doubts[intent["payment_id"]] = intent
            raise Refused(
                "card-payment-in-doubt",
                f"The money went back to the card but could not be recorded ({exc.message}). "
                "Do not refund again: tilld records it as soon as it can.",
                payment_id=intent["payment_id"],
            ) from None

    async def _record_refund(
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
        self._doubts.pop(intent["payment_id"], None)
        self._publish(
            "refunded",
            intent["sale_id"],
            intent["payment_id"],
            amount=intent["amount"],
            receipt_no=entry.body["receipt_no"],
        )
        return entry

    async def _close_refund(self, intent: dict[str, Any], outcome: str, text: str) -> None:
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
        self._doubts.pop(intent["payment_id"], None)
        self._publish(
            f"refund-{outcome}", intent["sale_id"], intent["payment_id"], amount=intent["amount"]
        )

    # -- payments in doubt -------------------------------------------------------

    async def _ask(self, doubt: InDoubt) -> TerminalResult:
        assert self.terminal is not None
        try:
            return await self.terminal.resolve_in_doubt(doubt)
        except (TerminalError, OSError) as exc:
            log.warning("payment %s still in doubt: %s", doubt.ref, exc)
            return TerminalResult(Outcome.IN_DOUBT, doubt.amount, doubt.ref, doubt=doubt)

    async def _resolve_doubts(self, held_sale_id: str | None = None) -> None:
        """Settle every payment in doubt that the terminal can answer for now.

        `held_sale_id` is the sale whose lock the caller already holds.
        """
        for payment_id, body in list(self._doubts.items()):
            doubt = InDoubt(
                amount=body["amount"],
                ref=payment_id,
                reason="resolving",
                receipt_before=body.get("receipt_before"),
                receipt_before_known=bool(body.get("receipt_before_known")),
                kind=body.get("kind", "authorisation"),
            )
            result = await self._ask(doubt)
            if result.outcome is Outcome.IN_DOUBT:
                continue
            try:
                if doubt.kind == "refund":
                    await self._settle_resolved_refund(body, result)
                else:
                    held = body["sale_id"] == held_sale_id
                    await self._settle_resolved(body, result, lock_held=held)
            except IntentClosed:
                # Recorded already (the journal refused a second record): nothing to add.
                log.error(
                    "card %s %s was recorded already; no longer in doubt", doubt.kind, payment_id
                )
                self._doubts.pop(payment_id, None)

    async def _settle_resolved_refund(self, intent: dict[str, Any], result: TerminalResult) -> None:
        if result.approved and result.transaction is not None:
            log.warning(
                "card refund %s of %d öre WAS booked by the terminal; writing its receipt",
                intent["payment_id"],
                intent["amount"],
            )
            await self._record_refund(intent, result.transaction, result.receipt_lines)
        else:
            log.info("card refund %s was not booked by the terminal", intent["payment_id"])
            await self._close_refund(intent, "not-booked", "resolved after the link was lost")

    async def _settle_resolved(
        self, body: dict[str, Any], result: TerminalResult, *, lock_held: bool
    ) -> None:
        sale_id, payment_id, amount = body["sale_id"], body["payment_id"], body["amount"]
        sale = self.settlement.open_sale_for(sale_id)
        if result.outcome is not Outcome.APPROVED or result.transaction is None:
            log.info("card payment %s was not booked by the terminal", payment_id)
            await self._record_detached(sale_id, payment_id, amount, "not-booked")
            return
        transaction = result.transaction
        offline = transaction.offline or not self.connectivity.internet
        log.warning(
            "card payment %s of %d öre WAS booked by the terminal; adding it to sale %s",
            payment_id,
            amount,
            sale_id,
        )
        if sale is None:
            # The sale is gone (voided meanwhile): the money is the customer's.
            await self._record_detached(
                sale_id, payment_id, amount, "approved-without-sale", transaction
            )
            return
        payment = Payment(payment_id=payment_id, method="card", amount=amount, tendered=amount)
        payment.card = card_record(transaction, offline)
        lock = contextlib.nullcontext() if lock_held else self.settlement.sale_lock(sale_id)
        async with lock:
            # Read again under the lock: the sale may have been completed
            # (paid another way) while this waited for it.
            sale = self.settlement.open_sale_for(sale_id)
            if sale is None:
                await self._record_detached(
                    sale_id, payment_id, amount, "approved-without-sale", transaction
                )
                return
            sale.payments.append(payment)
            try:
                await self._record(
                    sale,
                    payment_id,
                    amount,
                    "approved",
                    "resolved after the link was lost",
                    transaction=transaction,
                    offline=offline,
                    keep_sale=True,
                )
            except BaseException:
                sale.payments.remove(payment)
                raise
            if sale.due <= 0:
                await self.settlement.settle(sale)

    async def _record_detached(
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
                effects.append(count_card(OFFLINE_STORED, 1))
                self.offline_stored += 1
            log.error(
                "card payment %s was charged but its sale %s is gone: refund %d öre to the "
                "customer (terminal receipt %s)",
                payment_id,
                sale_id,
                amount,
                transaction.receipt_no,
            )
        await self.journal.append("card-result", body, effects=tuple(effects))
        self._doubts.pop(payment_id, None)
        self._publish(outcome, sale_id, payment_id, amount=amount)

    async def _resolve_in_background(self) -> None:
        while True:
            if self._doubts and self.ready and not self._lock.locked():
                async with self._lock:
                    try:
                        await self._resolve_doubts()
                    except Refused as exc:
                        log.warning("resolving a card payment in doubt: %s", exc.message)
                    except Exception:
                        # The loop must outlive one bad answer: doubts left
                        # unresolved would block every card payment.
                        log.exception("resolving a card payment in doubt failed; retrying")
                if not self._doubts and self.connectivity.internet:
                    # A flush waits for doubts; now there are none it can run.
                    self.internet_back()
            await asyncio.sleep(RESOLVE_RETRY_S if self._doubts else 1.0)

    # -- the terminal's offline store -----------------------------------------------

    def internet_back(self) -> None:
        """Flush the terminal's stored offline payments now the internet is back."""
        if self.terminal is None or self.offline_stored == 0:
            return
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush(), name="terminal flush")

    async def _flush(self) -> None:
        try:
            await self._flush_once()
        except Exception:
            log.exception("terminal flush failed; tilld tries again when the internet returns")

    async def _flush_once(self) -> None:
        assert self.terminal is not None
        if not self.ready:
            await self.terminal.wait_ready(60)  # type: ignore[attr-defined]
        async with self._lock:
            if self._doubts:
                # After an end of day a terminal's "last transaction" is the
                # day's closing, so a doubt could no longer be resolved.
                log.info("terminal flush waits until no card payment is in doubt")
                return
            before = self.offline_stored
            try:
                sent = await self.terminal.send_offline_transactions()
                closed = await self.terminal.end_of_day()
            except (TerminalError, OSError) as exc:
                log.warning("terminal flush failed (%s); tilld tries again at the next chance", exc)
                return
            if not (sent.ok and closed.ok):
                log.warning(
                    "terminal flush: send offline %s, end of day %s; the count stays %d",
                    sent.result_text,
                    closed.result_text,
                    before,
                )
                return
            # The terminal's own answer says how many it sent; what it did
            # not send is still stored on it.
            after = max(0, before - max(sent.count, closed.count))
            await self.journal.append(
                "terminal-flush",
                {
                    "offline_before": before,
                    "sent": sent.count,
                    "end_of_day_count": closed.count,
                    "end_of_day_total": closed.total,
                    "offline_after": after,
                },
                effects=(count_card(OFFLINE_STORED, set_to=after),),
            )
            self.offline_stored = after
            log.info("terminal flushed: %d offline payment(s) sent, %d left", sent.count, after)
            self.events.publish("terminal", event="flushed", sent=sent.count, offline_stored=after)

    # -- helpers -----------------------------------------------------------------

    def _idle_terminal(self) -> CardTerminal:
        terminal = self._require_terminal()
        if self._lock.locked():
            raise Refused(
                "terminal-busy",
                "The card terminal is busy with another payment; wait for it to finish.",
            )
        return terminal

    def _require_terminal(self) -> CardTerminal:
        if self.terminal is None:
            raise Refused(
                "terminal-unavailable",
                "No card terminal is configured on this till. Take another payment method.",
            )
        return self.terminal

    def _publish(self, event: str, sale_id: str, payment_id: str, **fields: Any) -> None:
        self.events.publish(
            "terminal", event=event, sale_id=sale_id, payment_id=payment_id, **fields
        )


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
