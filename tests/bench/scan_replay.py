"""Benchmark: replaying scans captured while the back-end was gone, on loopback and a long link.

    .venv/bin/python tests/bench/scan_replay.py [--scans N] [--rounds R] [--append FILE]

The till runs against the reference back-end behind the fault proxy (fast
probes, as the outage tests use). The proxy refuses; N distinct ticket codes
are captured through scan.submit in JSON-RPC batches; the proxy passes again,
on loopback or as a 50 ms round trip (its latency mode, report.LONG_LINK).
The clock runs from the `mode` event saying the till is online again to the
`sync` event saying no scan is pending, both at one socket subscriber. A scan
is a journal entry too, so the replay is N entries synced, then N passages
registered, in order. Baseline: scans posted to the same back-end one request
per scan, as a till without batching would (on loopback with urllib straight
to the back-end; over the long link through the proxy on one kept-alive
connection).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from report import LINKS, append_section, median, rate, section, spread, table, verdict
from sims import wait_for
from workload import capture_scans, post_one_by_one, start_site

SCANNED_AT = "2026-01-01T12:00:00Z"


def naive_scans(n: int, prefix: str) -> list[dict]:
    return [
        {"uuid": str(uuid.uuid4()), "code": f"{prefix}{i:08d}", "scanned_at": SCANNED_AT}
        for i in range(n)
    ]


def naive_rate(site, n: int) -> float:
    scans = naive_scans(n, "TKNAIVE")
    started = time.perf_counter()
    for scan in scans:
        site.backend.request("POST", "/v1/tills/naive-till/scans", {"scans": [scan]})
    return n / (time.perf_counter() - started)


def replay_round(site, scans: int, prefix: str, mode: str, options: dict):
    """Seconds from online to none pending, from the switch, and the capture rate."""
    site.server.set_mode("refuse")
    wait_for(lambda: not site.status()["server"], 30, what="server unreachable")
    captured = time.perf_counter()
    capture_scans(site.client, scans, prefix)
    capture_s = time.perf_counter() - captured
    # Subscribed only now: a subscriber that reads nothing while 10,000
    # scans are captured would overflow its queue and be dropped.
    listener = site.till.client()
    listener.call("events.subscribe", topics=["mode", "sync"])
    assert site.status()["pending"]["scans"] == scans
    switched = time.perf_counter()
    site.server.set_mode(mode, **options)
    online = None
    while True:
        event = listener.next_event()
        if event["topic"] == "mode" and event["server"] and online is None:
            online = time.perf_counter()
        pending = event.get("pending")
        if event["topic"] == "sync" and pending and pending["scans"] == 0:
            done = time.perf_counter()
            break
    listener.close()
    return scans / (done - online), scans / (done - switched), scans / capture_s


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scans", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--naive-scans", type=int, default=2000, help="baseline, loopback")
    parser.add_argument(
        "--naive-scans-long", type=int, default=150, help="baseline over the long link"
    )
    parser.add_argument("--links", nargs="*", default=list(LINKS), choices=list(LINKS))
    parser.add_argument("--append", help="append the results as Markdown to this file")
    args = parser.parse_args()
    site = start_site(Path(tempfile.mkdtemp(prefix="tilld-bench-")))
    figures = {}
    try:
        for link in args.links:
            mode, options = LINKS[link]
            replays, switched, captures, naives = [], [], [], []
            for round_no in range(args.rounds):
                prefix = f"TK{mode[:2].upper()}{round_no}R"
                replay, from_switch, capture = replay_round(site, args.scans, prefix, mode, options)
                replays.append(replay)
                switched.append(from_switch)
                captures.append(capture)
                if mode == "pass":
                    naives.append(naive_rate(site, min(args.scans, args.naive_scans)))
                else:
                    scans = naive_scans(min(args.scans, args.naive_scans_long), f"TKLONG{round_no}")
                    path = "/v1/tills/naive-long/scans"
                    naives.append(post_one_by_one(site.server.address, path, "scans", scans))
            figures[link] = (replays, switched, captures, naives)
        site.server.set_mode("pass")
        stats = site.backend.stats()["tills"]["till-test"]
    finally:
        site.stop()

    def per_second(value: float) -> str:
        return rate(value, "scans")

    rows = []
    for link, (replays, switched, captures, naives) in figures.items():
        ratios = [r / n for r, n in zip(replays, naives, strict=True)]
        rows += [
            (
                f"{link}: replay of {args.scans:,} offline scans (online event to none pending)",
                spread(replays, per_second),
                f"{median(ratios):.1f}x",
                verdict(median(replays) >= 2000, ">= 2,000/s"),
            ),
            (f"{link}: one request per scan (baseline)", spread(naives, per_second), "", ""),
            (
                f"{link}: the same, from the proxy switch (includes noticing the server)",
                spread(switched, per_second),
                "",
                "",
            ),
            (
                f"{link}: capture offline through scan.submit batches",
                spread(captures, per_second),
                "",
                "",
            ),
        ]
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/scan_replay.py`): distinct",
        "ticket codes captured while the proxy refused, then replayed to the reference",
        "back-end on loopback and over a 50 ms round trip (the proxy's latency mode); times",
        "from the `mode` event (online) to the `sync` event with no scan pending, at one",
        "socket subscriber. Each scan is synced as a journal entry and then registered as a",
        f"passage. {args.rounds} rounds per link, median (min-max). The back-end registered",
        f"{stats['scans']:,} scans. Baseline: one request per scan, on loopback with urllib",
        "straight to the back-end, over the long link through the proxy on one kept-alive",
        "connection.",
    ]
    body = table(("figure", "rate, median (min-max)", "vs baseline", "goal"), rows)
    append_section(args.append, section("Offline scan replay", intro, body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
