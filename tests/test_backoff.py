"""The one backoff (drivers/backoff.py): full jitter below an exponential ceiling and a cap."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from drivers.backoff import Backoff, backoff_delay


@given(st.integers(min_value=0, max_value=200), st.floats(0.1, 5), st.floats(0.1, 60))
def test_backoff_is_full_jitter_below_the_cap(attempt, base, cap):
    rng = random.Random(attempt)
    delay = backoff_delay(attempt, base, cap, rng.random)
    assert 0 <= delay <= min(cap, base * 2**attempt)


def test_backoff_spreads_a_fleet_instead_of_synchronising_it():
    delays = [backoff_delay(6, 1.0, 10.0, random.Random(seed).random) for seed in range(200)]
    assert min(delays) < 2.5 and max(delays) > 7.5  # spread over the whole window


def test_a_reconnect_backoff_starts_at_its_first_delay_and_never_waits_less():
    backoff = Backoff(first_s=1.0, cap_s=30.0, rng=random.Random(7).random)
    delays = [backoff.next_delay() for _ in range(40)]
    assert delays[0] == 1.0
    assert all(1.0 <= delay <= 30.0 for delay in delays)
    assert len(set(delays[1:])) > 30  # jittered, not a fixed doubling


def test_a_reconnect_backoff_starts_again_after_reset():
    backoff = Backoff(first_s=0.5, cap_s=8.0, rng=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
