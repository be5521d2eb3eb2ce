"""The till's summary (Till.summary): the part of status.get that the D-Bus properties read.

The D-Bus service reads it after every burst of events, so it leaves out
what costs most and changes seldom (the payment methods' decisions). Here
an in-process till sells offline, and the summary must say exactly what
status says at the same moment, and every D-Bus property must read the
same value from either.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from inprocess import Rig, off_loop, run, running_till

from tilld.api.dbus_schema import PROPERTIES
from tilld.till import SUMMARY_BEFORE_METHODS


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with Rig.in_temporary_folder() as rig:
        yield rig


def test_the_summary_is_status_in_part_and_holds_every_d_bus_property(rig: Rig, short_tmp: Path):
    async def scenario() -> None:
        async with running_till(short_tmp, rig.config()) as till:
            await till.wait_mode("online")
            await off_loop(rig.server.set_mode, "refuse")
            await till.wait_for(lambda: not till.status()["server"], "the server seen gone")
            await till.sell("300")
            summary, status = till.till.summary(), till.till.status()
            assert summary["pending"]["entries"] >= 1  # not a summary of nothing
            assert summary == {key: status[key] for key in summary}
            # status keeps its order: the summary's first keys come right after till_id.
            assert list(status)[: 1 + len(SUMMARY_BEFORE_METHODS)] == [
                "till_id",
                *SUMMARY_BEFORE_METHODS,
            ]
            assert "payment_methods" not in summary
            for prop in PROPERTIES:
                assert prop.read(summary) == prop.read(status), prop.name

    try:
        run(scenario())
    finally:
        rig.reset()
