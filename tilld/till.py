"""The Till: the facade the API's operation table calls, composing the till's use cases.

Each use case is its own module with narrow ports, wired by the composition
root (tilld/app.py): selling (tilld/selling.py), refunds (tilld/refunds.py),
ticket scans (tilld/ticket_scans.py), catalog loading
(tilld/catalog_loading.py), reports and exports (tilld/reporting.py), card
payments (tilld/cardpay/) and Swish (tilld/swish.py), all settling through
tilld/settlement.py, which owns the open sales. This class decides nothing of
its own beyond what spans them: the status, the mode change, sync on demand.
Adapters translate its results; they never decide anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from . import __version__
from .backend import BackendClient
from .cardpay import CardPayments
from .catalog import Catalog
from .catalog_loading import CatalogLoader
from .config import Settings
from .connectivity import ConnectivityMonitor
from .devices import Devices
from .errors import Reason, Refused
from .events import EventBus
from .jobs import Jobs
from .journal import Journal
from .outbox import Outbox
from .payment_policy import PaymentPolicy
from .printing import Printing
from .refunds import Refunds
from .reporting import Reports
from .rules import PAYMENT_METHODS, Connectivity
from .sales import BasketLine, Tender
from .selling import Selling
from .settlement import Settlement
from .sync import SyncEngine
from .ticket_scans import TicketScans

# status()'s keys from summary() that come before its payment methods, in order.
SUMMARY_BEFORE_METHODS = (
    "mode",
    "mode_since",
    "last_error",
    "probing",
    "server",
    "internet",
    "pending",
    "oldest_pending_since",
)

# The composition root's configuration reload (SIGHUP shares it).
Reload = Callable[[str], Awaitable[dict[str, Any]]]


class DemoControls(Protocol):
    """The demo's server, internet and device switches (tilld/demo); absent on a real till."""

    async def set(self, target: str, state: str) -> dict[str, Any]: ...


class Till:
    def __init__(
        self,
        settings: Callable[[], Settings],
        *,
        journal: Journal,
        events: EventBus,
        backend: BackendClient,
        monitor: ConnectivityMonitor,
        catalog: Catalog,
        outbox: Outbox,
        catalog_loader: CatalogLoader,
        settlement: Settlement,
        policy: PaymentPolicy,
        selling: Selling,
        refunds: Refunds,
        scans: TicketScans,
        reports: Reports,
        sync: SyncEngine,
        card: CardPayments,
        devices: Devices,
        printing: Printing,
        reload: Reload | None,
        demo: DemoControls | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.events = events
        self.backend = backend
        self.monitor = monitor
        self.catalog = catalog
        self.outbox = outbox
        self.catalog_loader = catalog_loader
        self.settlement = settlement
        self.policy = policy
        self.selling = selling
        self.refunds = refunds
        self.scans = scans
        self.reports = reports
        self.sync = sync
        self.card = card
        self.devices = devices
        self.printing = printing
        self._reload = reload
        self.demo = demo  # only under `tilld demo`
        self.jobs = Jobs(events)  # operations started without waiting (docs/api.md)

    # -- start-up and stop ------------------------------------------------------

    async def start(self) -> None:
        """Load the catalog, restore the open sales, count what is pending; start sweeping."""
        await self.catalog_loader.start()
        await self.settlement.restore()
        await self.outbox.load()
        self.selling.start()

    async def stop(self) -> None:
        """Stop sweeping; drawer kicks in flight get a moment to reach the printer."""
        await self.selling.stop()
        await self.settlement.stop()

    async def reconfigure(self, settings: Settings) -> None:
        """A reloaded configuration (already the running one): the catalog file is read again."""
        await self.catalog_loader.reconfigure(settings)

    @property
    def accepting_sales(self) -> bool:
        return self.settlement.accepting_sales

    @accepting_sales.setter
    def accepting_sales(self, accepting: bool) -> None:
        self.settlement.accepting_sales = accepting

    @property
    def connectivity(self) -> Connectivity:
        return self.monitor.state

    # -- what spans the use cases -------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """What sales, scans and sync change: connectivity, what is pending, the
        offline card budget, sync's last word. Part of status(), and all that the
        D-Bus properties read after every burst of events: status() also decides
        every payment method, 76 of its 85 us on an idle till."""
        conn = self.connectivity
        described = self.monitor.describe()
        return {
            "mode": conn.mode.value,
            "mode_since": described["since"],
            "last_error": described["last_error"],
            "probing": described["probing"],
            "server": conn.server,
            "internet": conn.internet,
            "pending": self.outbox.snapshot(),
            "oldest_pending_since": self.outbox.oldest_since,
            "offline_card": self.card.offline_budget(),
            "sync": self.sync_status(),
        }

    def status(self) -> dict[str, Any]:
        summary = self.summary()
        return {
            "till_id": self.settings().till.id,
            **{key: summary[key] for key in SUMMARY_BEFORE_METHODS},
            "payment_methods": {
                m: self.policy.payment_decision(m).as_dict() for m in PAYMENT_METHODS
            },
            "offline_card": summary["offline_card"],
            "devices": self.devices.status(),
            "control_unit": self.settlement.registering.status(),
            "catalog": {
                "version": self.catalog.version,
                "articles": self.catalog.info.articles,
                "source": self.catalog.info.source,
                **self.catalog.refusal_status(),
            },
            "open_sales": len(self.settlement.open),
            "journal": {
                "last_seq": self.journal.head_seq,
                "integrity": self.journal.integrity.as_dict(),
            },
            "sync": summary["sync"],
            "version": __version__,
        }

    def mode_changed(self, connectivity: Connectivity) -> None:
        """The connectivity monitor's report: tell the UIs, wake sync, flush the terminal."""
        described = self.monitor.describe()
        self.events.publish(
            "mode",
            event="changed",
            mode=connectivity.mode.value,
            server=connectivity.server,
            internet=connectivity.internet,
            since=described["since"],
            last_error=described["last_error"],
        )
        if connectivity.server:
            self.sync.kick()
        if connectivity.internet:
            self.card.internet_back()

    def sync_status(self) -> dict[str, Any]:
        return {
            "configured": self.backend.configured,
            "unsent": self.sync.unsent,
            "last_error": self.sync.last_error,
            "last_success": self.sync.last_success,
        }

    async def sync_now(self, wait: bool, timeout: float) -> dict[str, Any]:
        if not self.backend.configured:
            raise Refused(
                Reason.NO_BACKEND,
                "No back-end is configured (backend.url), so there is nothing to sync to.",
            )
        self.sync.kick()
        if not self.connectivity.server:
            self.monitor.probe_now()  # it may be back: ask now, not after the backoff
        drained = await self.sync.wait_drained(timeout) if wait else False
        result: dict[str, Any] = {
            "drained": drained if wait else None,
            "pending": self.outbox.snapshot(),
            **self.sync_status(),
        }
        if wait and not drained:
            conn = self.connectivity
            errors = self.monitor.describe()["last_error"] or {}
            result["why"] = (
                f"the back-end is unreachable ({errors.get('server') or 'no answer'})"
                if not conn.server
                else self.sync.last_error or f"still sending after {timeout:g} s"
            )
        return result

    def terminal_flush(self) -> dict[str, Any]:
        """Send the card payments the terminal stored offline now, if it can."""
        stored = self.card.offline_stored
        why = None
        if "terminal" not in self.devices.status():
            why = "no card terminal is configured ([devices.terminal] kind)"
        elif stored == 0:
            why = "the terminal holds no card payments stored offline"
        elif not self.connectivity.internet:
            why = "the internet is down; the terminal sends them by itself when it is back"
        if why is None:
            self.card.internet_back()
        return {"started": why is None, "offline_stored": stored, "why": why}

    async def acknowledge_rollback(self, technician: str) -> dict[str, Any]:
        """A technician accepts the loss of a rolled-back journal's last entries (journaled)."""
        anchor = self.sync.anchor
        # Continue the chain where the back-end has it, when it was asked: past
        # the entries it holds, or right after this journal's head when it
        # never saw the lost ones. Without it, after the lost head itself.
        continue_from = None
        if anchor is not None:
            continue_from = anchor if anchor.seq > self.journal.head_seq else self.journal.head
        entry = await self.journal.acknowledge_rollback(continue_from, technician)
        self.sync.journal_acknowledged()
        return {
            "seq": entry.seq,
            "lost_head": entry.body["lost_head"],
            "continues_from": entry.body["continues_from"],
            "next_receipt_no": self.journal.numbers["receipt_no"] + 1,
        }

    async def settle_control_unit(
        self,
        receipt_no: int,
        technician: str,
        action: str,
        control_code: str | None,
        unit_id: str | None,
    ) -> dict[str, Any]:
        """A technician settles a registration in doubt (docs/fiscal.md)."""
        return await self.settlement.registering.settle(
            receipt_no, technician, action, control_code, unit_id
        )

    async def reload_config(self) -> dict[str, Any]:
        if self._reload is None:
            raise Refused(Reason.RELOAD_UNAVAILABLE, "This till cannot reload its configuration.")
        return await self._reload("admin.reload")

    async def demo_set(self, target: str, state: str) -> dict[str, Any]:
        if self.demo is None:
            raise Refused(
                Reason.NOT_A_DEMO,
                "Only the demo till (tilld demo) has server and internet switches.",
            )
        return await self.demo.set(target, state)

    # -- the operation table's calls, each answered by its use case -------------------

    async def search(self, query: str, limit: int) -> dict[str, Any]:
        return await self.catalog_loader.search(query, limit)

    def open_sale(self, training: bool = False) -> dict[str, Any]:
        return self.selling.open_sale(training)

    def list_sales(self) -> dict[str, Any]:
        return self.selling.list_sales()

    async def add(
        self, sale_id: str, *, plu: str | None, barcode: str | None, quantity: int
    ) -> dict[str, Any]:
        return await self.selling.add(sale_id, plu=plu, barcode=barcode, quantity=quantity)

    async def remove(self, sale_id: str, line_id: int) -> dict[str, Any]:
        return await self.selling.remove(sale_id, line_id)

    async def get(self, sale_id: str) -> dict[str, Any]:
        return await self.selling.get(sale_id)

    async def void(self, sale_id: str, reason: str) -> dict[str, Any]:
        return await self.selling.void(sale_id, reason)

    async def pay(
        self, sale_id: str, method: str, amount: int, reference: str | None
    ) -> dict[str, Any]:
        return await self.selling.pay(sale_id, method, amount, reference)

    async def checkout(
        self,
        lines: Sequence[BasketLine],
        payments: Sequence[Tender],
        training: bool = False,
        checkout_id: str | None = None,
    ) -> dict[str, Any]:
        return await self.selling.checkout(lines, payments, training, checkout_id)

    async def cancel_payment(self, sale_id: str, payment_id: str) -> dict[str, Any]:
        return await self.selling.cancel_payment(sale_id, payment_id)

    async def refund(
        self, receipt_no: int, lines: dict[int, int | None] | None, method: str, reason: str
    ) -> dict[str, Any]:
        return await self.refunds.refund(receipt_no, lines, method, reason)

    async def scan(self, code: str, source: str) -> dict[str, Any]:
        return await self.scans.scan(code, source)

    async def scans_list(self, state: str | None, limit: int) -> dict[str, Any]:
        return await self.scans.scans_list(state, limit)

    async def pending(self, limit: int) -> dict[str, Any]:
        return await self.reports.pending(limit)

    async def journal_verify(self) -> dict[str, Any]:
        return await self.reports.journal_verify()

    async def journal_export(self, since_seq: int, fmt: str, limit: int) -> dict[str, Any]:
        return await self.reports.journal_export(since_seq, fmt, limit)

    async def report(self, kind: str) -> dict[str, Any]:
        return await self.reports.report(kind)

    async def register_float(self, amount: int, note: str) -> dict[str, Any]:
        return await self.reports.register_float(amount, note)

    async def print_receipt(
        self, sale_id: str | None, receipt_no: int | None, copy: bool
    ) -> dict[str, Any]:
        if receipt_no is None:
            assert sale_id is not None  # the operation's model asks for one of the two
            view = await self.selling.get(sale_id)
            receipt_no = view.get("receipt_no")
            if receipt_no is None:
                raise Refused(
                    Reason.SALE_NOT_COMPLETED,
                    f"Sale {sale_id} has no receipt yet: it is still open or was voided.",
                )
        return await self.printing.print_receipt(receipt_no, copy)

    async def receipt_text(self, receipt_no: int) -> dict[str, Any]:
        return await self.printing.receipt_text(receipt_no)

    async def open_drawer(self) -> dict[str, Any]:
        return await self.printing.open_drawer("manual")

    async def printer_test(self) -> dict[str, Any]:
        return await self.printing.print_test_page()
