"""What the daemon tells systemd while it runs: a current STATUS= line and watchdog pings.

Both are tasks on the event loop on purpose. The watchdog ping proves the
loop still turns: if a blocking call wedges it, the pings stop and systemd
restarts the till after WatchdogSec (a wedged loop takes no sales either).
STATUS= follows the till's events and is sent only when its text changes,
at most once per ``min_interval_s``, so a stream of sales does not flood
the service manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .events import EventBus, Subscription
from .sdnotify import Notifier

log = logging.getLogger("tilld.supervision")

STATUS_TOPICS = ("mode", "sale", "scan", "sync")


class StatusReporter:
    def __init__(
        self,
        notifier: Notifier,
        events: EventBus,
        describe: Callable[[], str],
        min_interval_s: float = 1.0,
    ) -> None:
        self._notifier = notifier
        self._events = events
        self._describe = describe
        self._min_interval_s = min_interval_s
        self._last: str | None = None
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if not self._notifier.enabled:
            return
        self._subscription = self._events.subscribe(STATUS_TOPICS)
        self._task = asyncio.create_task(self._follow())

    def push(self, *fields: str) -> None:
        """Send the current status if it differs from the last one sent.

        ``fields`` (e.g. STOPPING=1) go in the same datagram, so systemd
        sees the state and its explanation together."""
        text = self._describe()
        if text != self._last or fields:
            self._last = text
            self._notifier.notify(*fields, f"STATUS={text}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._subscription is not None:
            self._events.unsubscribe(self._subscription)

    async def _follow(self) -> None:
        assert self._subscription is not None
        self.push()
        while True:
            if self._subscription.overflowed:
                # Only the latest state matters: start a fresh queue.
                self._events.unsubscribe(self._subscription)
                self._subscription = self._events.subscribe(STATUS_TOPICS)
            else:
                await self._subscription.queue.get()
            while not self._subscription.queue.empty():
                self._subscription.queue.get_nowait()
            self.push()
            await asyncio.sleep(self._min_interval_s)


class WatchdogPinger:
    def __init__(self, notifier: Notifier, interval_s: float | None) -> None:
        self._notifier = notifier
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval_s is None or not self._notifier.enabled:
            return
        log.info("systemd watchdog: pinging every %.1f s", self.interval_s)
        self._task = asyncio.create_task(self._ping())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _ping(self) -> None:
        assert self.interval_s is not None
        while True:
            self._notifier.watchdog()
            await asyncio.sleep(self.interval_s)
