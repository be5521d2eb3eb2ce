"""Selling: open a sale, add and remove lines, pay, void; empty sales left open are swept.

A payment by card or integrated Swish is handed to its flow (tilld/cardpay/,
tilld/swish.py) with the sale's lock held; cash and manual Swish settle here.
Every flow ends in tilld/settlement.py, which owns the open sales.

A checkout is the same sale in one call: its lines and its payments go
through the same rules as `sale.add` and `sale.pay` (one function each,
below), and the sale is journaled complete or not at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .backend import BackendClient, BackendError
from .catalog import Article, Catalog
from .config import Settings
from .errors import Reason, Refused
from .events import EventBus
from .journal import Journal, forget_open_sale, now_with_offset
from .payment_policy import PaymentPolicy, raise_if_refused
from .rules import Connectivity, check_article
from .sales import BasketLine, Line, Payment, Sale, Tender
from .settlement import Settlement, view_of_entry

log = logging.getLogger("tilld.till")

# Abandoned sales are looked for this often (at most; sooner when abandon_after_s is short).
SWEEP_INTERVAL_S = 60.0
# A sweep closing a sale when the till stops gets this long to finish its journal entry.
SWEEP_STOP_S = 0.3
# Methods the till only records, on the cashier's word; the others wait for the
# customer at the terminal or in the Swish app (tilld/cardpay/, tilld/swish.py).
RECORDED_METHODS = ("cash", "swish-manual")


class CardFlow(Protocol):
    """What selling needs of card payments (tilld/cardpay/)."""

    async def pay(self, sale: Sale, amount: int) -> dict[str, Any]: ...

    async def cancel(self, sale_id: str, payment_id: str) -> dict[str, Any] | None: ...

    def in_doubt_for(self, sale_id: str) -> bool: ...

    def at_terminal(self, sale_id: str) -> bool: ...


class SwishFlow(Protocol):
    """What selling needs of integrated Swish (tilld/swish.py)."""

    async def request(self, sale: Sale, amount: int) -> dict[str, Any]: ...

    async def cancel(self, sale: Sale, payment: Payment) -> dict[str, Any]: ...


class Selling:
    def __init__(
        self,
        settings: Callable[[], Settings],
        journal: Journal,
        events: EventBus,
        catalog: Catalog,
        connectivity: Callable[[], Connectivity],
        settlement: Settlement,
        policy: PaymentPolicy,
        backend: BackendClient,
        *,
        card: CardFlow,
        swish: SwishFlow,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.events = events
        self.catalog = catalog
        self.connectivity = connectivity
        self.settlement = settlement
        self._checkout_ids = asyncio.Lock()
        self.policy = policy
        self.backend = backend  # seats for event tickets are reserved at the server
        self.card = card
        self.swish = swish
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_abandoned(), name="abandoned sales")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.wait({self._sweeper}, timeout=SWEEP_STOP_S)

    def open_sale(self, training: bool = False) -> dict[str, Any]:
        self.settlement.require_accepting()
        self._require_room_for_a_sale()
        sale = Sale.new(now_with_offset(), training=training)
        self.settlement.open[sale.sale_id] = sale
        self.settlement.opened_at[sale.sale_id] = time.monotonic()
        self.events.publish("sale", event="opened", sale_id=sale.sale_id, training=training)
        return {"sale_id": sale.sale_id, "training": training}

    def _require_room_for_a_sale(self) -> None:
        limit = self.settings().sales.max_open
        count = len(self.settlement.open)
        if count >= limit:
            raise Refused(
                Reason.TOO_MANY_OPEN_SALES,
                f"{count} sales are open on this till, as many as it keeps "
                f"([sales] max_open = {limit}). Complete or void the open sales (sale.list "
                "shows them; empty ones close by themselves after [sales] abandon_after_s), "
                "or raise [sales] max_open.",
                open_sales=count,
                max_open=limit,
            )

    async def _sweep_abandoned(self) -> None:
        while True:
            # Read each time: both keys reload live.
            abandon_after_s = self.settings().sales.abandon_after_s
            interval = min(SWEEP_INTERVAL_S, max(0.1, abandon_after_s / 4))
            await asyncio.sleep(interval)
            # A full disk must not end the sweep: the sales are tried again next time.
            try:
                await self.abandon_empty_sales()
            except Refused as exc:
                log.error("empty sales left open not closed: %s", exc.message)
            except Exception:
                log.exception("closing empty sales left open failed; trying again later")

    async def abandon_empty_sales(self) -> int:
        """Close the empty sales left open past [sales] abandon_after_s; how many were closed.

        Only sales with no lines and no payments: one with money taken is the
        customer's, and one with lines is a basket someone may come back to."""
        cutoff = time.monotonic() - self.settings().sales.abandon_after_s
        book = self.settlement
        stale = [
            sale
            for sale_id, opened in list(book.opened_at.items())
            if opened <= cutoff and (sale := book.open.get(sale_id)) is not None and sale.empty
        ]
        closed = 0
        for sale in stale:
            if book.open.get(sale.sale_id) is not sale:
                continue  # completed or voided while an earlier one was journaled
            async with book.sale_lock(sale.sale_id):
                if book.open.get(sale.sale_id) is not sale or not sale.empty:
                    continue
                entry = await self.journal.append(
                    "void",
                    sale.void_body("abandoned", self.connectivity().mode.value),
                    effects=(forget_open_sale(sale.sale_id),),
                )
                book.close(sale, view_of_entry(entry))
            closed += 1
            self.events.publish(
                "sale",
                event="voided",
                sale_id=sale.sale_id,
                total=0,
                returned=[],
                reason="abandoned",
            )
        if closed:
            log.info("closed %d empty sale(s) left open as abandoned", closed)
        return closed

    def sale_turn(self, sale_id: str) -> asyncio.Lock:
        """The sale's lock, for a change to it; refused at once while its card payment
        is at the terminal, where the lock is held until the customer is done."""
        if self.card.at_terminal(sale_id):
            raise Refused(
                Reason.CARD_PAYMENT_RUNNING,
                f"Sale {sale_id}'s card payment is at the terminal now. Wait for its outcome, "
                "or cancel it with sale.cancel_payment.",
            )
        return self.settlement.sale_lock(sale_id)

    def list_sales(self) -> dict[str, Any]:
        return {"sales": [sale.view() for sale in self.settlement.open.values()]}

    async def add(
        self, sale_id: str, *, plu: str | None, barcode: str | None, quantity: int
    ) -> dict[str, Any]:
        self.settlement.require_accepting()
        async with self.sale_turn(sale_id):
            sale = self.settlement.sale(sale_id)
            article = self._sellable(plu, barcode)
            reservation = None
            if article.kind == "event-ticket":
                sale.require_unpaid()
                reservation = await self._reserve(article, quantity)
            line = sale.add(article, quantity)
            if reservation is not None:
                line.reservation_ids.append(reservation)
            view = sale.view()
            self._publish_lines("line-added", sale, line.line_id, view)
            return {"line_id": line.line_id, "sale": view}

    def _sellable(self, plu: str | None, barcode: str | None) -> Article:
        """The article a line names, if it may be sold now (the rules of `sale.add`)."""
        article = self.catalog.find(plu=plu, barcode=barcode)
        if article is None:
            what = f"PLU {plu}" if plu is not None else f"barcode {barcode}"
            raise Refused(
                Reason.UNKNOWN_ARTICLE,
                f"No article with {what} in catalog {self.catalog.version}. "
                "Search the catalog by name with catalog.search.",
            )
        decision = check_article(
            article.kind,
            self.connectivity(),
            name=article.name,
            fallback=self.catalog.fallback_for(article),
        )
        raise_if_refused(decision)
        self.settlement.registering.require_registrable(article.vat_rate, article.name)
        return article

    def _publish_lines(
        self, kind: str, sale: Sale, line_id: int, view: dict[str, Any] | None = None
    ) -> None:
        view = view if view is not None else sale.view()
        self.events.publish(
            "sale",
            event=kind,
            sale_id=sale.sale_id,
            line_id=line_id,
            lines=view["lines"],
            total=view["total"],
            due=view["due"],
        )

    async def _reserve(self, article: Article, quantity: int) -> str:
        """Seats for an event ticket, reserved at the server before the line is added."""
        assert article.event_id is not None
        try:
            reply = await self.backend.reserve(article.event_id, str(uuidlib.uuid4()), quantity)
        except BackendError as exc:
            if exc.transient:
                # The server went away between the rule check and the request.
                offline = check_article(
                    article.kind,
                    Connectivity(server=False, internet=self.connectivity().internet),
                    name=article.name,
                    fallback=self.catalog.fallback_for(article),
                )
                raise_if_refused(offline)
            raise Refused(
                Reason.RESERVATION_FAILED,
                f"The ticket server would not reserve seats for '{article.name}': "
                f"{exc.message}. Try again or ask a technician.",
            ) from None
        if reply is None:
            raise Refused(
                Reason.SOLD_OUT,
                f"'{article.name}' is sold out (asked for {quantity}).",
                event_id=article.event_id,
            )
        return str(reply["reservation_id"])

    async def remove(self, sale_id: str, line_id: int) -> dict[str, Any]:
        async with self.sale_turn(sale_id):
            sale = self.settlement.sale(sale_id)
            sale.remove(line_id)
            view = sale.view()
            self._publish_lines("line-removed", sale, line_id, view)
            return {"sale": view}

    async def get(self, sale_id: str) -> dict[str, Any]:
        book = self.settlement
        if sale_id in book.open:
            return book.open[sale_id].view()
        if sale_id in book.recent:
            return book.recent[sale_id]
        entry = await self.journal.find_sale(sale_id)
        if entry is None:
            book.sale(sale_id)  # raises unknown-sale
        return view_of_entry(entry)

    async def void(self, sale_id: str, reason: str) -> dict[str, Any]:
        async with self.sale_turn(sale_id):
            sale = self.settlement.sale(sale_id)
            sale.require_no_pending_payment()
            if self.card.in_doubt_for(sale_id):
                raise Refused(
                    Reason.CARD_PAYMENT_IN_DOUBT,
                    "A card payment for this sale may have been charged; tilld is asking the "
                    "terminal. Void the sale once it has answered.",
                )
            entry = await self.journal.append(
                "void",
                sale.void_body(reason, self.connectivity().mode.value),
                effects=(forget_open_sale(sale.sale_id),),
            )
            view = view_of_entry(entry)
            self.settlement.close(sale, view)
        self.events.publish(
            "sale",
            event="voided",
            sale_id=sale_id,
            total=sale.total,
            returned=[p.as_dict() for p in sale.payments],
            reason=reason,
        )
        return {"sale_id": sale_id, "state": "voided", "seq": entry.seq, "sale": view}

    async def pay(
        self, sale_id: str, method: str, amount: int, reference: str | None
    ) -> dict[str, Any]:
        self.settlement.require_accepting()
        async with self.sale_turn(sale_id):
            sale = self.settlement.sale(sale_id)
            self._require_method(method, sale.training)
            if method == "swish":
                return await self.swish.request(sale, amount)
            if method == "card":
                return await self.card.pay(sale, amount)
            payment = self._take(sale, method, amount, reference)
            try:
                outcome = await self.settlement.settle(sale)
            except BaseException:
                sale.payments.remove(payment)
                raise
        return {"payment_id": payment.payment_id, "change": payment.change, **outcome}

    def _require_method(self, method: str, training: bool) -> None:
        """May ``method`` be taken now (the outage routine, the catalog, training)?"""
        raise_if_refused(self.policy.payment_decision(method, training=training))

    def _take(self, sale: Sale, method: str, amount: int, reference: str | None) -> Payment:
        """A payment the till only records, added to the sale (not yet journaled)."""
        if method not in RECORDED_METHODS:
            raise Refused(
                Reason.METHOD_NOT_SUPPORTED,
                f"This till has no {method} payment flow; take cash or manual Swish.",
            )
        payment = sale.tender(method, amount, reference)
        sale.payments.append(payment)
        return payment

    async def checkout(
        self,
        lines: Sequence[BasketLine],
        payments: Sequence[Tender],
        training: bool = False,
        checkout_id: str | None = None,
    ) -> dict[str, Any]:
        """A whole basket, paid, in one journal entry; refused as a whole, leaving nothing.

        The sale never becomes an open sale: it is checked line by line and
        payment by payment with the step-by-step rules, then journaled
        complete. Card and integrated Swish wait for the customer, so they
        are refused here with a pointer to the step-by-step calls. A
        ``checkout_id`` sent again (the answer was lost) gets the sale it
        already recorded, never a second one."""
        if checkout_id is None:
            return await self._checkout(lines, payments, training, None)
        # One lock for all checkouts with an id (they take milliseconds): two
        # sends of one id must not both find nothing and both record a sale.
        async with self._checkout_ids:
            earlier = await self._recorded_checkout(checkout_id)
            if earlier is not None:
                return earlier
            return await self._checkout(lines, payments, training, checkout_id)

    async def _recorded_checkout(self, sale_id: str) -> dict[str, Any] | None:
        if sale_id in self.settlement.open:
            raise Refused(
                Reason.CHECKOUT_ID_IN_USE,
                "This checkout_id is an open sale's id; send a new id for a new checkout.",
                sale_id=sale_id,
            )
        view = self.settlement.recent.get(sale_id)
        if view is None:
            entry = await self.journal.find_sale(sale_id)
            if entry is None:
                return None
            view = view_of_entry(entry)
        if view["state"] != "completed":
            raise Refused(
                Reason.CHECKOUT_ID_IN_USE,
                f"This checkout_id is a sale that was {view['state']}; send a new id for a "
                "new checkout.",
                sale_id=sale_id,
            )
        change = sum(p.get("change", 0) for p in view["payments"])
        outcome = {
            "sale_id": sale_id,
            "change": change,
            "status": "completed",
            "receipt_no": view["receipt_no"],
            "sale": view,
            "repeated": True,
        }
        control = await self.settlement.registering.code_of(view["receipt_no"], "sale")
        if control is not None:
            outcome["control"] = control
        return outcome

    async def _checkout(
        self,
        lines: Sequence[BasketLine],
        payments: Sequence[Tender],
        training: bool,
        checkout_id: str | None,
    ) -> dict[str, Any]:
        self.settlement.require_accepting()
        sale = Sale.new(now_with_offset(), training=training, sale_id=checkout_id)
        seats: dict[int, tuple[Line, Article]] = {}
        for item in lines:
            article = self._sellable(item.plu, item.barcode)
            line = sale.add(article, item.quantity)
            if article.kind == "event-ticket":
                seats[line.line_id] = (line, article)
        for place, tender in enumerate(payments, start=1):
            if sale.payments and sale.due <= 0:
                # Step by step the sale completes at its first covering
                # payment and takes no more; a checkout records the same.
                raise Refused(
                    Reason.CHECKOUT_OVERPAID,
                    f"The payments before payment {place} already cover the total of "
                    f"{sale.total} öre. Nothing was recorded: send only the payments the sale "
                    "needs (a cash payment may be larger than what is due; its change is given).",
                    payment=place,
                    total=sale.total,
                )
            self._require_method(tender.method, training)
            if tender.method not in RECORDED_METHODS:
                raise Refused(
                    Reason.CHECKOUT_NEEDS_STEPS,
                    f"A {tender.method} payment waits for the customer, so sale.checkout does "
                    "not take it. Ring the sale up with sale.open and sale.add and take it "
                    "with sale.pay, or pay in cash or by manual Swish.",
                    method=tender.method,
                )
            self._take(sale, tender.method, tender.amount, tender.reference)
        if sale.due > 0:
            raise Refused(
                Reason.CHECKOUT_NOT_COVERED,
                f"The payments come to {sale.paid} öre but the sale is {sale.total} öre; "
                f"{sale.due} öre is missing. Nothing was recorded: send the checkout again "
                "with payments that cover the total.",
                total=sale.total,
                paid=sale.paid,
                due=sale.due,
            )
        # Seats last: only a basket that passed every other rule reserves any.
        for line, article in seats.values():
            line.reservation_ids.append(await self._reserve(article, line.quantity))
        outcome = await self.settlement.settle(sale)
        change = sum(p.change for p in sale.payments)
        return {"sale_id": sale.sale_id, "change": change, **outcome}

    async def cancel_payment(self, sale_id: str, payment_id: str) -> dict[str, Any]:
        # A card payment holds the sale's lock while it waits at the
        # terminal, so it is cancelled without taking the lock.
        cancelled = await self.card.cancel(sale_id, payment_id)
        if cancelled is not None:
            return cancelled
        async with self.settlement.sale_lock(sale_id):
            sale = self.settlement.sale(sale_id)
            pending = sale.pending_payment
            if pending is None or pending.payment_id != payment_id:
                raise Refused(
                    Reason.UNKNOWN_PAYMENT,
                    f"Sale {sale_id} has no payment {payment_id} waiting for the customer.",
                )
        return await self.swish.cancel(sale, pending)
