"""What waits to go to the back-end: the pending counts, their `sync` events, sync's doorbell.

The journal tells this module of every local append (its one ``on_append``
hook); the sync engine tells it what the back-end took. So a UI's offline
badge (D-Bus PendingEntries) follows events instead of polling status.get,
and the sync engine is woken by a new entry without the selling code
knowing it exists.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .events import EventBus
from .gate_words import gate_words
from .journal import Entry, Journal

# How long sync waits after a local append before it goes: what is appended
# meanwhile goes in the same request. A gate's scans and a busy till's sales
# then cost the back-end one request a burst, and the till's sync work (a
# request, its bookkeeping) lands after the next scan's answer rather than on
# it: 2,000 idle scans 4 ms apart (scan_latency.py's idle part, two runs
# each way) had a ticket p99 of 3.5-3.9 ms with sync rung at once, 2.8-3.2 ms
# with this. A tenth of a second is nothing to the back-end.
GATHER_S = 0.1


class Outbox:
    def __init__(self, journal: Journal, events: EventBus) -> None:
        self.journal = journal
        self.events = events
        journal.on_append = self._appended
        self.counts = {"entries": 0, "tickets": 0, "scans": 0}
        self.entry_mark = 0  # the last seq the back-end has taken (or rejected)
        # When the oldest entry still waiting was written (None: nothing waits),
        # and when the back-end last took entries: the unsynced list's header.
        self.oldest_since: str | None = None
        self.last_success: str | None = None
        # The doorbell: sync waits on `wanted`; `drained` says it sent everything.
        self.wanted = asyncio.Event()
        self.drained = asyncio.Event()
        self._gathering: asyncio.TimerHandle | None = None

    async def load(self) -> None:
        """Read the counts from the journal: before anyone can sell."""
        marks = await self.journal.sync_marks()
        self.entry_mark = marks[0]
        self.counts = await self.journal.pending_counts(*marks)
        if self.counts["entries"] > 0:
            first = await self.journal.outbox(self.entry_mark, 1)
            self.oldest_since = first[0].created_at if first else None

    def kick(self) -> None:
        """Something may be worth sending: a new entry, the server back, a technician's request."""
        self.drained.clear()
        self.wanted.set()

    @property
    def unsent(self) -> int:
        return self.journal.head_seq - self.entry_mark

    @property
    def pending_scans(self) -> int:
        return self.counts["scans"]

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def _appended(self, entry: Entry) -> None:
        self.counts["entries"] += 1
        if self.oldest_since is None:
            self.oldest_since = entry.created_at
        if entry.type == "scan":
            self.counts["scans"] += 1
        # The one place a local append changes the pending counts; sync
        # reports the other direction.
        self.publish()
        # Sync is rung GATHER_S after the first append of a burst, once for
        # all of it, never in this turn: the appender tells its own news next
        # (a gate's `scanned`), and that goes out before sync's work for the
        # entry begins. Drained no longer holds from now on.
        self.drained.clear()
        if self._gathering is None:
            self._gathering = asyncio.get_running_loop().call_later(GATHER_S, self._gathered)

    def _gathered(self) -> None:
        self._gathering = None
        self.wanted.set()

    # -- what selling and refunding report ----------------------------------

    def tickets_issued(self, count: int) -> None:
        self.counts["tickets"] += count

    async def tickets_refunded(self) -> None:
        # A refunded ticket is no longer pending, synced or not.
        await self.recount_tickets()

    async def recount_tickets(self) -> None:
        self.counts["tickets"] = await self.journal.pending_ticket_count()
        self.publish()

    # -- what the sync engine reports ------------------------------------------

    def entries_synced(
        self, done: int, tickets_valid: int, entry_mark: int, at: str | None = None
    ) -> None:
        self.entry_mark = entry_mark
        self.counts["entries"] -= done
        self.counts["tickets"] -= tickets_valid
        if at is not None:
            self.last_success = at
        if self.counts["entries"] <= 0:
            self.oldest_since = None
        # With entries left, the oldest is at most as old as before: kept, so a
        # screen never shows a backlog as younger than it is.
        self.publish()

    def scans_registered(self, scans: list[Entry], results: list[dict[str, Any]]) -> None:
        self.counts["scans"] -= len(scans)
        for entry, result in zip(scans, results, strict=True):
            self.events.publish(
                "scan",
                event="registered",
                scan_id=entry.uuid,
                code=entry.body["code"],
                scanned_at=entry.body["scanned_at"],
                status=result["status"],
                detail=gate_words(result["status"], result.get("detail")),
                server_detail=result.get("detail"),
            )
        self.publish()

    def sync_progress(self, error: str | None) -> None:
        self.publish(error=error)

    def publish(self, error: str | None = None) -> None:
        self.events.publish(
            "sync",
            event="progress",
            pending=dict(self.counts),
            unsent=self.unsent,
            oldest_pending_since=self.oldest_since,
            last_success=self.last_success,
            error=error,
        )
