"""The terminal's offline store: sent on and the day closed when the internet returns."""

from __future__ import annotations

import asyncio
import logging

from drivers.terminal import TerminalError

from ..events import EventBus
from ..journal import Journal, count_card
from .desk import OFFLINE_STORED, TerminalDesk

log = logging.getLogger("tilld.card")


class OfflineStore:
    def __init__(self, desk: TerminalDesk, journal: Journal, events: EventBus) -> None:
        self.desk = desk
        self.journal = journal
        self.events = events
        self._flush_task: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
            await asyncio.gather(self._flush_task, return_exceptions=True)

    def internet_back(self) -> None:
        """Flush the terminal's stored offline payments now the internet is back."""
        if self.desk.terminal is None or self.desk.offline_stored == 0:
            return
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush(), name="terminal flush")

    async def _flush(self) -> None:
        try:
            await self._flush_once()
        except Exception:
            log.exception("terminal flush failed; tilld tries again when the internet returns")

    async def _flush_once(self) -> None:
        assert self.desk.terminal is not None
        if not self.desk.ready:
            await self.desk.terminal.wait_ready(60)
        async with self.desk.lock:
            if self.desk.doubts:
                # After an end of day a terminal's "last transaction" is the
                # day's closing, so a doubt could no longer be resolved.
                log.info("terminal flush waits until no card payment is in doubt")
                return
            before = self.desk.offline_stored
            try:
                sent = await self.desk.terminal.send_offline_transactions()
                closed = await self.desk.terminal.end_of_day()
            except (TerminalError, OSError) as exc:
                log.warning("terminal flush failed (%s); tilld tries again at the next chance", exc)
                return
            if not (sent.ok and closed.ok):
                log.warning(
                    "terminal flush: send offline %s, end of day %s; the count stays %d",
                    sent.result_text,
                    closed.result_text,
                    before,
                )
                return
            # The terminal's own answer says how many it sent; what it did
            # not send is still stored on it.
            after = max(0, before - max(sent.count, closed.count))
            await self.journal.append(
                "terminal-flush",
                {
                    "offline_before": before,
                    "sent": sent.count,
                    "end_of_day_count": closed.count,
                    "end_of_day_total": closed.total,
                    "offline_after": after,
                },
                effects=(count_card(OFFLINE_STORED, set_to=after),),
            )
            self.desk.offline_stored = after
            log.info("terminal flushed: %d offline payment(s) sent, %d left", sent.count, after)
            self.events.publish("terminal", event="flushed", sent=sent.count, offline_stored=after)
