"""Events from the Till to whoever listens: socket subscribers and D-Bus signals.

Each subscriber has a bounded queue. A listener that stops reading does not
grow the daemon's memory: when its queue is full it is marked overflowed and
its adapter drops it, telling the client to subscribe again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

TOPICS = ("mode", "scan", "sale", "sync", "device", "terminal")
QUEUE_LIMIT = 1000


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
        event = {"topic": topic, **fields}
        for subscription in list(self._subscriptions):
            subscription.offer(event)
