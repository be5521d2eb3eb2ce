"""Benchmark: a durable cash sale over the socket, against the raw cost of one fsync.

Run with `make bench` (writes docs/benchmarks.md) or directly:
    .venv/bin/python tests/bench/sale_latency.py [--sales N] [--write FILE]

Each figure is reported next to a baseline measured in the same run on the
same disk, so the ratio means something on any machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import TillProcess


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


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


def sale_latencies(till: TillProcess, rounds: int) -> tuple[list[float], list[float]]:
    client = till.client()
    whole, pay_only = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        sale_id = client.call("sale.open")["sale_id"]
        for plu in ("300", "301", "400"):
            client.call("sale.add", sale_id=sale_id, plu=plu)
        before_pay = time.perf_counter()
        client.call("sale.pay", sale_id=sale_id, method="cash", amount=10000)
        ended = time.perf_counter()
        whole.append(ended - started)
        pay_only.append(ended - before_pay)
    client.close()
    return whole, pay_only


def status_rate(till: TillProcess, seconds: float) -> float:
    client = till.client()
    calls = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        client.call("status.get")
        calls += 1
    client.close()
    return calls / seconds


def ms(value: float) -> str:
    return f"{value * 1000:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sales", type=int, default=500)
    parser.add_argument("--write", help="write the results as Markdown to this file")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tilld-bench-"))
    till = TillProcess(base).start()
    try:
        sync = fsync_baseline(till.state_dir, args.sales)
        whole, pay = sale_latencies(till, args.sales)
        rate = status_rate(till, 3.0)
    finally:
        till.stop()
    fsync_p50 = statistics.median(sync)
    sale_p50, sale_p99 = statistics.median(whole), percentile(whole, 99)
    goal = 3 * fsync_p50 + 0.001
    rows = [
        ("one fsync of 4 KiB (baseline)", ms(fsync_p50), ms(percentile(sync, 99)), "", ""),
        (
            "durable cash sale: open, 3 lines, pay",
            ms(sale_p50),
            ms(sale_p99),
            f"{sale_p50 / fsync_p50:.2f}x fsync",
            f"p50 <= 3x fsync + 1 ms = {ms(goal)}: {'met' if sale_p50 <= goal else 'MISSED'}",
        ),
        (
            "  of which sale.pay (the commit)",
            ms(statistics.median(pay)),
            ms(percentile(pay, 99)),
            f"{statistics.median(pay) / fsync_p50:.2f}x fsync",
            "",
        ),
        ("status.get, one client, sequential", f"{rate:,.0f} calls/s", "", "", ""),
    ]
    text = render(rows, args.sales)
    print(text)
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
    return 0


def render(rows, sales: int) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        "# tilld benchmarks",
        "",
        "Produced by `make bench` (`.venv/bin/python tests/bench/sale_latency.py "
        "--write docs/benchmarks.md`).",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {cpu}, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}; "
        f"{sales} sales; state folder on {tempfile.gettempdir()}.",
        "Figures are from one run; each is set against a baseline measured in the same run.",
        "",
        "| figure | p50 | p99 | ratio | goal |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
