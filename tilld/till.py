"""The Till: the use cases of a till and the single owner of its state.

Adapters (the socket API, later D-Bus) call these methods and translate the
results; they never decide anything. Every rule comes from rules.py, every
durable fact goes through the journal before a caller hears about it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from . import __version__
from .catalog import Catalog, CatalogDocument, parse_catalog
from .config import Settings
from .errors import ConfigError, Refused
from .events import EventBus
from .journal import (
    Entry,
    Journal,
    TicketRecord,
    forget_open_sale,
    now_with_offset,
    set_ticket_state,
    store_tickets,
)
from .reports import summarize
from .rules import (
    PAYMENT_METHODS,
    CardFacts,
    CardPolicy,
    Connectivity,
    Decision,
    check_article,
    check_payment,
)
from .sales import Sale, plan_refund, refund_body
from .ticketcodes import UnsupportedPattern, make_ticket_code

log = logging.getLogger("tilld.till")

EMPTY_CATALOG = CatalogDocument(version="none", articles=[])
RECENT_SALES = 64


class Till:
    def __init__(self, settings: Settings, journal: Journal, events: EventBus) -> None:
        self.settings = settings
        self.journal = journal
        self.events = events
        self.catalog = Catalog(EMPTY_CATALOG)
        self.catalog_source = "none"
        # No connectivity monitor runs yet: with no back-end the server is never
        # reachable and, with no probes, the internet counts as down with it.
        self.connectivity = Connectivity(server=False, internet=False)
        self.card_policy = CardPolicy(
            offline_limit=settings.card.offline_limit,
            offline_brands=frozenset(settings.card.offline_brands),
        )
        self.offline_card_stored = 0
        self.accepting_sales = True
        self._open: dict[str, Sale] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pending = {"entries": 0, "tickets": 0, "scans": 0}

    # -- start-up ------------------------------------------------------------

    async def start(self) -> None:
        await self._load_catalog()
        for state in await self.journal.open_sales():
            sale = Sale.from_state(state)
            self._open[sale.sale_id] = sale
        if self._open:
            log.warning("restored %d open sale(s) that had taken payments", len(self._open))
        self._pending = await self.journal.pending_counts()

    async def _load_catalog(self) -> None:
        cached = await self.journal.cached_catalog()
        path = self.settings.catalog.file
        if path:
            try:
                with open(path, "rb") as handle:
                    raw = handle.read()
                document = parse_catalog(raw, path)
            except (OSError, ConfigError) as exc:
                log.error("catalog file %s is unusable (%s); using the cached catalog", path, exc)
            else:
                if cached is None or cached[0] != document.model_dump_json():
                    await self.journal.store_catalog(document.model_dump_json(), path, None)
                self._use_catalog(document, path)
                return
        if cached is not None:
            document_json, _etag, source = cached
            self._use_catalog(CatalogDocument.model_validate_json(document_json), source)
            return
        log.warning("no catalog: configure catalog.file or a back-end; nothing can be sold")

    def _use_catalog(self, document: CatalogDocument, source: str) -> None:
        self.catalog = Catalog(document)
        self.catalog_source = source
        log.info(
            "catalog %s from %s: %d articles", document.version, source, len(document.articles)
        )

    # -- state ----------------------------------------------------------------

    def _enabled_methods(self) -> dict[str, bool]:
        till_switch = set(self.settings.payments.enabled)
        return {
            m: m in till_switch and self.catalog.payment_methods.get(m, False)
            for m in PAYMENT_METHODS
        }

    def _card_facts(self, brand: str | None = None) -> CardFacts:
        return CardFacts(offline_stored=self.offline_card_stored, brand=brand, terminal_ready=False)

    def payment_decision(self, method: str) -> Decision:
        return check_payment(
            method,
            self.connectivity,
            enabled=self._enabled_methods(),
            card=self._card_facts(),
            policy=self.card_policy,
        )

    def status(self) -> dict[str, Any]:
        conn = self.connectivity
        return {
            "till_id": self.settings.till.id,
            "mode": conn.mode.value,
            "server": conn.server,
            "internet": conn.internet,
            "pending": dict(self._pending),
            "payment_methods": {m: self.payment_decision(m).as_dict() for m in PAYMENT_METHODS},
            "offline_card": {
                "stored": self.offline_card_stored,
                "limit": self.card_policy.offline_limit,
            },
            "devices": {},
            "catalog": {
                "version": self.catalog.version,
                "articles": len(self.catalog.document.articles),
                "source": self.catalog_source,
            },
            "open_sales": len(self._open),
            "journal": {"last_seq": self.journal.head_seq},
            "version": __version__,
        }

    # -- catalog --------------------------------------------------------------

    def search(self, query: str, limit: int) -> dict[str, Any]:
        found = self.catalog.search(query, limit)
        return {"articles": [a.summary() for a in found], "catalog_version": self.catalog.version}

    # -- sales ----------------------------------------------------------------

    def _require_accepting(self) -> None:
        if not self.accepting_sales:
            raise Refused(
                "shutting-down",
                "The till is shutting down and takes no new sales; try again when it is back.",
            )

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

    def _lock(self, sale_id: str) -> asyncio.Lock:
        return self._locks.setdefault(sale_id, asyncio.Lock())

    def _close(self, sale: Sale, view: dict[str, Any]) -> None:
        self._open.pop(sale.sale_id, None)
        self._locks.pop(sale.sale_id, None)
        self._recent[sale.sale_id] = view
        while len(self._recent) > RECENT_SALES:
            self._recent.popitem(last=False)

    def open_sale(self) -> dict[str, Any]:
        self._require_accepting()
        sale = Sale.new(now_with_offset())
        self._open[sale.sale_id] = sale
        return {"sale_id": sale.sale_id}

    def list_sales(self) -> dict[str, Any]:
        return {"sales": [sale.view() for sale in self._open.values()]}

    async def add(
        self, sale_id: str, *, plu: str | None, barcode: str | None, quantity: int
    ) -> dict[str, Any]:
        self._require_accepting()
        async with self._lock(sale_id):
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
            line = sale.add(article, quantity)
            return {"line_id": line.line_id, "sale": sale.view()}

    async def remove(self, sale_id: str, line_id: int) -> dict[str, Any]:
        async with self._lock(sale_id):
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
        async with self._lock(sale_id):
            sale = self._sale(sale_id)
            entry = await self.journal.append(
                "void",
                sale.void_body(reason, self.connectivity.mode.value),
                effects=(forget_open_sale(sale.sale_id),),
            )
            view = _view_of_entry(entry)
            self._close(sale, view)
        self._after_append()
        self.events.publish(
            "sale",
            event="voided",
            sale_id=sale_id,
            total=sale.total,
            returned=[p.as_dict() for p in sale.payments],
        )
        return {"sale_id": sale_id, "state": "voided", "seq": entry.seq, "sale": view}

    async def pay(
        self, sale_id: str, method: str, amount: int, reference: str | None
    ) -> dict[str, Any]:
        self._require_accepting()
        async with self._lock(sale_id):
            sale = self._sale(sale_id)
            _raise_if_refused(self.payment_decision(method))
            if method not in ("cash", "swish-manual"):
                raise Refused(
                    "method-not-supported",
                    f"This till has no {method} payment flow; take cash or manual Swish.",
                )
            payment = sale.tender(method, amount, reference)
            sale.payments.append(payment)
            try:
                if sale.due > 0:
                    await self.journal.save_open_sale(sale.sale_id, sale.state())
                    return {
                        "payment_id": payment.payment_id,
                        "status": "accepted",
                        "change": payment.change,
                        "sale": sale.view(),
                    }
                entry = await self._complete(sale)
            except BaseException:
                sale.payments.remove(payment)
                raise
            view = _view_of_entry(entry)
            self._close(sale, view)
        self._after_append()
        self.events.publish(
            "sale",
            event="completed",
            sale_id=sale.sale_id,
            receipt_no=entry.body["receipt_no"],
            total=sale.total,
            mode=entry.body["mode"],
        )
        return {
            "payment_id": payment.payment_id,
            "status": "completed",
            "change": payment.change,
            "receipt_no": entry.body["receipt_no"],
            "sale": view,
        }

    async def _complete(self, sale: Sale) -> Entry:
        tickets: list[TicketRecord] = []
        pattern = self.catalog.document.ticket_code_pattern
        try:
            for line in sale.lines:
                if line.kind != "goods":
                    line.ticket_codes = [make_ticket_code(pattern) for _ in range(line.quantity)]
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
        _raise_if_refused(self.payment_decision(method))
        if method not in ("cash", "swish-manual"):
            raise Refused(
                "method-not-supported",
                f"This till cannot refund by {method}; refund in cash or by manual Swish.",
            )
        original = await self.journal.find_receipt(receipt_no)
        if original is None or original.type != "sale":
            raise Refused(
                "unknown-receipt",
                f"There is no sale with receipt number {receipt_no} in this till's journal.",
                receipt_no=receipt_no,
            )
        async with self._lock(f"receipt:{receipt_no}"):
            earlier = [e.body for e in await self.journal.refunds_of(receipt_no)]
            plan = plan_refund(original.body, earlier, lines)
            body = refund_body(original.body, plan, method, self.connectivity.mode.value, reason)
            codes = [code for line in plan for code in line.ticket_codes]
            entry = await self.journal.append(
                "refund", body, number="receipt_no", effects=(set_ticket_state(codes, "refunded"),)
            )
        self._after_append()
        self.events.publish(
            "sale",
            event="refunded",
            receipt_no=entry.body["receipt_no"],
            original_receipt_no=receipt_no,
            total=body["total"],
        )
        return {"receipt_no": entry.body["receipt_no"], "seq": entry.seq, "refund": entry.body}

    def _after_append(self) -> None:
        self._pending["entries"] += 1

    # -- journal, reports, sync status ---------------------------------------

    async def pending(self, limit: int) -> dict[str, Any]:
        listed = await self.journal.pending(limit)
        return {"counts": dict(self._pending), **listed}

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
        summary = summarize(await self.journal.since_last("z-report"))
        last_z = await self.journal.last_of("z-report")
        carried = last_z.body["grand_total"] if last_z else 0
        report = {
            "kind": kind,
            "till_id": self.settings.till.id,
            "seller": self.settings.till.seller_name,
            "org_number": self.settings.till.org_number,
            "printed_at": now_with_offset(),
            **summary,
            "grand_total": carried + summary["net"],
        }
        if kind == "x":
            return report
        entry = await self.journal.append("z-report", report, number="z_no")
        self._after_append()
        return {**entry.body, "seq": entry.seq}


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
