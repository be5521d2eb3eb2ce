"""Benchmark: outage detection and recovery, and the sync drain rate.

Run with `make bench` or:
    .venv/bin/python tests/bench/outage_figures.py [--entries N] [--append FILE]

The till runs with its default connectivity settings (probe every 2 s, 1 s
probe timeout, backoff cap 10 s) against the reference back-end behind the
fault proxy; times are from the proxy switch to the `mode` event a socket
subscriber receives.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import TillProcess
from report import append_section, section, table, verdict
from sims import Backend, Proxy, wait_for
from workload import sell_offline


def time_to_mode(listener, proxy: Proxy, mode: str, proxy_mode: str) -> float:
    started = time.monotonic()
    proxy.set_mode(proxy_mode)
    while True:
        event = listener.next_event()
        if event["topic"] == "mode" and event["mode"] == mode:
            return time.monotonic() - started


def naive_rate(backend: Backend, till: TillProcess, n: int) -> float:
    """The same entries posted one request per entry, as a till without batching would."""
    entries = []
    since = 0
    client = till.client()
    while len(entries) < n:
        page = client.call("admin.journal_export", since_seq=since, limit=5000)
        lines = [json.loads(x) for x in page["content"].splitlines()]
        entries += lines
        if page["next_since_seq"] is None:
            break
        since = page["next_since_seq"]
    client.close()
    entries = entries[:n]
    started = time.monotonic()
    for entry in entries:
        backend.request("POST", "/v1/tills/naive-till/journal", {"entries": [entry]})
    return len(entries) / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
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
    try:
        client = till.client()
        wait_for(lambda: client.call("status.get")["mode"] == "online", what="online")
        listener = till.client()
        listener.call("events.subscribe", topics=["mode"])
        dead, holed, back = [], [], []
        for _ in range(args.rounds):
            dead.append(time_to_mode(listener, server, "server-unreachable", "refuse"))
            time.sleep(12)  # long enough for the backoff to reach its cap
            back.append(time_to_mode(listener, server, "online", "pass"))
            holed.append(time_to_mode(listener, server, "server-unreachable", "blackhole"))
            back.append(time_to_mode(listener, server, "online", "pass"))
        server.set_mode("refuse")
        wait_for(lambda: client.call("status.get")["mode"] != "online", what="offline")
        sell_offline(client, args.entries)
        server.set_mode("pass")
        # The drain starts when the till knows the server is back; how long that
        # takes is the recovery figure above, not the drain rate.
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
        drain = args.entries / (time.monotonic() - started)
        naive = naive_rate(backend, till, min(args.entries, 2000))
    finally:
        till.stop()
        internet.stop()
        server.stop()
        backend.stop()
    rows = [
        ("detection, back-end refusing connections", dead, 3.0, "<= 3 s"),
        ("detection, back-end black-holed", holed, 3.0, "<= 3 s"),
        ("recovery to online (backoff at its 10 s cap)", back, 11.0, "<= cap + 1 s = 11 s"),
    ]
    cells = [
        (name, f"{statistics.median(s):.2f} s", f"{max(s):.2f} s", verdict(max(s) <= limit, goal))
        for name, s, limit, goal in rows
    ]
    cells += [
        (
            f"sync drain of {args.entries:,} offline sales",
            f"{drain:,.0f} entries/s",
            "",
            verdict(drain >= 2000, ">= 2,000/s"),
        ),
        ("one request per entry (baseline, same back-end)", f"{naive:,.0f} entries/s", "", ""),
        ("drain vs baseline", f"{drain / naive:.1f}x", "", verdict(drain / naive >= 20, ">= 20x")),
    ]
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/outage_figures.py`): the",
        "reference back-end behind the fault proxy on loopback, the till on its default",
        "connectivity settings, times from the proxy switch to the `mode` event at a",
        f"socket subscriber; {args.rounds} rounds each (goals on the worst). The drain is",
        "timed from the till's `online` mode (polled every 10 ms; noticing the server is",
        "the recovery figure) to no entry pending, polled every 50 ms.",
    ]
    body = table(("figure", "median", "worst", "goal"), cells)
    append_section(args.append, section("Outage detection, recovery and sync drain", intro, body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
