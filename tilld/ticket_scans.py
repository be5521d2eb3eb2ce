"""Ticket scans: route a scanned code, journal a ticket's passage, register it if the server is up.

A scan is an article barcode (shown to the cashier), a ticket code of this
venue (journaled with a local check read in the same transaction, then
registered live or replayed by sync later), or unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .backend import BackendError
from .catalog import Catalog
from .events import EventBus
from .gate_words import gate_words
from .journal import Entry, Journal, local_ticket_check, now_with_offset
from .outbox import Outbox
from .rules import Connectivity

log = logging.getLogger("tilld.till")

# What a captured scan's local check tells the person at the entrance.
LOCAL_CHECK_WORDS = {
    "sold-here": "Sold at this till; will be registered when the server is back.",
    "not-known-locally": "Sold elsewhere; cannot be checked until the server is back.",
    "already-scanned": "ALREADY SCANNED at this till: check the guest's ticket.",
    "refunded": "REFUNDED at this till: this ticket is not valid.",
}

# The sync engine's live registration: the back-end's answer, or None to replay it later.
RegisterNow = Callable[[Entry], Awaitable[dict[str, Any] | None]]


class TicketScans:
    def __init__(
        self,
        catalog: Catalog,
        journal: Journal,
        events: EventBus,
        connectivity: Callable[[], Connectivity],
        outbox: Outbox,
        register_now: RegisterNow,
    ) -> None:
        self.catalog = catalog
        self.journal = journal
        self.events = events
        self.connectivity = connectivity
        self.outbox = outbox
        self.register_now = register_now

    async def scan(self, code: str, source: str) -> dict[str, Any]:
        """Route a scanned code: an article barcode, a ticket to register, or unknown."""
        code = code.strip()
        article = self.catalog.find(barcode=code)
        if self.catalog.is_ticket_code(code) and article is None:
            # The ticket's scan is told when it is journaled, before its
            # registration: `scanned` always comes before `registered`.
            return await self._ticket_scan(code, source)
        if article is not None:
            result: dict[str, Any] = {"code": code, "kind": "article", "article": article.summary()}
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
                "mode": self.connectivity().mode.value,
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
            "status": "captured",
            "detail": LOCAL_CHECK_WORDS[local_check],
        }
        self.events.publish("scan", event="scanned", source=source, **result)
        result = dict(result)
        registered = None
        try:
            registered = await self.register_now(entry)
        except BackendError as exc:
            log.info("live scan kept for later: %s", exc.message)
        if registered is not None:
            status = registered["status"]
            result.update(status=status, detail=gate_words(status, registered.get("detail")))
        return result

    async def scans_list(self, state: str | None, limit: int) -> dict[str, Any]:
        scans = await self.journal.scans(state, limit)
        return {"scans": scans, "pending": self.outbox.pending_scans}
