"""Benchmark: outage detection and recovery, and the sync drain rate, on loopback and a long link.

Run with `make bench` or:
    .venv/bin/python tests/bench/outage_figures.py [--entries N] [--rounds R] [--append FILE]

The till runs with its default connectivity settings (tilld/config.py) against
the reference back-end behind the fault proxy; times are from the proxy switch
to the `mode` event a socket subscriber receives. Every figure is measured
twice: with the proxy passing bytes on loopback, and with it in its latency
mode, a 50 ms round trip with jitter (report.LONG_LINK), which is what a till
on a shop's DSL or 4G link pays per request.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import TillProcess
from report import LINKS, append_section, median, section, spread, table, verdict
from sims import Backend, Proxy, wait_for
from workload import post_one_by_one, sell_offline

DETECTION_GOAL_S = 2.5


def time_to_mode(listener, proxy: Proxy, mode: str, proxy_mode: str, **options) -> float:
    started = time.monotonic()
    proxy.set_mode(proxy_mode, **options)
    while True:
        event = listener.next_event()
        if event["topic"] == "mode" and event["mode"] == mode:
            return time.monotonic() - started


def exported_entries(till: TillProcess, n: int) -> list[dict]:
    entries: list[dict] = []
    since = 0
    client = till.client()
    while len(entries) < n:
        page = client.call("admin.journal_export", since_seq=since, limit=5000)
        entries += [json.loads(x) for x in page["content"].splitlines()]
        if page["next_since_seq"] is None:
            break
        since = page["next_since_seq"]
    client.close()
    return entries[:n]


def naive_rate(backend: Backend, entries: list[dict], till_id: str) -> float:
    """Loopback: the entries posted one request per entry straight to the back-end (urllib)."""
    started = time.monotonic()
    for entry in entries:
        backend.request("POST", f"/v1/tills/{till_id}/journal", {"entries": [entry]})
    return len(entries) / (time.monotonic() - started)


def detection_rounds(till, server: Proxy, rounds: int, mode: str, options: dict):
    """Refused and black-holed back-end: seconds to server-unreachable, and back to online."""
    listener = till.client()
    listener.call("events.subscribe", topics=["mode"])
    dead, holed, back = [], [], []
    for _ in range(rounds):
        dead.append(time_to_mode(listener, server, "server-unreachable", "refuse"))
        time.sleep(12)  # long enough for the backoff to reach its cap
        back.append(time_to_mode(listener, server, "online", mode, **options))
        holed.append(time_to_mode(listener, server, "server-unreachable", "blackhole"))
        back.append(time_to_mode(listener, server, "online", mode, **options))
    listener.close()
    return dead, holed, back


def drain_rate(client, server: Proxy, entries: int, mode: str, options: dict) -> float:
    server.set_mode("refuse")
    wait_for(lambda: client.call("status.get")["mode"] != "online", what="offline")
    sell_offline(client, entries)
    server.set_mode(mode, **options)
    # The drain starts when the till knows the server is back; how long that
    # takes is the recovery figure, not the drain rate.
    wait_for(
        lambda: client.call("status.get")["mode"] == "online",
        timeout=60,
        interval=0.01,
        what="online",
    )
    started = time.monotonic()
    wait_for(
        lambda: client.call("status.get")["pending"]["entries"] == 0,
        timeout=600,
        interval=0.05,
        what="drained",
    )
    return entries / (time.monotonic() - started)


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def per_second(value: float) -> str:
    return f"{value:,.0f}/s"


def times(value: float) -> str:
    return f"{value:.1f}x"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--naive-entries", type=int, default=2000, help="baseline entries per round, loopback"
    )
    parser.add_argument(
        "--naive-entries-long",
        type=int,
        default=150,
        help="baseline entries per round over the long link (about 20 a second)",
    )
    parser.add_argument("--links", nargs="*", default=list(LINKS), choices=list(LINKS))
    parser.add_argument("--append", help="append the results as Markdown to this file")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tilld-bench-"))
    backend = Backend(base)
    server = Proxy(base, "server", backend.address)
    internet = Proxy(base, "internet", None)  # stays up: only the server goes away
    till = TillProcess(
        base,
        {
            "backend": {"url": f"http://{server.address}", "token_file": str(backend.token_file)},
            "connectivity": {"internet_probes": [f"tcp://{internet.address}"]},
        },
    ).start()
    figures = {}
    try:
        client = till.client()
        wait_for(lambda: client.call("status.get")["mode"] == "online", what="online")
        for link in args.links:
            mode, options = LINKS[link]
            server.set_mode(mode, **options)
            dead, holed, back = detection_rounds(till, server, args.rounds, mode, options)
            drains, naives = [], []
            for round_no in range(args.rounds):
                drains.append(drain_rate(client, server, args.entries, mode, options))
                if mode == "pass":
                    entries = exported_entries(till, min(args.entries, args.naive_entries))
                    naives.append(naive_rate(backend, entries, f"naive-{round_no}"))
                else:
                    entries = exported_entries(till, min(args.entries, args.naive_entries_long))
                    path = f"/v1/tills/naive-long-{round_no}/journal"
                    naives.append(post_one_by_one(server.address, path, "entries", entries))
            figures[link] = (dead, holed, back, drains, naives)
            server.set_mode("pass")
    finally:
        till.stop()
        internet.stop()
        server.stop()
        backend.stop()
    cells = []
    for link, (dead, holed, back, drains, naives) in figures.items():
        ratios = [d / n for d, n in zip(drains, naives, strict=True)]
        # The ratio's goal is set over a real link's round trip, which batching
        # saves. On loopback a round trip costs next to nothing, so the ratio
        # there measures the reference back-end's own work per entry: shown,
        # with no goal (the drain rate's goal holds on both links).
        long_link = link != "loopback"
        rows = [
            (f"{link}: detection, back-end refusing connections", dead, 3.0, "<= 3 s"),
            (
                f"{link}: detection, back-end black-holed",
                holed,
                DETECTION_GOAL_S,
                f"<= {DETECTION_GOAL_S} s",
            ),
            (
                f"{link}: recovery to online (backoff at its 10 s cap)",
                back,
                11.0,
                "<= cap + 1 s = 11 s",
            ),
        ]
        cells += [
            (name, spread(s, seconds), seconds(max(s)), verdict(max(s) <= limit, goal))
            for name, s, limit, goal in rows
        ]
        cells += [
            (
                f"{link}: sync drain of {args.entries:,} offline sales",
                spread(drains, per_second),
                per_second(min(drains)),
                verdict(median(drains) >= 2000, ">= 2,000/s"),
            ),
            (
                f"{link}: one request per entry (baseline, same link)",
                spread(naives, per_second),
                "",
                "",
            ),
            (
                f"{link}: drain vs baseline",
                spread(ratios, times),
                times(min(ratios)),
                verdict(median(ratios) >= 50, ">= 50x") if long_link else "no goal on loopback",
            ),
        ]
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/outage_figures.py`): the",
        "reference back-end behind the fault proxy, on loopback and over a 50 ms round trip",
        "(the proxy's latency mode, 25 ms each way plus up to 5 ms jitter), the till on its",
        "default connectivity settings; times from the proxy switch to the `mode` event at a",
        f"socket subscriber. {args.rounds} rounds each, median (min-max); detection goals on",
        "the worst. The drain is timed from the till's `online` mode (polled every 10 ms;",
        "noticing the server is the recovery figure) to no entry pending, polled every 50 ms.",
        "The baseline posts the same entries one request each: on loopback with urllib",
        "straight to the back-end, over the long link through the same proxy on one",
        "kept-alive connection (one round trip per entry, not two).",
    ]
    body = table(("figure", "median (min-max)", "worst", "goal"), cells)
    append_section(args.append, section("Outage detection, recovery and sync drain", intro, body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
