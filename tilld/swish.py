"""Integrated Swish: a payment request through the back-end, followed until it ends.

The customer pays in the Swish app, so the request outlives the API call
that starts it. ``sale.pay`` returns at once with the request's token (for
the QR code) and status ``pending``; a follower task polls the back-end until
the request is PAID, DECLINED, ERROR or CANCELLED, or cancels it after the
timeout. The pending payment is on disk before the request exists, so a till
restarted mid-payment resumes following it and a paid request is never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .backend import BackendClient, BackendError
from .errors import Reason, Refused
from .events import EventBus
from .journal import Journal
from .sales import Payment, Sale
from .settlement import Settlement

log = logging.getLogger("tilld.swish")

FINAL = ("PAID", "DECLINED", "ERROR", "CANCELLED")


class SwishPayments:
    def __init__(
        self,
        settlement: Settlement,
        journal: Journal,
        events: EventBus,
        backend: BackendClient,
        *,
        payee: Callable[[], str],
        poll_interval_s: float,
        timeout_s: float,
    ) -> None:
        # Where a paid request settles its sale (and the open sales it follows).
        self.settlement = settlement
        self.journal = journal
        self.events = events
        self.backend = backend
        self.payee = payee  # the seller's name on the customer's Swish request
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self._followers: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Follow the requests that were pending when the till stopped."""
        for sale in self.settlement.open_sales_with_pending_payments():
            payment = sale.pending_payment
            assert payment is not None
            log.warning("resuming Swish request for sale %s", sale.sale_id)
            self._follow(sale, payment)

    async def stop(self) -> None:
        for task in self._followers.values():
            task.cancel()
        await asyncio.gather(*self._followers.values(), return_exceptions=True)

    async def request(self, sale: Sale, amount: int) -> dict[str, Any]:
        """Create the request (the caller holds the sale's lock and checked the rules)."""
        payment = sale.tender("swish", amount)
        payment.status = "pending"
        sale.payments.append(payment)
        try:
            # On disk before the request exists: a crash now leaves a request
            # we know of, never a request we forgot.
            await self.journal.save_open_sale(sale.sale_id, sale.state())
            created = await self.backend.swish_create(
                payment.payment_id, payment.amount, self.payee()
            )
        except BackendError as exc:
            sale.payments.remove(payment)
            await self.journal.save_open_sale(sale.sale_id, sale.state())
            reason = Reason.METHOD_UNAVAILABLE_OFFLINE if exc.transient else Reason.SWISH_FAILED
            raise Refused(
                reason,
                f"Swish could not be started ({exc.message}). Take cash, card or manual Swish.",
            ) from None
        payment.swish_id = str(created["id"])
        payment.swish_token = created.get("token")
        await self.journal.save_open_sale(sale.sale_id, sale.state())
        self._follow(sale, payment)
        return {
            "payment_id": payment.payment_id,
            "status": "pending",
            "change": 0,
            "swish": {"id": payment.swish_id, "token": payment.swish_token},
            "sale": sale.view(),
        }

    async def cancel(self, sale: Sale, payment: Payment) -> dict[str, Any]:
        assert payment.swish_id is not None
        try:
            reply = await self.backend.swish_cancel(payment.swish_id)
        except BackendError as exc:
            raise Refused(
                Reason.SWISH_FAILED,
                f"Could not cancel the Swish request ({exc.message}); it is still followed.",
            ) from None
        return await self._finish(sale, payment, str(reply.get("status", "CANCELLED")))

    def _follow(self, sale: Sale, payment: Payment) -> None:
        task = asyncio.create_task(self._poll(sale, payment))
        self._followers[payment.payment_id] = task
        task.add_done_callback(lambda _t: self._followers.pop(payment.payment_id, None))

    async def _poll(self, sale: Sale, payment: Payment) -> None:
        assert payment.swish_id is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while payment.status == "pending":
            await asyncio.sleep(self.poll_interval_s)
            try:
                if loop.time() >= deadline:
                    reply = await self.backend.swish_cancel(payment.swish_id)
                else:
                    reply = await self.backend.swish_status(payment.swish_id)
            except BackendError as exc:
                log.info("Swish request %s not checked: %s", payment.swish_id, exc.message)
                continue  # keep following: a paid request must not be forgotten
            status = str(reply.get("status"))
            if status in FINAL:
                await self._finish(sale, payment, status)

    async def _finish(self, sale: Sale, payment: Payment, status: str) -> dict[str, Any]:
        if self.settlement.open_sale_for(sale.sale_id) is not sale:
            # Finished already: the follower and a cancel both heard the outcome.
            return {"payment_id": payment.payment_id, "status": payment.status}
        async with self.settlement.sale_lock(sale.sale_id):
            if payment.status != "pending":
                return {"payment_id": payment.payment_id, "status": payment.status}
            if status == "PAID":
                payment.status = "paid"
            else:
                sale.payments.remove(payment)
                payment.status = status.lower()
            # The payment's outcome is told first, then what it did to the sale.
            self.events.publish(
                "sale",
                event="payment",
                sale_id=sale.sale_id,
                payment_id=payment.payment_id,
                method="swish",
                swish_status=status,
            )
            if status == "PAID":
                outcome = await self.settlement.settle(sale)
            else:
                await self.journal.save_open_sale(sale.sale_id, sale.state())
                outcome = {"status": "accepted", "sale": sale.view()}
        return {"payment_id": payment.payment_id, "swish_status": status, **outcome}
