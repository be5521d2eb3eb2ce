"""The Till: the use cases of a till and the single owner of its state.

Adapters (the socket API, later D-Bus) call these methods and translate the
results; they never decide anything. Every rule comes from rules.py, every
durable fact goes through the journal before a caller hears about it.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import sqlite3
import time
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import __version__
from .backend import BackendClient, BackendError
from .catalog import Article, Catalog, CatalogDocument, parse_catalog
from .config import Settings
from .connectivity import ConnectivityMonitor
from .errors import ConfigError, Refused
from .events import EventBus
from .journal import (
    Entry,
    Journal,
    SideEffect,
    TicketRecord,
    forget_open_sale,
    local_ticket_check,
    now_with_offset,
    set_ticket_state,
    since_last,
    store_tickets,
)
from .reports import period_totals
from .rules import (
    PAYMENT_METHODS,
    CardFacts,
    CardPolicy,
    Connectivity,
    Decision,
    check_article,
    check_payment,
    check_refund,
    check_ticket_refund,
)
from .sales import Sale, card_refundable, plan_refund, refund_body, refund_ticket_codes
from .ticketcodes import UnsupportedPattern

if TYPE_CHECKING:
    from .cardpay import CardPayments
    from .demo import DemoSwitches
    from .devices import Devices
    from .printing import Printing
    from .swish import SwishPayments
    from .sync import SyncEngine

log = logging.getLogger("tilld.till")

# What a captured scan's local check tells the person at the entrance.
LOCAL_CHECK_WORDS = {
    "sold-here": "Sold at this till; will be registered when the server is back.",
    "not-known-locally": "Sold elsewhere; cannot be checked until the server is back.",
    "already-scanned": "ALREADY SCANNED at this till: check the guest's ticket.",
    "refunded": "REFUNDED at this till: this ticket is not valid.",
}
RECENT_SALES = 64
# Abandoned sales are looked for this often (at most; sooner when abandon_after_s is short).
SWEEP_INTERVAL_S = 60.0
# A drawer kick in flight when the till stops gets this long to reach the printer.
BACKGROUND_STOP_S = 0.3


class Till:
    def __init__(
        self,
        settings: Settings,
        journal: Journal,
        events: EventBus,
        backend: BackendClient,
        monitor: ConnectivityMonitor,
    ) -> None:
        self.settings = settings
        self.journal = journal
        journal.on_append = self._after_append
        self.events = events
        self.backend = backend
        self.monitor = monitor
        self.sync: SyncEngine | None = None  # wired by the composition root
        self.swish: SwishPayments | None = None
        self.demo: DemoSwitches | None = None  # only under `tilld demo`
        self.devices: Devices | None = None
        self.printing: Printing | None = None
        self.card: CardPayments | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # The composition root's configuration reload (SIGHUP shares it).
        self.reload: Callable[[str], Awaitable[dict[str, Any]]] | None = None
        self.catalog = Catalog(settings.catalog_path)
        self.card_policy = CardPolicy(
            offline_limit=settings.card.offline_limit,
            offline_brands=frozenset(settings.card.offline_brands),
        )
        self.accepting_sales = True
        self._open: dict[str, Sale] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # only ever for open sales
        self._opened: dict[str, float] = {}  # sale_id -> time.monotonic() at sale.open
        self._sweeper: asyncio.Task[None] | None = None
        self._refund_lock = asyncio.Lock()
        self._refunding: set[int] = set()  # receipts with a card refund at the terminal
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pending = {"entries": 0, "tickets": 0, "scans": 0}

    # -- start-up ------------------------------------------------------------

    @property
    def connectivity(self) -> Connectivity:
        return self.monitor.state

    async def start(self) -> None:
        self.catalog.open()
        await self._load_catalog()
        for state in await self.journal.open_sales():
            sale = Sale.from_state(state)
            self._open[sale.sale_id] = sale
        if self._open:
            log.warning("restored %d open sale(s) that had taken payments", len(self._open))
        self._pending = await self.journal.pending_counts(*await self.journal.sync_marks())
        self._sweeper = asyncio.create_task(self._sweep_abandoned(), name="abandoned sales")

    async def stop(self) -> None:
        """Stop sweeping; drawer kicks in flight get a moment to reach the printer."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        background = set(self._tasks)
        if background:
            _, running = await asyncio.wait(background, timeout=BACKGROUND_STOP_S)
            for task in running:
                task.cancel()
        tasks = {t for t in (self._sweeper, *background) if t is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=BACKGROUND_STOP_S)

    async def reconfigure(self, settings: Settings) -> None:
        """A reloaded configuration: card policy, payment switches, receipt header, catalog file."""
        self.settings = settings
        self.card_policy = CardPolicy(
            offline_limit=settings.card.offline_limit,
            offline_brands=frozenset(settings.card.offline_brands),
        )
        if settings.catalog.file:
            # Read again even if the name is unchanged: reloading after editing
            # the catalog file is how a technician updates prices offline.
            await self._load_catalog()

    async def reload_config(self) -> dict[str, Any]:
        if self.reload is None:
            raise Refused("reload-unavailable", "This till cannot reload its configuration.")
        return await self.reload("admin.reload")

    def open_sales_with_pending_payments(self) -> list[Sale]:
        return [sale for sale in self._open.values() if sale.pending_payment is not None]

    @property
    def catalog_etag(self) -> str | None:
        # A refused catalog is not fetched again until the back-end changes it.
        refusal = self.catalog.refusal
        if refusal is not None and refusal.source == "back-end" and refusal.etag:
            return refusal.etag
        return self.catalog.info.etag

    async def _load_catalog(self) -> None:
        info = self.catalog.info
        path = self.settings.catalog.file
        if path:
            known = info.digest if info.source == path else None
            try:
                # Read (and, if it changed, parse) off the loop, which may be
                # selling: a reload reads the file again.
                digest, document = await asyncio.to_thread(_read_catalog_file, path, known)
            except OSError as exc:
                log.error("catalog file %s is unusable (%s); using the cached catalog", path, exc)
            except ConfigError as exc:
                self.catalog.refuse(path, exc.problems)
                log.error(
                    "catalog file %s refused, still selling from catalog %s: %s",
                    path,
                    info.version,
                    exc,
                )
            else:
                if document is not None:
                    await self._store_catalog(document, source=path, etag=None, digest=digest)
                else:
                    self.catalog.usable_from(path)
                    log.info("catalog %s from %s: unchanged", info.version, path)
                return
        if info.source == "none":
            await self._adopt_journal_cache()
        if self.catalog.info.source == "none":
            log.warning("no catalog: configure catalog.file or a back-end; nothing can be sold")
        else:
            info = self.catalog.info
            log.info("catalog %s from %s: %d articles", info.version, info.source, info.articles)

    async def _adopt_journal_cache(self) -> None:
        """A till upgraded from a tilld that kept the catalog in the journal keeps selling.

        Adopted once, then dropped: a catalog.sqlite lost later must not bring
        back prices from before the upgrade."""
        cached = await self.journal.cached_catalog()
        if cached is None:
            return
        document_json, etag, source = cached
        try:
            document = await asyncio.to_thread(parse_catalog, document_json, "cached catalog")
        except ConfigError as exc:
            log.warning("the catalog cached in the journal is not used: %s", exc)
            return
        if await self._store_catalog(document, source=source, etag=etag, digest=None):
            await self.journal.forget_cached_catalog()

    async def use_fetched_catalog(self, raw: bytes, etag: str | None) -> None:
        """A catalog from the back-end: stored first, then used for selling."""
        try:
            document = await asyncio.to_thread(parse_catalog, raw, "back-end catalog")
        except ConfigError as exc:
            # The back-end's to fix, and asked again every sync.catalog_refresh_s:
            # a warning (once per catalog it serves), never a paused sync.
            seen = self.catalog.refusal
            again = seen is not None and seen.source == "back-end" and seen.etag == etag
            self.catalog.refuse("back-end", exc.problems, etag=etag)
            (log.info if again else log.warning)(
                "the back-end's catalog (ETag %s) refused, still selling from catalog %s: %s",
                etag,
                self.catalog.version,
                exc,
            )
            return
        await self._store_catalog(document, source="back-end", etag=etag, digest=None)

    async def _store_catalog(
        self, document: CatalogDocument, *, source: str, etag: str | None, digest: str | None
    ) -> bool:
        try:
            info = await asyncio.to_thread(
                self.catalog.replace, document, source=source, etag=etag, digest=digest
            )
        except sqlite3.Error as exc:
            log.error(
                "cannot store catalog %s from %s in %s (%s); still selling from %s. Free "
                "space in the state directory or check the disk",
                document.version,
                source,
                self.catalog.path,
                exc,
                self.catalog.version,
            )
            return False
        self.catalog.use(info)
        self.catalog.usable_from(source)
        log.info("catalog %s from %s: %d articles", info.version, source, info.articles)
        return True

    # -- state ----------------------------------------------------------------

    def _enabled_methods(self) -> dict[str, bool]:
        till_switch = set(self.settings.payments.enabled)
        return {
            m: m in till_switch and self.catalog.payment_methods.get(m, False)
            for m in PAYMENT_METHODS
        }

    @property
    def offline_card_stored(self) -> int:
        return self.card.offline_stored if self.card is not None else 0

    def _card_facts(self, brand: str | None = None) -> CardFacts:
        ready = self.card is not None and self.card.ready
        return CardFacts(offline_stored=self.offline_card_stored, brand=brand, terminal_ready=ready)

    def open_sale_for(self, sale_id: str) -> Sale | None:
        return self._open.get(sale_id)

    def payment_decision(self, method: str, *, training: bool = False) -> Decision:
        return check_payment(
            method,
            self.connectivity,
            enabled=self._enabled_methods(),
            card=self._card_facts(),
            policy=self.card_policy,
            training=training,
        )

    def refund_decision(
        self,
        method: str,
        *,
        training: bool = False,
        amount: int | None = None,
        card_left: int | None = None,
    ) -> Decision:
        return check_refund(
            method,
            self.connectivity,
            enabled=self._enabled_methods(),
            terminal_ready=self.card is not None and self.card.ready,
            training=training,
            amount=amount,
            card_left=card_left,
        )

    def status(self) -> dict[str, Any]:
        conn = self.connectivity
        described = self.monitor.describe()
        return {
            "till_id": self.settings.till.id,
            "mode": conn.mode.value,
            "mode_since": described["since"],
            "last_error": described["last_error"],
            "server": conn.server,
            "internet": conn.internet,
            "pending": dict(self._pending),
            "payment_methods": {m: self.payment_decision(m).as_dict() for m in PAYMENT_METHODS},
            "offline_card": {
                "stored": self.offline_card_stored,
                "limit": self.card_policy.offline_limit,
            },
            "devices": self.devices.status() if self.devices is not None else {},
            "catalog": {
                "version": self.catalog.version,
                "articles": self.catalog.info.articles,
                "source": self.catalog.info.source,
                **self.catalog.refusal_status(),
            },
            "open_sales": len(self._open),
            "journal": {
                "last_seq": self.journal.head_seq,
                "integrity": self.journal.integrity.as_dict(),
            },
            "sync": self.sync_status(),
            "version": __version__,
        }

    # -- catalog --------------------------------------------------------------

    async def search(self, query: str, limit: int) -> dict[str, Any]:
        # A name search reads every name of the catalog: not on the loop.
        found = await asyncio.to_thread(self.catalog.search, query, limit)
        return {"articles": [a.summary() for a in found], "catalog_version": self.catalog.version}

    # -- sales ----------------------------------------------------------------

    def _require_accepting(self) -> None:
        if not self.accepting_sales:
            raise Refused(
                "shutting-down",
                "The till is shutting down and takes no new sales; try again when it is back.",
            )
        if self.journal.integrity.state == "rolled-back":
            # The journal refuses the entry anyway; refusing here keeps a
            # cashier from ringing up a basket that can never be paid.
            raise Refused("journal-rolled-back", self.journal.integrity.message)

    def _sale(self, sale_id: str) -> Sale:
        sale = self._open.get(sale_id)
        if sale is None:
            raise Refused(
                "unknown-sale",
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
        self._sale(sale_id)
        return self._locks.setdefault(sale_id, asyncio.Lock())

    def _close(self, sale: Sale, view: dict[str, Any]) -> None:
        self._open.pop(sale.sale_id, None)
        self._locks.pop(sale.sale_id, None)
        self._opened.pop(sale.sale_id, None)
        self._recent[sale.sale_id] = view
        while len(self._recent) > RECENT_SALES:
            self._recent.popitem(last=False)

    def open_sale(self, training: bool = False) -> dict[str, Any]:
        self._require_accepting()
        self._require_room_for_a_sale()
        sale = Sale.new(now_with_offset(), training=training)
        self._open[sale.sale_id] = sale
        self._opened[sale.sale_id] = time.monotonic()
        return {"sale_id": sale.sale_id, "training": training}

    def _require_room_for_a_sale(self) -> None:
        limit = self.settings.sales.max_open
        if len(self._open) >= limit:
            raise Refused(
                "too-many-open-sales",
                f"{len(self._open)} sales are open on this till, as many as it keeps "
                f"([sales] max_open = {limit}). Complete or void the open sales (sale.list "
                "shows them; empty ones close by themselves after [sales] abandon_after_s), "
                "or raise [sales] max_open.",
                open_sales=len(self._open),
                max_open=limit,
            )

    async def _sweep_abandoned(self) -> None:
        while True:
            # Read each time: both keys reload live.
            interval = min(SWEEP_INTERVAL_S, max(0.1, self.settings.sales.abandon_after_s / 4))
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
        cutoff = time.monotonic() - self.settings.sales.abandon_after_s
        stale = [
            sale
            for sale_id, opened in list(self._opened.items())
            if opened <= cutoff and (sale := self._open.get(sale_id)) is not None and sale.empty
        ]
        closed = 0
        for sale in stale:
            if self._open.get(sale.sale_id) is not sale:
                continue  # completed or voided while an earlier one was journaled
            async with self.sale_lock(sale.sale_id):
                if self._open.get(sale.sale_id) is not sale or not sale.empty:
                    continue
                entry = await self.journal.append(
                    "void",
                    sale.void_body("abandoned", self.connectivity.mode.value),
                    effects=(forget_open_sale(sale.sale_id),),
                )
                self._close(sale, _view_of_entry(entry))
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

    def list_sales(self) -> dict[str, Any]:
        return {"sales": [sale.view() for sale in self._open.values()]}

    async def add(
        self, sale_id: str, *, plu: str | None, barcode: str | None, quantity: int
    ) -> dict[str, Any]:
        self._require_accepting()
        async with self.sale_lock(sale_id):
            sale = self._sale(sale_id)
            article = self.catalog.find(plu=plu, barcode=barcode)
            if article is None:
                what = f"PLU {plu}" if plu is not None else f"barcode {barcode}"
                raise Refused(
                    "unknown-article",
                    f"No article with {what} in catalog {self.catalog.version}. "
                    "Search the catalog by name with catalog.search.",
                )
            decision = check_article(
                article.kind,
                self.connectivity,
                name=article.name,
                fallback=self.catalog.fallback_for(article),
            )
            _raise_if_refused(decision)
            reservation = None
            if article.kind == "event-ticket":
                sale.require_unpaid()
                reservation = await self._reserve(article, quantity)
            line = sale.add(article, quantity)
            if reservation is not None:
                line.reservation_ids.append(reservation)
            return {"line_id": line.line_id, "sale": sale.view()}

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
                    Connectivity(server=False, internet=self.connectivity.internet),
                    name=article.name,
                    fallback=self.catalog.fallback_for(article),
                )
                _raise_if_refused(offline)
            raise Refused(
                "reservation-failed",
                f"The ticket server would not reserve seats for '{article.name}': "
                f"{exc.message}. Try again or ask a technician.",
            ) from None
        if reply is None:
            raise Refused(
                "sold-out",
                f"'{article.name}' is sold out (asked for {quantity}).",
                event_id=article.event_id,
            )
        return str(reply["reservation_id"])

    async def remove(self, sale_id: str, line_id: int) -> dict[str, Any]:
        async with self.sale_lock(sale_id):
            sale = self._sale(sale_id)
            sale.remove(line_id)
            return {"sale": sale.view()}

    async def get(self, sale_id: str) -> dict[str, Any]:
        if sale_id in self._open:
            return self._open[sale_id].view()
        if sale_id in self._recent:
            return self._recent[sale_id]
        entry = await self.journal.find_sale(sale_id)
        if entry is None:
            self._sale(sale_id)  # raises unknown-sale
        return _view_of_entry(entry)

    async def void(self, sale_id: str, reason: str) -> dict[str, Any]:
        async with self.sale_lock(sale_id):
            sale = self._sale(sale_id)
            sale.require_no_pending_payment()
            if self.card is not None and self.card.in_doubt_for(sale_id):
                raise Refused(
                    "card-payment-in-doubt",
                    "A card payment for this sale may have been charged; tilld is asking the "
                    "terminal. Void the sale once it has answered.",
                )
            entry = await self.journal.append(
                "void",
                sale.void_body(reason, self.connectivity.mode.value),
                effects=(forget_open_sale(sale.sale_id),),
            )
            view = _view_of_entry(entry)
            self._close(sale, view)
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
        self._require_accepting()
        async with self.sale_lock(sale_id):
            sale = self._sale(sale_id)
            _raise_if_refused(self.payment_decision(method, training=sale.training))
            if method == "swish" and self.swish is not None:
                return await self.swish.start(sale, amount)
            if method == "card" and self.card is not None:
                return await self.card.pay(sale, amount)
            if method not in ("cash", "swish-manual"):
                raise Refused(
                    "method-not-supported",
                    f"This till has no {method} payment flow; take cash or manual Swish.",
                )
            payment = sale.tender(method, amount, reference)
            sale.payments.append(payment)
            try:
                outcome = await self.settle(sale)
            except BaseException:
                sale.payments.remove(payment)
                raise
        return {"payment_id": payment.payment_id, "change": payment.change, **outcome}

    async def settle(self, sale: Sale) -> dict[str, Any]:
        """Make the sale's payments durable: complete it if fully paid, else keep it open.

        The caller holds the sale's lock and has already added the payment.
        """
        if sale.due > 0 or sale.pending_payment is not None:
            await self.journal.save_open_sale(sale.sale_id, sale.state())
            return {"status": "accepted", "sale": sale.view()}
        entry = await self._complete(sale)
        view = _view_of_entry(entry)
        self._close(sale, view)
        self.events.publish(
            "sale",
            event="completed",
            sale_id=sale.sale_id,
            receipt_no=entry.body["receipt_no"],
            total=sale.total,
            mode=entry.body["mode"],
        )
        self._after_receipt(entry)
        return {"status": "completed", "receipt_no": entry.body["receipt_no"], "sale": view}

    def _after_receipt(self, entry: Entry) -> None:
        """Print the receipt and open the drawer for cash, without the sale waiting for either."""
        if self.printing is None or not self.printing.configured:
            return
        receipt_no = entry.body["receipt_no"]
        if self.settings.devices.printer.auto_print:
            self.printing.enqueue_receipt(receipt_no)
        cash = any(p["method"] == "cash" for p in entry.body["payments"])
        # A training sale takes no real money, so there is none to put in the drawer.
        training = bool(entry.body.get("training"))
        if cash and not training and self.settings.devices.printer.drawer_after_cash:
            reason = "cash-refund" if entry.type == "refund" else "cash-payment"
            self._background(self._kick_drawer(reason, receipt_no))

    async def _kick_drawer(self, reason: str, receipt_no: int) -> None:
        assert self.printing is not None
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

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- printer and drawer -----------------------------------------------------

    def _require_printing(self) -> Printing:
        if self.printing is None:
            raise Refused(
                "printer-not-configured",
                "This till has no receipt printer configured ([devices.printer] kind).",
            )
        return self.printing

    async def print_receipt(
        self, sale_id: str | None, receipt_no: int | None, copy: bool
    ) -> dict[str, Any]:
        printing = self._require_printing()
        if receipt_no is None:
            assert sale_id is not None
            view = await self.get(sale_id)
            receipt_no = view.get("receipt_no")
            if receipt_no is None:
                raise Refused(
                    "sale-not-completed",
                    f"Sale {sale_id} has no receipt yet: it is still open or was voided.",
                )
        return await printing.print_receipt(receipt_no, copy)

    async def open_drawer(self) -> dict[str, Any]:
        return await self._require_printing().open_drawer("manual")

    async def printer_test(self) -> dict[str, Any]:
        return await self._require_printing().print_test_page()

    async def cancel_payment(self, sale_id: str, payment_id: str) -> dict[str, Any]:
        if self.card is not None:
            # A card payment holds the sale's lock while it waits at the
            # terminal, so it is cancelled without taking the lock.
            cancelled = await self.card.cancel(sale_id, payment_id)
            if cancelled is not None:
                return cancelled
        async with self.sale_lock(sale_id):
            sale = self._sale(sale_id)
            pending = sale.pending_payment
            if pending is None or pending.payment_id != payment_id or self.swish is None:
                raise Refused(
                    "unknown-payment",
                    f"Sale {sale_id} has no payment {payment_id} waiting for the customer.",
                )
        return await self.swish.cancel(sale, pending)

    async def _complete(self, sale: Sale) -> Entry:
        tickets: list[TicketRecord] = []
        try:
            for line in sale.lines:
                if line.kind != "goods" and not sale.training:
                    codes = [self.catalog.make_ticket_code() for _ in range(line.quantity)]
                    line.ticket_codes = codes
                    tickets.extend(TicketRecord(c, line.plu, line.name) for c in line.ticket_codes)
        except UnsupportedPattern as exc:
            raise Refused("ticket-pattern-unsupported", str(exc)) from None
        entry = await self.journal.append(
            "sale",
            sale.completed_body(self.connectivity.mode.value),
            number="receipt_no",
            effects=(store_tickets(tickets), forget_open_sale(sale.sale_id)),
        )
        self._pending["tickets"] += len(tickets)
        return entry

    async def refund(
        self, receipt_no: int, lines: dict[int, int | None] | None, method: str, reason: str
    ) -> dict[str, Any]:
        self._require_accepting()
        _raise_if_refused(self.refund_decision(method))
        original = await self.journal.find_receipt(receipt_no)
        if original is None or original.type != "sale":
            raise Refused(
                "unknown-receipt",
                f"There is no sale with receipt number {receipt_no} in this till's journal.",
                receipt_no=receipt_no,
            )
        # Refunds are rare: one at a time keeps two of the same receipt from
        # both passing the "what is left" check. A card refund leaves the lock
        # once its receipt is marked as refunding, so a customer at the
        # terminal does not hold up refunds of other receipts.
        async with self._refund_lock:
            self._refuse_if_refunding(receipt_no)
            earlier = [e.body for e in await self.journal.refunds_of(receipt_no)]
            plan = plan_refund(original.body, earlier, lines)
            body = refund_body(original.body, plan, method, self.connectivity.mode.value, reason)
            used = await self.journal.scanned_codes(refund_ticket_codes(body))
            _raise_if_refused(
                check_ticket_refund(used, allow_used=self.settings.refunds.allow_used_tickets)
            )
            _raise_if_refused(
                self.refund_decision(
                    method,
                    training=bool(original.body.get("training")),
                    amount=body["total"],
                    card_left=card_refundable(original.body, earlier),
                )
            )
            if method != "card":
                entry = await self.record_refund(body)
                return {
                    "receipt_no": entry.body["receipt_no"],
                    "seq": entry.seq,
                    "refund": entry.body,
                }
            self._refunding.add(receipt_no)
        assert self.card is not None
        cards = [p["card"]["masked_pan"] for p in original.body["payments"] if p.get("card")]
        try:
            entry = await self.card.refund(body, cards)
        finally:
            self._refunding.discard(receipt_no)
        return {"receipt_no": entry.body["receipt_no"], "seq": entry.seq, "refund": entry.body}

    def _refuse_if_refunding(self, receipt_no: int) -> None:
        if receipt_no in self._refunding:
            raise Refused(
                "refund-in-progress",
                f"A card refund of receipt {receipt_no} is at the terminal now; wait for it, "
                "then refund what is left.",
                receipt_no=receipt_no,
            )
        if self.card is not None and self.card.refund_in_doubt_for(receipt_no):
            raise Refused(
                "card-payment-in-doubt",
                f"A card refund of receipt {receipt_no} is still in doubt; tilld asks the "
                "terminal by itself. Refund the rest once it is settled.",
                receipt_no=receipt_no,
            )

    async def record_refund(self, body: dict[str, Any], *effects: SideEffect) -> Entry:
        """Journal a refund receipt (its tickets become refunded), print it, tell the UIs."""
        entry = await self.journal.append(
            "refund",
            body,
            number="receipt_no",
            effects=(set_ticket_state(refund_ticket_codes(body), "refunded"), *effects),
        )
        if refund_ticket_codes(body):
            # A refunded ticket is no longer pending, synced or not.
            self._pending["tickets"] = await self.journal.pending_ticket_count()
            self._publish_sync()
        self._after_receipt(entry)
        self.events.publish(
            "sale",
            event="refunded",
            receipt_no=entry.body["receipt_no"],
            original_receipt_no=body["original_receipt_no"],
            total=body["total"],
            method=body["payments"][0]["method"],
        )
        return entry

    def _after_append(self, entry: Entry) -> None:
        self._pending["entries"] += 1
        if entry.type == "scan":
            self._pending["scans"] += 1
        # The one place a local append changes the pending counts; sync publishes
        # the other direction. So a UI's offline badge (D-Bus PendingEntries) follows
        # events instead of polling status.get.
        self._publish_sync()
        if self.sync is not None:
            self.sync.kick()

    # -- connectivity and sync callbacks -------------------------------------

    def mode_changed(self, connectivity: Connectivity) -> None:
        described = self.monitor.describe()
        self.events.publish(
            "mode",
            mode=connectivity.mode.value,
            server=connectivity.server,
            internet=connectivity.internet,
            since=described["since"],
            last_error=described["last_error"],
        )
        if connectivity.server and self.sync is not None:
            self.sync.kick()
        if connectivity.internet and self.card is not None:
            self.card.internet_back()

    @property
    def pending_scans(self) -> int:
        return self._pending["scans"]

    def sync_status(self) -> dict[str, Any]:
        if self.sync is None:
            return {"configured": False}
        return {
            "configured": self.backend.configured,
            "unsent": self.sync.unsent,
            "last_error": self.sync.last_error,
            "last_success": self.sync.last_success,
        }

    def entries_synced(self, done: int, tickets_valid: int) -> None:
        self._pending["entries"] -= done
        self._pending["tickets"] -= tickets_valid
        self._publish_sync()

    def scans_registered(self, scans: list[Entry], results: list[dict[str, Any]]) -> None:
        self._pending["scans"] -= len(scans)
        for entry, result in zip(scans, results, strict=True):
            self.events.publish(
                "scan",
                event="registered",
                scan_id=entry.uuid,
                code=entry.body["code"],
                scanned_at=entry.body["scanned_at"],
                status=result["status"],
                detail=result.get("detail"),
            )
        self._publish_sync()

    def sync_progress(self, error: str | None) -> None:
        self._publish_sync(error=error)

    def _publish_sync(self, error: str | None = None) -> None:
        self.events.publish(
            "sync",
            pending=dict(self._pending),
            unsent=self.sync.unsent if self.sync is not None else self._pending["entries"],
            error=error,
        )

    async def sync_now(self, wait: bool, timeout: float) -> dict[str, Any]:
        if self.sync is None or not self.backend.configured:
            raise Refused(
                "no-backend",
                "No back-end is configured (backend.url), so there is nothing to sync to.",
            )
        self.sync.kick()
        drained = await self.sync.wait_drained(timeout) if wait else False
        result: dict[str, Any] = {
            "drained": drained if wait else None,
            "pending": dict(self._pending),
            **self.sync_status(),
        }
        if wait and not drained:
            conn = self.connectivity
            result["why"] = (
                f"the back-end is unreachable ({self.monitor.describe()['last_error']})"
                if not conn.server
                else self.sync.last_error or f"still sending after {timeout:g} s"
            )
        return result

    async def demo_set(self, target: str, state: str) -> dict[str, Any]:
        if self.demo is None:
            raise Refused(
                "not-a-demo", "Only the demo till (tilld demo) has server and internet switches."
            )
        return await self.demo.set(target, state)

    # -- scans ------------------------------------------------------------

    async def scan(self, code: str, source: str) -> dict[str, Any]:
        """Route a scanned code: an article barcode, a ticket to register, or unknown."""
        code = code.strip()
        article = self.catalog.find(barcode=code)
        if article is not None:
            result: dict[str, Any] = {"code": code, "kind": "article", "article": article.summary()}
        elif self.catalog.is_ticket_code(code):
            result = await self._ticket_scan(code, source)
        else:
            result = {
                "code": code,
                "kind": "unknown",
                "message": "Neither an article barcode nor a ticket code of this venue.",
            }
        self.events.publish("scan", event="scanned", source=source, **result)
        return result

    async def _ticket_scan(self, code: str, source: str) -> dict[str, Any]:
        # One trip to the writer: the local check is read in the transaction
        # that journals the scan, so two scans of one code cannot both pass.
        entry = await self.journal.append(
            "scan",
            {
                "code": code,
                "scanned_at": now_with_offset(),
                "source": source,
                "mode": self.connectivity.mode.value,
            },
            fill=local_ticket_check(code),
        )
        local_check = entry.body["local_check"]
        result: dict[str, Any] = {
            "code": code,
            "kind": "ticket",
            "scan_id": entry.uuid,
            "scanned_at": entry.body["scanned_at"],
            "local_check": local_check,
        }
        registered = None
        if self.sync is not None:
            try:
                registered = await self.sync.register_now(entry)
            except BackendError as exc:
                log.info("live scan kept for later: %s", exc.message)
        if registered is not None:
            result.update(status=registered["status"], detail=registered.get("detail"))
        else:
            result.update(status="captured", detail=LOCAL_CHECK_WORDS[local_check])
        return result

    async def scans_list(self, state: str | None, limit: int) -> dict[str, Any]:
        return {"scans": await self.journal.scans(state, limit), "pending": self.pending_scans}

    # -- journal, reports, sync status ---------------------------------------

    async def pending(self, limit: int) -> dict[str, Any]:
        listed = await self.journal.pending(limit)
        return {"counts": dict(self._pending), **listed}

    async def acknowledge_rollback(self, technician: str) -> dict[str, Any]:
        """A technician accepts the loss of a rolled-back journal's last entries (journaled)."""
        anchor = self.sync.anchor if self.sync is not None else None
        # Continue the chain where the back-end has it, when it was asked: past
        # the entries it holds, or right after this journal's head when it
        # never saw the lost ones. Without it, after the lost head itself.
        continue_from = None
        if anchor is not None:
            continue_from = anchor if anchor.seq > self.journal.head_seq else self.journal.head
        entry = await self.journal.acknowledge_rollback(continue_from, technician)
        if self.sync is not None:
            self.sync.journal_acknowledged()
        return {
            "seq": entry.seq,
            "lost_head": entry.body["lost_head"],
            "continues_from": entry.body["continues_from"],
            "next_receipt_no": self.journal.numbers["receipt_no"] + 1,
        }

    async def journal_verify(self) -> dict[str, Any]:
        return await self.journal.verify()

    async def journal_export(self, since_seq: int, fmt: str, limit: int) -> dict[str, Any]:
        entries = await self.journal.page(since_seq, limit)
        render: Callable[[list[Entry], bool], str] = _as_jsonl if fmt == "jsonl" else _as_csv
        next_seq = entries[-1].seq if len(entries) == limit else None
        return {
            "format": fmt,
            "count": len(entries),
            "content": render(entries, since_seq == 0),
            "next_since_seq": next_seq,
        }

    async def report(self, kind: str) -> dict[str, Any]:
        header = {
            "kind": kind,
            "till_id": self.settings.till.id,
            "seller": self.settings.till.seller_name,
            "org_number": self.settings.till.org_number,
            "printed_at": now_with_offset(),
        }
        totals = since_last("z-report", period_totals)
        if kind == "x":
            return {**header, **await self.journal.read_fill(totals)}
        # A Z's totals are read in the transaction that appends it (see since_last).
        entry = await self.journal.append("z-report", header, number="z_no", fill=totals)
        return {**entry.body, "seq": entry.seq}


def _read_catalog_file(path: str, known_digest: str | None) -> tuple[str, CatalogDocument | None]:
    """The file's digest, and its parsed catalog unless the digest is the one stored."""
    with open(path, "rb") as handle:
        raw = handle.read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest == known_digest:
        return digest, None
    return digest, parse_catalog(raw, path)


def _raise_if_refused(decision: Decision) -> None:
    if not decision.allowed:
        raise Refused(decision.reason or "refused", decision.message or "", **decision.details)


def _view_of_entry(entry: Entry) -> dict[str, Any]:
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


EXPORT_FIELDS = ("seq", "uuid", "type", "created_at", "prev_hash", "hash", "body")


def _as_jsonl(entries: list[Entry], _first_page: bool) -> str:
    return "".join(
        json.dumps(e.as_dict(), ensure_ascii=False, separators=(",", ":")) + "\n" for e in entries
    )


def _as_csv(entries: list[Entry], first_page: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if first_page:
        writer.writerow(EXPORT_FIELDS)
    for e in entries:
        body = json.dumps(e.body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        writer.writerow((e.seq, e.uuid, e.type, e.created_at, e.prev_hash, e.hash, body))
    return out.getvalue()
