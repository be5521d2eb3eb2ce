"""Hysteresis and backoff of the connectivity monitor, as pure functions over values."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from tilld.connectivity import FAILURES_TO_FLIP, Fact, backoff_delay


def test_a_single_lost_probe_does_not_flip_a_reachable_fact():
    fact = Fact("server")
    assert fact.record(True) is True and fact.up
    assert fact.record(False, "timed out") is False and fact.up
    assert fact.record(True) is False and fact.up


def test_consecutive_failures_flip_it_down_and_one_success_brings_it_back():
    fact = Fact("server")
    fact.record(True)
    flips = [fact.record(False, "refused") for _ in range(FAILURES_TO_FLIP)]
    assert flips[-1] is True and not fact.up and fact.last_error == "refused"
    assert fact.record(True) is True and fact.up


def test_a_fact_that_was_never_up_stays_down_without_flipping():
    fact = Fact("internet")
    assert [fact.record(False, "no route") for _ in range(5)] == [False] * 5
    assert not fact.up and fact.since


@given(st.integers(min_value=0, max_value=200), st.floats(0.1, 5), st.floats(0.1, 60))
def test_backoff_is_full_jitter_below_the_cap(attempt, base, cap):
    rng = random.Random(attempt)
    delay = backoff_delay(attempt, base, cap, rng)
    assert 0 <= delay <= min(cap, base * 2**attempt)


def test_backoff_spreads_a_fleet_instead_of_synchronising_it():
    delays = [backoff_delay(6, 1.0, 10.0, random.Random(seed)) for seed in range(200)]
    assert min(delays) < 2.5 and max(delays) > 7.5  # spread over the whole window
