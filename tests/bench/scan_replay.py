"""Benchmark: replaying ticket scans captured while the back-end was gone.

    .venv/bin/python tests/bench/scan_replay.py [--scans N] [--append FILE]

The till runs against the reference back-end behind the fault proxy (fast
probes, as the outage tests use). The proxy refuses; N distinct ticket codes
are captured through scan.submit in JSON-RPC batches; the proxy passes again.
The clock runs from the `mode` event saying the till is online again to the
`sync` event saying no scan is pending, both at one socket subscriber. A scan
is a journal entry too, so the replay is N entries synced, then N passages
registered, in order. Baseline: the same number of scans posted to the same
back-end one request per scan, as a till without batching would.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from report import append_section, rate, section, table, verdict
from sims import wait_for
from workload import capture_scans, start_site


def naive_rate(site, n: int) -> float:
    scans = [
        {"uuid": str(uuid.uuid4()), "code": f"TKNAIVE{i:08d}", "scanned_at": "2026-01-01T12:00:00Z"}
        for i in range(n)
    ]
    started = time.perf_counter()
    for scan in scans:
        site.backend.request("POST", "/v1/tills/naive-till/scans", {"scans": [scan]})
    return n / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scans", type=int, default=10_000)
    parser.add_argument("--append", help="append the results as Markdown to this file")
    args = parser.parse_args()
    site = start_site(Path(tempfile.mkdtemp(prefix="tilld-bench-")))
    try:
        site.server.set_mode("refuse")
        wait_for(lambda: not site.status()["server"], 30, what="server unreachable")
        captured = time.perf_counter()
        capture_scans(site.client, args.scans, "TKREPLAY")
        capture_s = time.perf_counter() - captured
        # Subscribed only now: a subscriber that reads nothing while 10,000
        # scans are captured would overflow its queue and be dropped.
        listener = site.till.client()
        listener.call("events.subscribe", topics=["mode", "sync"])
        assert site.status()["pending"]["scans"] == args.scans
        switched = time.perf_counter()
        site.server.set_mode("pass")
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
        stats = site.backend.stats()["tills"]["till-test"]
        naive = naive_rate(site, min(args.scans, 2000))
    finally:
        site.stop()
    replay = args.scans / (done - online)
    rows = [
        (
            f"replay of {args.scans:,} offline scans (online event to none pending)",
            rate(replay, "scans"),
            f"{replay / naive:.1f}x",
            verdict(replay >= 2000, ">= 2,000/s"),
        ),
        ("one request per scan (baseline, same back-end)", rate(naive, "scans"), "", ""),
        (
            "the same, from the proxy switch (includes noticing the server)",
            rate(args.scans / (done - switched), "scans"),
            "",
            "",
        ),
        (
            "capture offline through scan.submit batches",
            rate(args.scans / capture_s, "scans"),
            "",
            "",
        ),
    ]
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/scan_replay.py`): distinct",
        "ticket codes captured while the proxy refused, then replayed to the reference",
        "back-end; times from the `mode` event (online) to the `sync` event with no scan",
        "pending, at one socket subscriber. Each scan is synced as a journal entry and then",
        f"registered as a passage. The back-end registered {stats['scans']:,} scans.",
    ]
    body = table(("figure", "rate", "vs baseline", "goal"), rows)
    append_section(args.append, section("Offline scan replay", intro, body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
