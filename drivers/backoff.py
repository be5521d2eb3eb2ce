"""Retry delays: exponential growth with full jitter, under a cap.

The one backoff of the till, used by the device supervisors, the
connectivity probes, the sync retries and the D-Bus reconnect. Full jitter
(a uniform delay below the exponential ceiling, not the ceiling plus a little)
spreads a thousand tills that lost the same server over the whole window, so
they do not return in step and knock it over again (AWS Architecture Blog,
"Exponential Backoff And Jitter", 2015).

It lives in drivers/ because drivers import nothing from tilld/; tilld imports it.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# 2**30 times any first delay is past every cap; the clamp keeps the float finite.
MAX_DOUBLINGS = 30


def backoff_delay(
    attempt: int,
    first_s: float,
    cap_s: float,
    rng: Callable[[], float] = random.random,
    *,
    min_s: float = 0.0,
) -> float:
    """Attempt ``attempt`` (0 first): uniform in [min_s, min(cap_s, first_s * 2**attempt)]."""
    ceiling = min(cap_s, first_s * 2 ** min(attempt, MAX_DOUBLINGS))
    return min_s + rng() * max(0.0, ceiling - min_s)


class Backoff:
    """Successive delays from `first_s` up to `cap_s`, with full jitter, for a reconnect loop.

    The first delay is `first_s` and no delay is shorter: a zero delay would
    turn a dead device into a busy loop. `reset()` after a success starts
    again from `first_s`.
    """

    def __init__(
        self,
        first_s: float = 0.25,
        cap_s: float = 5.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self._rng = rng
        self._attempt = 0

    def next_delay(self) -> float:
        delay = backoff_delay(
            self._attempt, self.first_s, self.cap_s, self._rng, min_s=self.first_s
        )
        self._attempt = min(self._attempt + 1, MAX_DOUBLINGS)
        return delay

    def reset(self) -> None:
        self._attempt = 0
