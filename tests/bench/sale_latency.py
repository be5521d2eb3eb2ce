"""Benchmark: a durable cash sale over the socket, step by step and in one `sale.checkout`,
against the raw cost of one fsync.

Run with `make bench` (writes the header of docs/benchmarks.md, then this
section) or directly:
    .venv/bin/python tests/bench/sale_latency.py [--rounds R] [--sales N]
        [--write FILE | --append FILE]

Each round starts a fresh daemon. Its samples are interleaved: one fsync of
4 KiB in the daemon's state folder, one step-by-step sale (open, three
`sale.add`, `sale.pay`) and one `sale.checkout` of the same basket, the
order of the two sales alternating. So the baseline sees the same disk and
the same load as the sales it is set against, and a load spike on this
shared machine lands in all three. The table gives the median over the
rounds of each round's figure, with the spread (min-max) of the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import Client, TillProcess
from report import append_section, median, ms, percentile, section, table, verdict, write_header

BASKET = ("300", "301", "400")  # 3500 + 3000 + 1500 öre
TENDERED = 10000
WARM_UP = 20
# Idle time before each measured item (not counted): a till's sales are
# seconds apart, and a commit right behind another flush of the same disk
# measures the flush before it as well.
SETTLE_S = 0.002


class FsyncProbe:
    """Write 4 KiB and fsync it, as one SQLite WAL commit does at least."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "fsync-probe"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        self.block = os.urandom(4096)

    def sample(self) -> float:
        started = time.perf_counter()
        os.write(self.fd, self.block)
        os.fsync(self.fd)
        return time.perf_counter() - started

    def close(self) -> None:
        os.close(self.fd)
        self.path.unlink()


def fsync_baseline(directory: Path, rounds: int) -> list[float]:
    """``rounds`` fsyncs of 4 KiB in ``directory``, back to back."""
    probe = FsyncProbe(directory)
    try:
        return [probe.sample() for _ in range(rounds)]
    finally:
        probe.close()


def step_by_step(client: Client) -> tuple[float, float]:
    """One sale in five calls: seconds for the whole sale and for its sale.pay."""
    started = time.perf_counter()
    sale_id = client.call("sale.open")["sale_id"]
    for plu in BASKET:
        client.call("sale.add", sale_id=sale_id, plu=plu)
    before_pay = time.perf_counter()
    client.call("sale.pay", sale_id=sale_id, method="cash", amount=TENDERED)
    ended = time.perf_counter()
    return ended - started, ended - before_pay


def checkout(client: Client) -> float:
    """The same sale in one call: seconds until it is committed."""
    started = time.perf_counter()
    done = client.call(
        "sale.checkout",
        lines=[{"plu": plu} for plu in BASKET],
        payments=[{"method": "cash", "amount": TENDERED}],
    )
    elapsed = time.perf_counter() - started
    assert done["status"] == "completed", done
    return elapsed


@dataclass
class Round:
    fsync: list[float] = field(default_factory=list)
    whole: list[float] = field(default_factory=list)
    pay: list[float] = field(default_factory=list)
    checkout: list[float] = field(default_factory=list)


def one_round(sales: int) -> Round:
    base = Path(tempfile.mkdtemp(prefix="tilld-bench-"))
    till = TillProcess(base).start()
    samples = Round()
    try:
        client = till.client()
        probe = FsyncProbe(till.state_dir)
        for _ in range(WARM_UP):
            step_by_step(client)
            checkout(client)
        for i in range(sales):
            time.sleep(SETTLE_S)
            samples.fsync.append(probe.sample())
            first_steps = i % 2 == 0
            if not first_steps:
                time.sleep(SETTLE_S)
                samples.checkout.append(checkout(client))
            time.sleep(SETTLE_S)
            whole, pay = step_by_step(client)
            samples.whole.append(whole)
            samples.pay.append(pay)
            if first_steps:
                time.sleep(SETTLE_S)
                samples.checkout.append(checkout(client))
        probe.close()
        client.close()
    finally:
        till.stop()
    return samples


def over_rounds(rounds: list[Round], figure: Callable[[Round], float]) -> tuple[float, str]:
    """The median over the rounds of a round's figure, and the spread as text."""
    values = [figure(r) for r in rounds]
    return statistics.median(values), f"{ms(min(values))} - {ms(max(values))}"


def ratio_spread(rounds: list[Round], figure: Callable[[Round], float]) -> tuple[float, str]:
    values = [figure(r) for r in rounds]
    return statistics.median(values), f"{min(values):.2f}-{max(values):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sales", type=int, default=300, help="sales of each kind per round")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--write", help="start this Markdown file: the header, then this section")
    target.add_argument("--append", help="append this section to this Markdown file")
    args = parser.parse_args()
    rounds = [one_round(args.sales) for _ in range(max(3, args.rounds))]

    def p50(samples: Callable[[Round], list[float]]) -> Callable[[Round], float]:
        return lambda r: median(samples(r))

    def p99(samples: Callable[[Round], list[float]]) -> Callable[[Round], float]:
        return lambda r: percentile(samples(r), 99)

    fsync = p50(lambda r: r.fsync)
    # A goal per round, from that round's own baseline; met when the median
    # round is within it.
    steps_goal = {id(r): 3 * fsync(r) + 0.001 for r in rounds}
    checkout_goal = {id(r): 2 * fsync(r) + 0.0005 for r in rounds}
    rows = []
    fsync_p50, fsync_spread = over_rounds(rounds, fsync)
    rows.append(
        (
            "one fsync of 4 KiB (baseline)",
            ms(fsync_p50),
            fsync_spread,
            ms(over_rounds(rounds, p99(lambda r: r.fsync))[0]),
            "",
            "",
        )
    )
    for label, samples, goal, words in (
        (
            "step-by-step cash sale: open, 3 lines, pay",
            lambda r: r.whole,
            steps_goal,
            "p50 <= 3x fsync + 1 ms",
        ),
        ("  of which sale.pay (the commit)", lambda r: r.pay, None, ""),
        (
            "sale.checkout of the same basket",
            lambda r: r.checkout,
            checkout_goal,
            "p50 <= 2x fsync + 0.5 ms",
        ),
    ):
        value, spread = over_rounds(rounds, p50(samples))
        times, times_spread = ratio_spread(rounds, lambda r, s=samples: median(s(r)) / fsync(r))
        cell = ""
        if goal is not None:
            share, _ = ratio_spread(rounds, lambda r, s=samples, g=goal: median(s(r)) / g[id(r)])
            goal_ms = statistics.median(goal.values())
            cell = verdict(share <= 1.0, f"{words} = {ms(goal_ms)} ({share:.2f} of it)")
        rows.append(
            (
                label,
                ms(value),
                spread,
                ms(over_rounds(rounds, p99(samples))[0]),
                f"{times:.2f}x fsync ({times_spread})",
                cell,
            )
        )
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/sale_latency.py`):",
        f"{len(rounds)} rounds, each a fresh daemon and {args.sales} sales of each kind on one",
        "connection after a warm-up: step by step (`sale.open`, three `sale.add`, `sale.pay`",
        "in cash) and the same basket in one `sale.checkout`, interleaved with the fsync",
        "baseline (4 KiB written and fsynced in the same state folder), each after 2 ms",
        "idle (not counted; a till's sales are seconds apart). Every sale is",
        "answered only after it is committed to the journal. Each figure is the median over",
        "the rounds of the round's p50 (spread: the rounds' lowest and highest); a goal is",
        "set per round from that round's fsync, and is met when the median round meets it",
        '("of it": the median round\'s p50 as a share of its goal).',
    ]
    body = table(("figure", "p50", "p50 spread", "p99", "ratio (spread)", "goal"), rows)
    if args.write:
        write_header(Path(args.write))
    append_section(
        args.write or args.append, section("Durable cash sale and one-call checkout", intro, body)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
