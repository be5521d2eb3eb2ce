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
from sims import Backend, Proxy, wait_for


def time_to_mode(listener, proxy: Proxy, mode: str, proxy_mode: str) -> float:
    started = time.monotonic()
    proxy.set_mode(proxy_mode)
    while True:
        event = listener.next_event()
        if event["topic"] == "mode" and event["mode"] == mode:
            return time.monotonic() - started


def sell_offline(client, n: int) -> None:
    for start in range(0, n, 100):
        size = min(100, n - start)
        calls = [("sale.open", {})] * size
        ids = [r["sale_id"] for r in rpc_batch(client, calls)]
        rpc_batch(client, [("sale.add", {"sale_id": s, "plu": "300"}) for s in ids])
        rpc_batch(
            client, [("sale.pay", {"sale_id": s, "method": "cash", "amount": 3500}) for s in ids]
        )


def rpc_batch(client, calls):
    requests = [
        {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)
    ]
    client.send_raw(json.dumps(requests).encode() + b"\n")
    return [r["result"] for r in sorted(client.read(), key=lambda r: r["id"])]


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
        started = time.monotonic()
        server.set_mode("pass")
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
        ("detection, back-end refusing connections", dead, "<= 3 s"),
        ("detection, back-end black-holed", holed, "<= 3 s"),
        ("recovery to online (backoff at its 10 s cap)", back, "<= cap + 1 s = 11 s"),
    ]
    lines = [
        "",
        "## Outage detection, recovery and sync drain",
        "",
        "Produced by `make bench` (`.venv/bin/python tests/bench/outage_figures.py`): the",
        "reference back-end behind the fault proxy on loopback, the till on its default",
        "connectivity settings, times from the proxy switch to the `mode` event at a",
        f"socket subscriber; {args.rounds} rounds each.",
        "",
        "| figure | median | worst | goal |",
        "|---|---|---|---|",
    ]
    for name, samples, goal in rows:
        lines.append(
            f"| {name} | {statistics.median(samples):.2f} s | {max(samples):.2f} s | {goal} |"
        )
    lines += [
        f"| sync drain of {args.entries:,} offline sales | {drain:,.0f} entries/s | | >= 2,000/s |",
        f"| one request per entry (baseline, same back-end) | {naive:,.0f} entries/s | | |",
        f"| drain vs baseline | {drain / naive:.1f}x | | >= 20x |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as out:
            out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
