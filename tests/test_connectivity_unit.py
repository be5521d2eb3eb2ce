"""Hysteresis of the connectivity monitor, as pure functions over values.

Its backoff is the shared one, tested in test_backoff.py.
"""

from __future__ import annotations

from tilld.connectivity import FAILURES_TO_FLIP, Fact


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
