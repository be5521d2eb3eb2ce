"""The open sales and how a receipt becomes durable: settle a sale, record a refund.

Selling, card payments and Swish all end here: the open sales (each with
the lock that orders changes to it) live in one registry, and a paid sale
or a refund is journaled, its tickets counted, its receipt printed and its
drawer opened in one place, whichever payment flow got it there.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from .catalog import Catalog
from .config import Settings
from .errors import Reason, Refused
from .events import EventBus
from .journal import (
    Entry,
    Journal,
    SideEffect,
    TicketRecord,
    forget_open_sale,
    set_ticket_state,
    store_tickets,
)
from .outbox import Outbox
from .printing import Printing
from .registering import Registering
from .rules import Connectivity
from .sales import Sale, refund_ticket_codes
from .ticketcodes import UnsupportedPattern

log = logging.getLogger("tilld.till")

RECENT_SALES = 64
# A drawer kick in flight when the till stops gets this long to reach the printer.
BACKGROUND_STOP_S = 0.3


class Settlement:
    def __init__(
        self,
        settings: Callable[[], Settings],
        journal: Journal,
        events: EventBus,
        catalog: Catalog,
        connectivity: Callable[[], Connectivity],
        outbox: Outbox,
        printing: Printing,
        registering: Registering,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.events = events
        self.catalog = catalog
        self.connectivity = connectivity
        self.outbox = outbox
        self.printing = printing
        # A receipt prints once its control code is journaled (tilld/registering.py).
        self.registering = registering
        registering.on_registered = self._print_registered
        self.open: dict[str, Sale] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # only ever for open sales
        self.opened_at: dict[str, float] = {}  # sale_id -> time.monotonic() at sale.open
        self.recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.accepting_sales = True  # False once the till begins to stop

    async def restore(self) -> None:
        """The open sales that had taken payments when the till stopped."""
        for state in await self.journal.open_sales():
            sale = Sale.from_state(state)
            self.open[sale.sale_id] = sale
        # A declined or cancelled payment took no money: only paid (or still
        # pending) ones make a restored sale something to finish or give back.
        taken = sum(
            any(p.status in ("paid", "pending") for p in sale.payments)
            for sale in self.open.values()
        )
        if taken:
            log.warning(
                "restored %d open sale(s); %d had taken payments (finish or void them)",
                len(self.open),
                taken,
            )
        elif self.open:
            log.info("restored %d open sale(s), none with money taken", len(self.open))

    async def stop(self) -> None:
        """Drawer kicks in flight get a moment to reach the printer."""
        background = set(self._tasks)
        if background:
            _, running = await asyncio.wait(background, timeout=BACKGROUND_STOP_S)
            for task in running:
                task.cancel()
            await asyncio.wait(background, timeout=BACKGROUND_STOP_S)

    # -- the open sales ---------------------------------------------------------

    def require_accepting(self) -> None:
        """Refuse what would start or add to a sale or a refund while none can be recorded."""
        if not self.accepting_sales:
            raise Refused(
                Reason.SHUTTING_DOWN,
                "The till is shutting down and takes no new sales; try again when it is back.",
            )
        if self.journal.integrity.state == "rolled-back":
            # The journal refuses the entry anyway; refusing here keeps a
            # cashier from ringing up a basket that can never be paid.
            raise Refused(Reason.JOURNAL_ROLLED_BACK, self.journal.integrity.message)
        # No money is taken for a receipt that cannot be issued (SKVFS 2014:10 4 kap. 1 §).
        self.registering.require_working()

    def open_sale_for(self, sale_id: str) -> Sale | None:
        return self.open.get(sale_id)

    def open_sales_with_pending_payments(self) -> list[Sale]:
        return [sale for sale in self.open.values() if sale.pending_payment is not None]

    def sale(self, sale_id: str) -> Sale:
        sale = self.open.get(sale_id)
        if sale is None:
            raise Refused(
                Reason.UNKNOWN_SALE,
                f"No open sale {sale_id!r}: it was completed, voided or never opened. "
                "Open a new sale with sale.open.",
                sale_id=sale_id,
            )
        return sale

    def sale_lock(self, sale_id: str) -> asyncio.Lock:
        """The lock that orders changes to one open sale; unknown-sale if it is not open.

        The sale is looked up first: a lock made for whatever id a caller sends
        would let a typo loop (or a script) grow the till's memory without limit.
        Whoever holds the lock still looks the sale up again: it may have been
        completed or voided while they waited."""
        self.sale(sale_id)
        return self._locks.setdefault(sale_id, asyncio.Lock())

    def close(self, sale: Sale, view: dict[str, Any]) -> None:
        self.open.pop(sale.sale_id, None)
        self._locks.pop(sale.sale_id, None)
        self.opened_at.pop(sale.sale_id, None)
        self.recent[sale.sale_id] = view
        while len(self.recent) > RECENT_SALES:
            self.recent.popitem(last=False)

    # -- settling ---------------------------------------------------------------

    async def settle(self, sale: Sale) -> dict[str, Any]:
        """Make the sale's payments durable: complete it if fully paid, else keep it open.

        The caller holds the sale's lock and has already added the payment.
        """
        if sale.due > 0 or sale.pending_payment is not None:
            await self.journal.save_open_sale(sale.sale_id, sale.state())
            return {"status": "accepted", "sale": sale.view()}
        entry = await self._complete(sale)
        view = view_of_entry(entry)
        self.close(sale, view)
        self.events.publish(
            "sale",
            event="completed",
            sale_id=sale.sale_id,
            receipt_no=entry.body["receipt_no"],
            total=sale.total,
            mode=entry.body["mode"],
        )
        self._after_receipt(entry)
        outcome = {"status": "completed", "receipt_no": entry.body["receipt_no"], "sale": view}
        control = await self.registering.issued(entry)
        if control is not None:
            outcome["control"] = control
        return outcome

    async def _complete(self, sale: Sale) -> Entry:
        tickets: list[TicketRecord] = []
        try:
            for line in sale.lines:
                if line.kind != "goods" and not sale.training:
                    codes = [self.catalog.make_ticket_code() for _ in range(line.quantity)]
                    line.ticket_codes = codes
                    tickets.extend(TicketRecord(c, line.plu, line.name) for c in line.ticket_codes)
        except UnsupportedPattern as exc:
            raise Refused(Reason.TICKET_PATTERN_UNSUPPORTED, str(exc)) from None
        entry = await self.journal.append(
            "sale",
            sale.completed_body(self.connectivity().mode.value),
            number="receipt_no",
            effects=(
                store_tickets(tickets),
                forget_open_sale(sale.sale_id),
                *self.registering.expect_code("sale"),
            ),
        )
        self.outbox.tickets_issued(len(tickets))
        return entry

    async def record_refund(self, body: dict[str, Any], *effects: SideEffect) -> Entry:
        """Journal a refund receipt (its tickets become refunded), print it, tell the UIs."""
        entry = await self.journal.append(
            "refund",
            body,
            number="receipt_no",
            effects=(
                set_ticket_state(refund_ticket_codes(body), "refunded"),
                *effects,
                *self.registering.expect_code("refund"),
            ),
        )
        if refund_ticket_codes(body):
            await self.outbox.tickets_refunded()
        self._after_receipt(entry)
        await self.registering.issued(entry)  # its code, if the unit answers in time
        self.events.publish(
            "sale",
            event="refunded",
            receipt_no=entry.body["receipt_no"],
            original_receipt_no=body["original_receipt_no"],
            total=body["total"],
            method=body["payments"][0]["method"],
        )
        return entry

    # -- the receipt's paper and the drawer ------------------------------------------

    def _after_receipt(self, entry: Entry) -> None:
        """Print the receipt and open the drawer for cash, without the sale waiting for either.

        With a control unit the receipt prints once its code is journaled
        (`_print_registered`); the drawer opens at once: the cash is taken."""
        if not self.printing.configured:
            return
        receipt_no = entry.body["receipt_no"]
        printer = self.settings().devices.printer
        if printer.auto_print and not self.registering.configured:
            self.printing.enqueue_receipt(receipt_no)
        cash = any(p["method"] == "cash" for p in entry.body["payments"])
        # A training sale takes no real money, so there is none to put in the drawer.
        training = bool(entry.body.get("training"))
        if cash and not training and printer.drawer_after_cash:
            reason = "cash-refund" if entry.type == "refund" else "cash-payment"
            self._background(self._kick_drawer(reason, receipt_no))

    def _print_registered(self, receipt_no: int) -> None:
        if self.printing.configured and self.settings().devices.printer.auto_print:
            self.printing.enqueue_receipt(receipt_no)

    async def _kick_drawer(self, reason: str, receipt_no: int) -> None:
        try:
            await self.printing.open_drawer(reason, receipt_no)
        except Refused as exc:
            log.warning("drawer not opened for receipt %d: %s", receipt_no, exc.message)
            self.events.publish(
                "device",
                device="printer",
                event="drawer-failed",
                receipt_no=receipt_no,
                message=exc.message,
            )

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def view_of_entry(entry: Entry) -> dict[str, Any]:
    """A completed or voided sale as sale.get shows it, read back from its journal entry."""
    body = entry.body
    state = {"sale": "completed", "void": "voided"}[entry.type]
    view: dict[str, Any] = {
        "sale_id": body["sale_id"],
        "state": state,
        "opened_at": body["opened_at"],
        "lines": body["lines"],
        "total": body["total"],
        "seq": entry.seq,
        "created_at": entry.created_at,
        "mode": body["mode"],
    }
    if entry.type == "sale":
        view.update(
            receipt_no=body["receipt_no"],
            payments=body["payments"],
            paid=body["total"],
            due=0,
            vat=body["vat"],
        )
    else:
        view.update(reason=body["reason"], payments_returned=body["payments_returned"])
    return view
