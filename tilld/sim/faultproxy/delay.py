"""The latency mode's delay line: chunks in flight on a long link, one direction of one connection.

Each chunk is due ``delay + random(0, jitter)`` after it was read, but never
before the chunk read ahead of it: a TCP byte stream arrives late, not out of
order. The reader goes on reading while earlier chunks are in flight, so a
link with a long delay still carries a full stream (as a real one does, up to
its window), rather than one chunk per delay as the ``slow`` mode does.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

# Chunks in flight per direction before the reader waits: with 64 KiB chunks
# some 16 MiB, far more than a till's batch, so only a runaway sender feels it.
MAX_IN_FLIGHT = 256

Deliver = Callable[[bytes], Awaitable[bool]]


def due_time(
    now: float, delay_s: float, jitter_s: float, previous_due: float, draw: float
) -> float:
    """When a chunk read at ``now`` arrives: late by the delay and its jitter, never overtaking."""
    return max(previous_due, now + delay_s + jitter_s * draw)


class DelayLine:
    """Delivers chunks through ``deliver`` at their due times, in the order they were put.

    ``deliver`` returns False once the connection is finished; the line then
    drops what is still in flight, as a closed connection would.
    """

    def __init__(self, deliver: Deliver, rng: random.Random | None = None) -> None:
        self._deliver = deliver
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(MAX_IN_FLIGHT)
        self._last_due = 0.0
        self._pending = 0  # chunks put and not yet delivered or dropped
        self.pending_bytes = 0
        self.task: asyncio.Task[None] | None = None
        self.finished = False

    @property
    def in_flight(self) -> bool:
        return self._pending > 0

    async def put(self, data: bytes, delay_s: float, jitter_s: float) -> None:
        loop = asyncio.get_running_loop()
        due = due_time(loop.time(), delay_s, jitter_s, self._last_due, self._rng.random())
        self._last_due = due
        self._pending += 1
        self.pending_bytes += len(data)
        if self.task is None:
            self.task = loop.create_task(self._run())
        await self._queue.put((due, data))

    async def drained(self) -> None:
        """Wait until every chunk put so far has been delivered (or dropped)."""
        await self._queue.join()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await self._queue.get()
            try:
                if not self.finished:
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if not await self._deliver(data):
                        self.finished = True
            finally:
                self._pending -= 1
                self.pending_bytes -= len(data)
                self._queue.task_done()
