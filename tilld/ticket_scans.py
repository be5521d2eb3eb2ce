"""Ticket scans: route a scanned code, journal a ticket's passage, register it if the server is up.

A scan is an article barcode (shown to the cashier), a ticket code of this
venue (journaled with a local check read in the same transaction, then
registered live or replayed by sync later), or unknown.

The gate's answer is the `scanned` event with the local check: it goes out
as soon as the scan is committed, and waits for nothing else. A scanner's
scans are registered after it, one at a time in the order they were made,
by a task of their own (``_registrations``), so the next guest's scan is
journaled while the back-end still answers about the one before. A
``scan.submit`` call answers with the registration (its caller waits for
it); its `scanned` event has gone out before that too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
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
        # A scanner's scans journaled but not yet offered for live registration.
        self._unregistered: deque[Entry] = deque()
        self._registrations: asyncio.Task[None] | None = None

    async def scan(self, code: str, source: str) -> dict[str, Any]:
        """Route a scanned code: an article barcode, a ticket to register, or unknown.

        The answer of a ticket's scan carries its live registration, if any."""
        code = code.strip()
        if self._is_ticket(code):
            # The ticket's scan is told when it is journaled, before its
            # registration: `scanned` always comes before `registered`.
            entry, result = await self._ticket_scan(code, source)
            return await self._register(entry, result)
        return self._other_scan(code, source)

    async def gate_scan(self, code: str, source: str) -> dict[str, Any]:
        """Route a device's scan: answered once it is journaled and told (`scanned`).

        The live registration follows on its own task, in scan order, so the
        device's next scan does not wait for the back-end."""
        code = code.strip()
        if self._is_ticket(code):
            entry, result = await self._ticket_scan(code, source)
            self._unregistered.append(entry)
            if self._registrations is None or self._registrations.done():
                self._registrations = asyncio.create_task(
                    self._register_in_order(), name="live scan registrations"
                )
            return result
        return self._other_scan(code, source)

    async def stop(self) -> None:
        """Stop registering live: what is left is journaled, and sync replays it."""
        task, self._registrations = self._registrations, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._unregistered.clear()

    def _is_ticket(self, code: str) -> bool:
        # An article's barcode wins over a ticket code's pattern.
        return self.catalog.is_ticket_code(code) and self.catalog.find(barcode=code) is None

    def _other_scan(self, code: str, source: str) -> dict[str, Any]:
        article = self.catalog.find(barcode=code)
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

    async def _ticket_scan(self, code: str, source: str) -> tuple[Entry, dict[str, Any]]:
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
        return entry, dict(result)

    async def _register(self, entry: Entry, result: dict[str, Any]) -> dict[str, Any]:
        """Register a journaled scan live; the answer with the back-end's word, if it came."""
        registered = None
        try:
            registered = await self.register_now(entry)
        except BackendError as exc:
            log.info("live scan kept for later: %s", exc.message)
        if registered is not None:
            status = registered["status"]
            result.update(status=status, detail=gate_words(status, registered.get("detail")))
        return result

    async def _register_in_order(self) -> None:
        while self._unregistered:
            entry = self._unregistered.popleft()
            try:
                await self.register_now(entry)
            except BackendError as exc:
                log.info("live scan kept for later: %s", exc.message)
            except Exception:
                # Sync replays it; the next scans still get their chance.
                log.exception("live registration of scan %d failed", entry.seq)

    async def scans_list(self, state: str | None, limit: int) -> dict[str, Any]:
        scans = await self.journal.scans(state, limit)
        return {"scans": scans, "pending": self.outbox.pending_scans}
