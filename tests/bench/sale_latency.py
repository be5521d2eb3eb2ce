"""Benchmark: a durable cash sale over the socket, against the raw cost of one fsync.

Run with `make bench` (writes the header of docs/benchmarks.md, then this
section) or directly:
    .venv/bin/python tests/bench/sale_latency.py [--sales N] [--write FILE]

Each figure is reported next to a baseline measured in the same run on the
same disk, so the ratio means something on any machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import TillProcess
from report import append_section, median, ms, percentile, section, table, verdict, write_header
from workload import sale_latencies


def fsync_baseline(directory: Path, rounds: int) -> list[float]:
    """Write 4 KiB and fsync it, as one SQLite WAL commit does at least."""
    path = directory / "fsync-probe"
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = os.urandom(4096)
        for _ in range(rounds):
            started = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            samples.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sales", type=int, default=500)
    parser.add_argument("--write", help="start this Markdown file: the header, then this section")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tilld-bench-"))
    till = TillProcess(base).start()
    try:
        sync = fsync_baseline(till.state_dir, args.sales)
        client = till.client()
        whole, pay = sale_latencies(client, args.sales)
        client.close()
    finally:
        till.stop()
    fsync_p50 = median(sync)
    sale_p50 = median(whole)
    goal = 3 * fsync_p50 + 0.001
    rows = [
        ("one fsync of 4 KiB (baseline)", ms(fsync_p50), ms(percentile(sync, 99)), "", ""),
        (
            "durable cash sale: open, 3 lines, pay",
            ms(sale_p50),
            ms(percentile(whole, 99)),
            f"{sale_p50 / fsync_p50:.2f}x fsync",
            verdict(sale_p50 <= goal, f"p50 <= 3x fsync + 1 ms = {ms(goal)}"),
        ),
        (
            "  of which sale.pay (the commit)",
            ms(median(pay)),
            ms(percentile(pay, 99)),
            f"{median(pay) / fsync_p50:.2f}x fsync",
            "",
        ),
    ]
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/sale_latency.py`):",
        f"{args.sales} sales on one connection, each five calls (open, three `sale.add`,",
        "`sale.pay` in cash), answered only after the sale is committed to the journal;",
        "the fsync baseline writes and fsyncs 4 KiB in the same state folder.",
    ]
    body = table(("figure", "p50", "p99", "ratio", "goal"), rows)
    if args.write:
        write_header(Path(args.write))
    append_section(args.write, section("Durable cash sale", intro, body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
