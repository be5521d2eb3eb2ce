"""Sync's doorbell (tilld/outbox.py): rung once for a burst of appends, GATHER_S after its first.

A real journal in a temporary file; the appends are the journal's own, and
its one ``on_append`` hook is what rings. No sync engine runs here, so the
doorbell stays as the appends left it.
"""

from __future__ import annotations

import asyncio

from tilld.events import EventBus
from tilld.journal import Journal
from tilld.outbox import GATHER_S, Outbox

TILL = "till-doorbell"


def scan_body(code: str) -> dict[str, str]:
    return {"code": code, "scanned_at": "2026-11-28T00:00:00.000+01:00", "source": "test"}


def test_a_burst_of_appends_rings_sync_once_after_the_gathering_time(tmp_path):
    rings: list[float] = []

    async def main() -> None:
        journal = Journal(tmp_path / "journal.sqlite", TILL)
        await journal.open()
        outbox = Outbox(journal, EventBus())
        loop = asyncio.get_running_loop()

        async def doorbell() -> None:
            while True:
                await outbox.wanted.wait()
                outbox.wanted.clear()
                rings.append(loop.time())

        listening = asyncio.create_task(doorbell())
        try:
            before = loop.time()
            await asyncio.gather(*(journal.append("scan", scan_body(f"TK{i}")) for i in range(5)))
            burst = loop.time() - before
            assert outbox.counts["entries"] == 5
            await asyncio.sleep(3 * GATHER_S + burst)
        finally:
            listening.cancel()
            await journal.close()
        # Not before GATHER_S: what the burst appends meanwhile goes in the
        # same request. Once, if the burst took less than that (it does but
        # on a machine slower than any this runs on); never more than the
        # burst has gathering times in it.
        assert rings and rings[0] - before >= GATHER_S
        assert 1 <= len(rings) <= 1 + int(burst / GATHER_S)

    asyncio.run(main())
