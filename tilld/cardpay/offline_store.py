"""The terminal's offline store: sent on and the day closed when the internet returns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from drivers.terminal import Settlement, TerminalError

from ..events import EventBus
from ..journal import Journal, count_card
from ..rules import CardPolicy, OfflineAge, offline_age
from .desk import OFFLINE_AMOUNT, OFFLINE_SINCE, OFFLINE_STORED, TerminalDesk

log = logging.getLogger("tilld.card")


# How often the age of the stored payments is looked at, at most: an hour's
# limit is the smallest a venue would set, so a minute is fine-grained enough.
AGE_CHECK_S = 60.0


class OfflineStore:
    def __init__(
        self,
        desk: TerminalDesk,
        journal: Journal,
        events: EventBus,
        policy: Callable[[], CardPolicy],
    ) -> None:
        self.desk = desk
        self.journal = journal
        self.events = events
        self.policy = policy
        self._flush_task: asyncio.Task[None] | None = None
        self._age_task: asyncio.Task[None] | None = None
        self.age_level = OfflineAge.NONE

    def start(self) -> None:
        self._age_task = asyncio.create_task(self._watch_age(), name="offline card age")

    async def stop(self) -> None:
        for task in (self._flush_task, self._age_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def budget(self) -> dict[str, Any]:
        """The offline risk budget as status shows it: what is stored and each limit."""
        policy = self.policy()
        age_h = self.desk.offline_age_h()
        return {
            "stored": self.desk.offline_stored,
            "limit": policy.offline_limit,
            "stored_amount": self.desk.offline_amount,
            "max_amount": policy.offline_max_amount,
            "max_total": policy.offline_max_total,
            "oldest_age_s": None if age_h is None else int(age_h * 3600),
            "max_age_h": policy.offline_max_age_h,
            "age": offline_age(age_h, policy).value,
        }

    async def _watch_age(self) -> None:
        while True:
            policy = self.policy()
            age_h = self.desk.offline_age_h()
            level = offline_age(age_h, policy)
            if level != self.age_level:
                self._age_changed(level, age_h, policy)
            self.desk.offline_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.desk.offline_changed.wait(), self._next_check_s(age_h, policy)
                )

    def _age_changed(self, level: OfflineAge, age_h: float | None, policy: CardPolicy) -> None:
        self.age_level = level
        if level in (OfflineAge.WARNING, OfflineAge.EXPIRED):
            log.warning(
                "the oldest offline card payment on the terminal is %.1f hours old (limit %g): %s",
                age_h or 0.0,
                policy.offline_max_age_h,
                "card payments without internet are refused until the terminal has forwarded them"
                if level is OfflineAge.EXPIRED
                else "get the internet back so the terminal can forward them",
            )
        self.events.publish(
            "terminal",
            event="offline-age",
            age=level.value,
            oldest_age_s=None if age_h is None else int(age_h * 3600),
            max_age_h=policy.offline_max_age_h,
        )

    @staticmethod
    def _next_check_s(age_h: float | None, policy: CardPolicy) -> float:
        if age_h is None:
            return AGE_CHECK_S
        thresholds = (
            policy.offline_max_age_h * policy.offline_age_warning,
            policy.offline_max_age_h,
        )
        ahead = [(t - age_h) * 3600 for t in thresholds if t > age_h]
        return max(0.5, min([AGE_CHECK_S, *ahead]))

    def internet_back(self) -> None:
        """Flush the terminal's stored offline payments now the internet is back."""
        if self.desk.terminal is None or self.desk.offline_stored == 0:
            return
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush(), name="terminal flush")

    async def _flush(self) -> None:
        try:
            assert self.desk.terminal is not None
            if not self.desk.ready:
                await self.desk.terminal.wait_ready(60)
            outcome = await self.close_batch("internet-back")
            if not outcome["closed"]:
                log.warning(
                    "terminal flush: %s; tilld tries again at the next chance", outcome["why"]
                )
        except Exception:
            log.exception("terminal flush failed; tilld tries again when the internet returns")

    async def close_batch(self, why: str) -> dict[str, Any]:
        """Have the terminal forward its stored payments and close its batch.

        The one place for it: when the internet returns (``why`` "internet-back")
        and at a Z report ("z-report"). Journals a ``terminal-flush`` entry whose
        counter effects reset the offline budget from the terminal's answer.
        Returns ``{closed: true, sent, count, total, offline_before,
        offline_after}`` or ``{closed: false, why}``; never raises for a
        terminal that cannot."""
        terminal = self.desk.terminal
        if terminal is None:
            return {"closed": False, "why": "no card terminal is configured"}
        if not self.desk.ready:
            return {"closed": False, "why": "the card terminal is not ready"}
        async with self.desk.turn("flush"):
            if self.desk.doubts:
                # After an end of day a terminal's "last transaction" is the
                # day's closing, so a doubt could no longer be resolved.
                return {
                    "closed": False,
                    "why": "a card payment is in doubt; the batch is closed once it is resolved",
                }
            before = self.desk.offline_stored
            try:
                sent = await terminal.send_offline_transactions()
                closed = await terminal.end_of_day()
            except (TerminalError, OSError) as exc:
                return {"closed": False, "why": f"the card terminal failed: {exc}"}
            if not (sent.ok and closed.ok):
                return {
                    "closed": False,
                    "why": f"the card terminal refused: send offline {sent.result_text}, "
                    f"end of day {closed.result_text}; {before} payment(s) still stored",
                }
            return await self._closed(why, before, sent, closed)

    async def _closed(
        self, why: str, before: int, sent: Settlement, closed: Settlement
    ) -> dict[str, Any]:
        # The terminal's own answer says how many it sent; what it did
        # not send is still stored on it.
        after = max(0, before - max(sent.count, closed.count))
        # The terminal says how many it sent, not which: with some left,
        # the stored sum and the oldest's age stay as they were (the
        # budget errs on the side of the venue's money).
        effects = [count_card(OFFLINE_STORED, set_to=after)]
        if after == 0:
            effects += [
                count_card(OFFLINE_AMOUNT, set_to=0),
                count_card(OFFLINE_SINCE, set_to=0),
            ]
        await self.journal.append(
            "terminal-flush",
            {
                "why": why,
                "offline_before": before,
                "sent": sent.count,
                "end_of_day_count": closed.count,
                "end_of_day_total": closed.total,
                "offline_after": after,
            },
            effects=tuple(effects),
        )
        self.desk.offline_stored = after
        if after == 0:
            self.desk.offline_amount = 0
            self.desk.offline_since = 0.0
        self.desk.offline_changed.set()
        log.info(
            "terminal batch closed (%s): %d offline payment(s) sent, %d left",
            why,
            sent.count,
            after,
        )
        self.events.publish("terminal", event="flushed", sent=sent.count, offline_stored=after)
        return {
            "closed": True,
            "sent": sent.count,
            "count": closed.count,
            "total": closed.total,
            "offline_before": before,
            "offline_after": after,
        }
