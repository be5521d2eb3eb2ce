"""Benchmark: a card sale from `sale.pay` to approval, against each terminal simulator.

Run with `make bench` (appends this section to docs/benchmarks.md) or directly:
    .venv/bin/python tests/bench/card_latency.py [--sales N] [--append FILE]

For ZVT and for nexo: the driver alone authorising against the simulator
(the baseline: protocol, loopback and simulator, nothing of tilld), then
`sale.pay` by card through the till process against a simulator of its own,
with the journal writes around it (intent, result, sale). The difference of
the medians is tilld's own share of a card payment. No artificial delay: the
simulators approve at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from report import append_section, median, ms, percentile, section, table
from sims import TerminalSim
from test_card_payments import build_site, open_sale

from drivers.device import Backoff, DeviceStatus
from drivers.nexo import open_terminal as open_nexo
from drivers.zvt import open_terminal as open_zvt

WARM_UP = 5


class _Quiet:
    def device_status(self, name: str, status: DeviceStatus) -> None:
        pass

    def device_error(self, name: str, message: str) -> None:
        pass


def driver_latencies(sim: TerminalSim, rounds: int) -> list[float]:
    async def run() -> list[float]:
        if sim.protocol == "nexo":
            terminal = open_nexo(
                "bench",
                _Quiet(),
                address=sim.address,
                sale_id="bench",
                poi_id=TerminalSim.POI_ID,
                backoff=Backoff(0.05, 0.2),
            )
        else:
            terminal = open_zvt(
                "bench", _Quiet(), kind="zvt-tcp", address=sim.address, backoff=Backoff(0.05, 0.2)
            )
        await terminal.open()
        try:
            assert await terminal.wait_ready(20), terminal.status
            samples = []
            for i in range(WARM_UP + rounds):
                started = time.perf_counter()
                result = await terminal.authorize(3500, f"bench-{i}")
                elapsed = time.perf_counter() - started
                assert result.approved, result
                if i >= WARM_UP:
                    samples.append(elapsed)
            return samples
        finally:
            await terminal.close()

    return asyncio.run(run())


def till_latencies(base: Path, protocol: str, rounds: int) -> list[float]:
    site = build_site(base, protocol=protocol)
    try:
        samples = []
        for i in range(WARM_UP + rounds):
            sale_id, total = open_sale(site.client)
            started = time.perf_counter()
            reply = site.client.call("sale.pay", sale_id=sale_id, method="card", amount=total)
            elapsed = time.perf_counter() - started
            assert reply["status"] == "completed", reply
            if i >= WARM_UP:
                samples.append(elapsed)
        return samples
    finally:
        site.client.close()
        site.till.stop()
        for sim in (site.terminal, site.internet, site.server, site.backend):
            sim.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sales", type=int, default=100)
    parser.add_argument("--append", help="append this section to this Markdown file")
    args = parser.parse_args()
    rows = []
    for protocol in ("zvt", "nexo"):
        base = Path(tempfile.mkdtemp(prefix=f"tilld-bench-{protocol}-"))
        sim = TerminalSim(base, protocol=protocol)
        try:
            alone = driver_latencies(sim, args.sales)
        finally:
            sim.stop()
        through = till_latencies(base, protocol, args.sales)
        share = median(through) - median(alone)
        rows += [
            (f"{protocol}: driver alone, authorise", ms(median(alone)), ms(percentile(alone, 99))),
            (
                f"{protocol}: `sale.pay` by card through tilld",
                ms(median(through)),
                ms(percentile(through, 99)),
            ),
            (f"{protocol}: tilld's own share (difference of the p50s)", ms(share), ""),
        ]
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/card_latency.py`):",
        f"{args.sales} card payments per protocol after {WARM_UP} to warm up, the simulator",
        "approving at once. The baseline is the driver alone against the simulator; the",
        "till figure is `sale.pay` over the socket with the card-intent, card-result and",
        "sale entries committed. Their difference is the daemon's own share.",
    ]
    body = table(("figure", "p50", "p99"), rows)
    append_section(args.append, section("Card sale to approval (ZVT and nexo)", intro, body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
