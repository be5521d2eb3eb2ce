"""One lifecycle for every part of the daemon: started in order, stopped in reverse.

app.py lists its parts in the order they start, each with its ``start()``
and ``stop()`` and the time its stop may take. ``Lifecycle.start`` starts
them one after the other and keeps each one that started; ``stop`` stops
exactly those, last started first, each within its time limit and the stop's
deadline (tilld/shutdown.py). A stop that raises or runs out of time is
logged and collected, and the next part is still stopped.

A start that raises half-way leaves the lifecycle holding the parts that
started before it, so the same ``stop`` undoes a failed start-up: no socket
is left listening, no journal left open. The part whose own start raised is
not stopped: a start either succeeds or leaves nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .shutdown import MIN_STEP_S, StopProblem, StopStep, run_steps

log = logging.getLogger("tilld")


@dataclass(frozen=True)
class Part:
    name: str  # as the log says it: "the devices", "the APIs"
    start: Callable[[], Awaitable[Any]]
    stop: Callable[[], Awaitable[Any]]
    stop_limit_s: float
    # Kept back from the stops before this one and given even when they used
    # the deadline up: the journal closes last, and must have time to.
    reserved_s: float = 0.0


class Lifecycle:
    def __init__(self) -> None:
        self._started: list[Part] = []

    @property
    def started(self) -> list[str]:
        """The names of the parts running now, in the order they started."""
        return [part.name for part in self._started]

    async def start(self, parts: Iterable[Part]) -> None:
        """Start each part in order; a part that raises stops the start (the error goes on)."""
        for part in parts:
            try:
                await part.start()
            except BaseException:
                log.error("starting %s failed; stopping what started before it", part.name)
                raise
            self._started.append(part)

    async def stop(self, deadline: float) -> list[StopProblem]:
        """Stop every started part, in reverse, by ``deadline`` (time.monotonic()).

        Every part is stopped whatever the others do; the problems are
        logged and returned. A second call stops nothing twice."""
        parts, self._started = self._started, []
        steps = [
            StopStep(
                part.name,
                part.stop,
                part.stop_limit_s,
                at_least_s=max(MIN_STEP_S, part.reserved_s),
                reserved_s=part.reserved_s,
            )
            for part in reversed(parts)
        ]
        return await run_steps(steps, deadline)
