"""Benchmark: a slow back-end is not an outage, and a silent one is noticed soon.

    .venv/bin/python tests/bench/slow_backend.py [--minutes M] [--append FILE]
    .venv/bin/python tests/bench/slow_backend.py --compare [--minutes 2]

The reference back-end answers every /v1/ request after a random 0.2-0.9 s
(``--answer-delay``), behind the fault proxy on a 50 ms round trip
(report.LONG_LINK). The till runs on its default connectivity settings (or
the ones named with ``--compare``) and sells a cash sale a second, synced
through the same slow back-end. Counted: every `mode` event in M minutes (a
false alarm: the back-end answered everything). Then, on the same link, the
proxy black-holes the back-end three times: seconds from the switch to the
`server-unreachable` event. ``--compare`` runs a few probe settings, M
minutes each, for the trade-off table in docs/benchmarks.md's reading.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import TillProcess
from report import LONG_LINK, append_section, section, spread, table, verdict
from sims import Backend, Proxy, wait_for

from tilld.config import ConnectivitySection

SLOW = ("0.2", "0.9")
DETECTION_GOAL_S = 2.5
# (probe_interval_s, probe_timeout_s): the defaults before overlapping probes,
# today's defaults, and a setting either side of them.
COMPARED = [(2.0, 1.0), (0.5, 1.3), (0.5, 0.8), (1.0, 1.3), (0.4, 1.0)]


def time_to_mode(listener, proxy: Proxy, mode: str, proxy_mode: str, **options) -> float:
    started = time.monotonic()
    proxy.set_mode(proxy_mode, **options)
    while True:
        event = listener.next_event()
        if event["topic"] == "mode" and event["mode"] == mode:
            return time.monotonic() - started


def read_until_marker(listener, events: list[dict], marker: list[str]) -> None:
    while True:
        event = listener.next_event()
        events.append(event)
        if event["topic"] == "sale" and marker and event.get("sale_id") == marker[0]:
            return


def run_setting(base: Path, interval_s: float, timeout_s: float, minutes: float, rounds: int):
    """Mode changes in ``minutes`` of a slow back-end, then black-hole detection times."""
    backend = Backend(base, None, "--answer-delay", *SLOW)
    server = Proxy(base, "server", backend.address)
    server.set_mode("latency", **LONG_LINK)
    internet = Proxy(base, "internet", None)  # stays up: only the server is slow, then silent
    till = TillProcess(
        base,
        {
            "backend": {"url": f"http://{server.address}", "token_file": str(backend.token_file)},
            "connectivity": {
                "internet_probes": [f"tcp://{internet.address}"],
                "probe_interval_s": interval_s,
                "probe_timeout_s": timeout_s,
            },
        },
    ).start()
    try:
        client = till.client()
        wait_for(lambda: client.call("status.get")["mode"] == "online", 60, what="online")
        listener = till.client()
        listener.call("events.subscribe", topics=["mode", "sale"])
        # Read all the while: a subscriber that falls behind is dropped by the till.
        events: list[dict] = []
        marker: list[str] = []
        reader = threading.Thread(target=read_until_marker, args=(listener, events, marker))
        reader.start()
        before = backend.request("GET", "/control/slow")["answered"].get("/v1/health", 0)
        started = time.monotonic()
        sales = 0
        while time.monotonic() - started < minutes * 60:
            sale_id = client.call("sale.open")["sale_id"]
            client.call("sale.add", sale_id=sale_id, plu="300")
            client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
            sales += 1
            time.sleep(1)  # pacing: a sale a second, as at a busy till
        elapsed = time.monotonic() - started
        # A last sale marks the end: its void's event comes after every event before it.
        marker.append(client.call("sale.open")["sale_id"])
        client.call("sale.void", sale_id=marker[0], reason="end of the run")
        reader.join()
        changes = sum(event["topic"] == "mode" for event in events)
        slow = backend.request("GET", "/control/slow")
        probes = slow["answered"].get("/v1/health", 0) - before
        holed = []
        for _ in range(rounds):
            holed.append(time_to_mode(listener, server, "server-unreachable", "blackhole"))
            time_to_mode(listener, server, "online", "latency", **LONG_LINK)
    finally:
        till.stop()
        internet.stop()
        server.stop()
        backend.stop()
    return changes, elapsed, sales, probes / elapsed, holed, slow


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="several probe settings")
    parser.add_argument("--append", help="append the results as Markdown to this file")
    args = parser.parse_args()
    defaults = ConnectivitySection()
    settings = COMPARED if args.compare else [(defaults.probe_interval_s, defaults.probe_timeout_s)]
    rows = []
    for interval_s, timeout_s in settings:
        base = Path(tempfile.mkdtemp(prefix="tilld-bench-"))
        changes, elapsed, sales, probe_rate, holed, slow = run_setting(
            base, interval_s, timeout_s, args.minutes, args.rounds
        )
        default = (defaults.probe_interval_s, defaults.probe_timeout_s)
        is_default = (interval_s, timeout_s) == default
        name = f"interval {interval_s:g} s, timeout {timeout_s:g} s" + (
            " (defaults)" if is_default else ""
        )
        rows.append(
            (
                name,
                f"{changes} in {elapsed / 60:.1f} min ({sales} sales synced, slowest answer "
                f"{slow['slowest_s']:.2f} s)",
                verdict(changes == 0, "0"),
                spread(holed, seconds),
                verdict(max(holed) <= DETECTION_GOAL_S, f"worst <= {DETECTION_GOAL_S} s"),
                f"{probe_rate:.1f}/s",
            )
        )
        print(rows[-1], flush=True)
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/slow_backend.py`): the",
        "reference back-end answering every request after 0.2-0.9 s (`--answer-delay`),",
        "behind the fault proxy on a 50 ms round trip; the till sells and syncs a sale a",
        f"second. Mode changes counted over {args.minutes:g} minutes (each one a false",
        f"alarm); then the proxy black-holes the back-end, {args.rounds} rounds, median",
        "(min-max) from the switch to the `server-unreachable` event. Probes: health",
        "requests answered per second.",
    ]
    body = table(
        (
            "probe settings",
            "mode changes, slow back-end",
            "goal",
            "black-hole detection",
            "goal",
            "probes",
        ),
        rows,
    )
    title = "Slow back-end vs black hole" + (": probe settings compared" if args.compare else "")
    append_section(args.append, section(title, intro, body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
