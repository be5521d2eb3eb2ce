"""Events from the Till to whoever listens: socket subscribers and D-Bus signals.

Each subscriber has a bounded queue. A listener that stops reading does not
grow the daemon's memory: when its queue is full it is marked overflowed and
its adapter drops it, telling the client to subscribe again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("tilld.events")

# Every kind of event per topic, in one place: the socket delivers exactly
# these (the ``event`` field), and the D-Bus adapter has one signal for each
# (tilld/api/dbus_schema.py); tests/test_event_parity.py checks both.
KINDS: dict[str, tuple[str, ...]] = {
    "mode": ("changed",),
    "scan": ("scanned", "registered"),
    "sale": (
        "opened",
        "line-added",
        "line-removed",
        "voided",
        "payment",
        "completed",
        "refunded",
        "registered",  # its receipt's control code, from the control unit (registering.py)
    ),
    "sync": ("progress",),
    "device": ("status", "error", "printed", "print-interrupted", "drawer-opened", "drawer-failed"),
    "terminal": (
        "started",
        "status",
        "approved",
        "declined",
        "aborted",
        "in-doubt",
        "unavailable",
        "not-booked",
        "approved-without-sale",
        "reversed",
        "reversal-failed",
        "refund-started",
        "refunded",
        "refund-declined",
        "refund-aborted",
        "refund-in-doubt",
        "refund-unavailable",
        "refund-not-booked",
        "flushed",
        "offline-age",  # the oldest stored offline payment's age crossed a threshold
    ),
    # The end of an operation started without waiting (docs/api.md, "Calls that
    # do not wait"): its result, or its refusal with the socket's data.
    "job": ("finished", "refused", "failed"),
}
TOPICS = tuple(KINDS)
QUEUE_LIMIT = 1000
# How many queued events a pump (socket or D-Bus) sends before it lets the
# loop run something else. Sync answers a batch of scans with a burst of
# `registered` events; sent in one go they held the loop 10-26 ms, and a
# gate's next scan waited that long for its read.
EVENTS_PER_TURN = 16


class Subscription:
    def __init__(self, topics: Iterable[str]) -> None:
        self.topics = frozenset(topics)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def offer(self, event: dict[str, Any]) -> None:
        if self.overflowed or event["topic"] not in self.topics:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def subscribe(self, topics: Iterable[str] | None = None) -> Subscription:
        subscription = Subscription(topics or TOPICS)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, topic: str, **fields: Any) -> None:
        if fields.get("event") not in KINDS.get(topic, ()):
            # A bug (a kind no API documents); delivered anyway, so no UI misses it.
            log.error("event %s/%s is not in events.KINDS", topic, fields.get("event"))
        event = {"topic": topic, **fields}
        for subscription in list(self._subscriptions):
            subscription.offer(event)
