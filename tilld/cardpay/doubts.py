"""Payments in doubt: asked of the terminal until it says what it booked, then recorded.

An intent left open (link lost, tilld killed) is read back at start-up; it
is resolved before the next card payment or refund and, meanwhile, in the
background. A payment that went through is added to its sale, or recorded
as the customer's money if the sale is gone; a refund that went through gets
its receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from drivers.terminal import InDoubt, Outcome, TerminalResult

from ..errors import Refused
from ..journal import IntentClosed, Journal
from ..rules import Connectivity
from ..sales import Payment
from ..settlement import Settlement
from .desk import OFFLINE_AMOUNT, OFFLINE_SINCE, OFFLINE_STORED, TerminalDesk, card_record
from .offline_store import OfflineStore
from .records import CardRecords

log = logging.getLogger("tilld.card")

# A terminal that has just reconnected needs a moment before it can answer
# what it booked; a payment in doubt is retried this often in the background.
RESOLVE_RETRY_S = 5.0


class DoubtResolver:
    def __init__(
        self,
        desk: TerminalDesk,
        records: CardRecords,
        offline_store: OfflineStore,
        journal: Journal,
        settlement: Settlement,
        connectivity: Callable[[], Connectivity],
    ) -> None:
        self.desk = desk
        self.records = records
        self.offline_store = offline_store
        self.journal = journal
        self.settlement = settlement  # a payment found booked joins its sale there
        self._connectivity = connectivity
        self._task: asyncio.Task[None] | None = None

    @property
    def connectivity(self) -> Connectivity:
        return self._connectivity()

    async def load(self) -> None:
        """Read the offline count and the open intents: before the API serves anyone."""
        journal = self.journal
        self.desk.offline_stored = await journal.card_counter(OFFLINE_STORED)
        self.desk.offline_amount = await journal.card_counter(OFFLINE_AMOUNT)
        self.desk.offline_since = float(await journal.card_counter(OFFLINE_SINCE))
        if self.desk.offline_stored and not self.desk.offline_since:
            # A journal from before the age was counted: its age starts now.
            self.desk.offline_since = float(int(time.time()))
        for entry in await journal.open_card_intents():
            self.desk.doubts[entry.body["payment_id"]] = entry.body
        if self.desk.doubts:
            log.warning(
                "%d card payment(s) were at the terminal when tilld stopped; "
                "asking the terminal what it booked before the next card payment",
                len(self.desk.doubts),
            )

    async def start(self) -> None:
        if self.desk.terminal is not None:
            self._task = asyncio.create_task(self._resolve_in_background(), name="card doubts")

    async def resolve(self, held_sale_id: str | None = None) -> None:
        """Settle every payment in doubt that the terminal can answer for now.

        `held_sale_id` is the sale whose lock the caller already holds.
        """
        for payment_id, body in list(self.desk.doubts.items()):
            doubt = InDoubt(
                amount=body["amount"],
                ref=payment_id,
                reason="resolving",
                receipt_before=body.get("receipt_before"),
                receipt_before_known=bool(body.get("receipt_before_known")),
                kind=body.get("kind", "authorisation"),
            )
            result = await self.desk.ask(doubt)
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
                self.desk.doubts.pop(payment_id, None)

    async def _settle_resolved_refund(self, intent: dict[str, Any], result: TerminalResult) -> None:
        if result.approved and result.transaction is not None:
            log.warning(
                "card refund %s of %d öre WAS booked by the terminal; writing its receipt",
                intent["payment_id"],
                intent["amount"],
            )
            await self.records.refund_receipt(intent, result.transaction, result.receipt_lines)
        else:
            log.info("card refund %s was not booked by the terminal", intent["payment_id"])
            await self.records.close_refund(
                intent, "not-booked", "resolved after the link was lost"
            )

    async def _settle_resolved(
        self, body: dict[str, Any], result: TerminalResult, *, lock_held: bool
    ) -> None:
        sale_id, payment_id, amount = body["sale_id"], body["payment_id"], body["amount"]
        sale = self.settlement.open_sale_for(sale_id)
        if result.outcome is not Outcome.APPROVED or result.transaction is None:
            log.info("card payment %s was not booked by the terminal", payment_id)
            await self.records.detached(sale_id, payment_id, amount, "not-booked")
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
            await self.records.detached(
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
                await self.records.detached(
                    sale_id, payment_id, amount, "approved-without-sale", transaction
                )
                return
            sale.payments.append(payment)
            try:
                await self.records.result(
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

    async def _resolve_in_background(self) -> None:
        while True:
            if self.desk.doubts and self.desk.ready and not self.desk.lock.locked():
                async with self.desk.turn("resolve"):
                    try:
                        await self.resolve()
                    except Refused as exc:
                        log.warning("resolving a card payment in doubt: %s", exc.message)
                    except Exception:
                        # The loop must outlive one bad answer: doubts left
                        # unresolved would block every card payment.
                        log.exception("resolving a card payment in doubt failed; retrying")
                if not self.desk.doubts and self.connectivity.internet:
                    # A flush waits for doubts; now there are none it can run.
                    self.offline_store.internet_back()
            await asyncio.sleep(RESOLVE_RETRY_S if self.desk.doubts else 1.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
