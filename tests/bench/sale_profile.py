"""Where a sale's time goes in the daemon: each call's own cost, the commit's, the writer hop's.

Not part of `make bench` (it explains figures rather than measuring a goal):
    .venv/bin/python tests/bench/sale_profile.py [--sales N] [--cprofile]

The till is app.py's Daemon in this process on a real journal, with its
writer connection switched to ``synchronous = OFF``, so no fsync is waited
for: what is left is what the till itself spends per call (the Python, the
SQLite pages, the hop to the writer thread and back). The step-by-step sale
is timed call by call, the checkout of the same basket as one call, and the
journal append inside the writer thread and a hop that does nothing, so the
table reads as a breakdown. With --cprofile it also prints the event loop's
and the writer thread's top functions for the step-by-step sales.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from inprocess import running_till
from report import median

from tilld.sales import BasketLine, Tender

BASKET = ("300", "301", "400")


async def profile(sales: int, with_cprofile: bool) -> None:
    base = Path(tempfile.mkdtemp(prefix="tilld-profile-"))
    async with running_till(base) as running:
        till = running.till
        journal = till.journal
        # It stays OFF: a transaction sets FULL again only after one that
        # ran without fsync (sync's bookkeeping, none here).
        await journal._on_writer(
            lambda: journal._require_writer().execute("PRAGMA synchronous=OFF")
        )
        samples: dict[str, list[float]] = {}
        appending = journal._append

        def timed_append(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return appending(*args)
            finally:
                samples.setdefault("append in the writer thread", []).append(
                    time.perf_counter() - started
                )

        journal._append = timed_append  # type: ignore[method-assign]

        async def timed(name: str, call: Callable[[], Awaitable[Any] | Any]) -> Any:
            started = time.perf_counter()
            result = call()
            if asyncio.iscoroutine(result):
                result = await result
            samples.setdefault(name, []).append(time.perf_counter() - started)
            return result

        loop_profile, writer_profile = cProfile.Profile(), cProfile.Profile()
        for i in range(sales + 50):
            if i == 50:  # after the warm-up
                samples.clear()
                if with_cprofile:
                    await journal._on_writer(writer_profile.enable)
                    loop_profile.enable()
            sale_id = (await timed("sale.open", lambda: till.open_sale()))["sale_id"]
            for plu in BASKET:
                await timed(
                    "sale.add",
                    lambda plu=plu, sale_id=sale_id: till.add(
                        sale_id, plu=plu, barcode=None, quantity=1
                    ),
                )
            await timed("sale.pay", lambda sale_id=sale_id: till.pay(sale_id, "cash", 10000, None))
            if with_cprofile and i == sales + 49:
                loop_profile.disable()
                await journal._on_writer(writer_profile.disable)
            await timed(
                "sale.checkout",
                lambda: till.checkout(
                    [BasketLine(plu, None) for plu in BASKET], [Tender("cash", 10000)]
                ),
            )
            await timed("a hop to the writer thread and back", lambda: journal._on_writer(int))
    print(f"{sales} sales of each kind, fsync off; p50 of each, in microseconds:")
    for name, values in samples.items():
        print(f"  {name:40} {median(values) * 1e6:8.0f}")
    if with_cprofile:
        for title, prof in (("event loop", loop_profile), ("writer thread", writer_profile)):
            print(f"\n== {title}: step-by-step sales, by own time")
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sales", type=int, default=500)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    asyncio.run(profile(args.sales, args.cprofile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
