"""Benchmark: a D-Bus screen's waits: a held card payment's answer, and signals behind events.

    .venv/bin/python tests/bench/dbus_figures.py [--payments 50] [--sales 200] [--append FILE]

One till (a subprocess) with the ZVT terminal simulator, the reference
back-end behind a fault proxy and a private dbus-daemon with the shipped
policy. Two figures (StatusGet calls/s against the socket's is
api_throughput.py's):

- **SalePay/card answered, terminal holding**: the time from sending
  `SalePay(sale, "card", total)` to its reply while the terminal waits for a
  card that never comes (each payment is then cancelled and its
  `JobRefused` awaited before the next). Goal < 50 ms at p50 and p99.
- **Signal behind its socket event during a sync drain**: `--sales` cash
  sales made with the server away, then the server back; a socket
  subscriber and a D-Bus client in this process stamp each event on
  arrival, and the figure is how much later the D-Bus signal of the same
  event arrived than the socket's notification (per topic, p99). Both
  leave tilld from the same publish, so this is what D-Bus adds. Goal < 10 ms.

Not part of the test suite: the figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import TillProcess
from dbus_fast import Message, MessageType
from dbussims import Bus, Client, wait_for_name
from sims import Backend, Proxy, TerminalSim, online_config, wait_for

from tilld.api import dbus_names as names
from tilld.api.dbus_schema import EVENT_SIGNAL_BY_NAME
from tilld.api.dbus_types import unwrap


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Stamped:
    """A socket subscriber stamping each event as it arrives (a thread of its own)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rwb")
        request = {"jsonrpc": "2.0", "id": 1, "method": "events.subscribe", "params": {}}
        self.file.write(json.dumps(request).encode() + b"\n")
        self.file.flush()
        self.file.readline()
        self.events: list[tuple[float, dict[str, Any]]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.file:
            self.events.append((time.monotonic(), json.loads(line)["params"]))


class StampedClient(Client):
    """The test client, also stamping each signal as it arrives (on its loop's thread)."""

    def __init__(self, address: str) -> None:
        self.arrived: list[tuple[float, str, list[Any]]] = []
        super().__init__(address)

    def _on_message(self, msg: Message) -> bool:
        if msg.message_type is MessageType.SIGNAL and msg.path == names.OBJECT_PATH:
            self.arrived.append((time.monotonic(), msg.member, unwrap(msg.body)))
        return super()._on_message(msg)


def held_payments(till: TillProcess, dbus: Client, terminal: TerminalSim, n: int) -> list[float]:
    terminal.set(decision="hold")
    rpc = till.client()
    answers = []
    for _ in range(n):
        sale_id = rpc.call("sale.open")["sale_id"]
        total = rpc.call("sale.add", sale_id=sale_id, plu="300")["sale"]["total"]
        began = time.monotonic()
        started = dbus.call("SalePay", "ssx", sale_id, "card", total)
        answers.append(time.monotonic() - began)
        payment_id = started["payment_id"]
        dbus.call("SaleCancelPayment", "ss", sale_id, payment_id)
        dbus.wait_signal("JobRefused", lambda body, p=payment_id: body[0].get("payment_id") == p)
        rpc.call("sale.void", sale_id=sale_id, reason="bench")
    rpc.close()
    return answers


def drain_lag(till: TillProcess, dbus: StampedClient, server: Proxy, sales: int) -> dict[str, list]:
    rpc = till.client()
    server.set_mode("refuse")
    wait_for(lambda: not rpc.call("status.get")["server"], 30, what="server down")
    for _ in range(sales):
        # A ticket each, let in at once: the drain registers every passage (a scan event each).
        sale_id = rpc.call("sale.open")["sale_id"]
        total = rpc.call("sale.add", sale_id=sale_id, plu="100")["sale"]["total"]
        paid = rpc.call("sale.pay", sale_id=sale_id, method="cash", amount=total)
        rpc.call("scan.submit", code=paid["sale"]["lines"][0]["ticket_codes"][0])
    watcher = Stamped(till.socket_path)
    start = rpc.call("sale.open")["sale_id"]  # the first event both see
    server.set_mode("pass")
    wait_for(
        lambda: rpc.call("status.get")["pending"] == {"entries": 0, "tickets": 0, "scans": 0},
        120,
        what="drained",
    )
    end = rpc.call("sale.open")["sale_id"]  # the last

    def opened(sale_id: str):
        return lambda: (
            any(m == "SaleOpened" and b[0]["sale_id"] == sale_id for _, m, b in dbus.arrived)
            and any(e.get("sale_id") == sale_id for _, e in watcher.events)
        )

    wait_for(opened(end), 30, what="the end marker on both")
    first = next(
        i
        for i, (_, m, b) in enumerate(dbus.arrived)
        if m == "SaleOpened" and b[0]["sale_id"] == start
    )
    stamped = [s for s in dbus.arrived[first + 1 :] if s[1] in EVENT_SIGNAL_BY_NAME]
    begin = next(i for i, (_, e) in enumerate(watcher.events) if e.get("sale_id") == start)
    watcher.events = watcher.events[begin + 1 :]
    lags: dict[str, list[float]] = {}
    socket_events = [(t, e) for t, e in watcher.events]
    # The same events in the same order on both: pair them one by one.
    for (t_socket, event), (t_dbus, member, _body) in zip(socket_events, stamped, strict=False):
        signal = EVENT_SIGNAL_BY_NAME[member]
        assert (event["topic"], event["event"]) == (signal.topic, signal.kind), (event, member)
        lags.setdefault(event["topic"], []).append(t_dbus - t_socket)
    rpc.close()
    return lags


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payments", type=int, default=50)
    parser.add_argument("--sales", type=int, default=200)
    parser.add_argument("--append", type=Path)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tilld-dbus-bench-"))
    bus = Bus(base)
    backend = Backend(base)
    server = Proxy(base, "server", backend.address)
    internet = Proxy(base, "internet", None)
    terminal = TerminalSim(base)
    config = online_config(backend, server, internet)
    config["api"] = {"dbus": bus.address}
    config["devices.terminal"] = {"kind": "zvt-tcp", "address": terminal.address}
    till = TillProcess(base, config).start()
    dbus = StampedClient(bus.address)
    try:
        wait_for_name(dbus)
        rpc = till.client()
        wait_for(lambda: rpc.call("status.get")["mode"] == "online", 30, what="online")
        wait_for(
            lambda: rpc.call("status.get")["payment_methods"]["card"]["available"],
            30,
            what="terminal",
        )
        rpc.close()
        answers = held_payments(till, dbus, terminal, args.payments)
        lags = drain_lag(till, dbus, server, args.sales)
    finally:
        dbus.close()
        till.kill()
        for sim in (terminal, internet, server, backend, bus):
            sim.stop()
        shutil.rmtree(base, ignore_errors=True)
    lines = [
        "",
        "## D-Bus: a screen's waits",
        "",
        f"`python tests/bench/dbus_figures.py --payments {args.payments} --sales {args.sales}`",
        "",
        "| figure | p50 | p99 | goal |",
        "|---|---|---|---|",
        f"| SalePay/card answered, terminal holding ({len(answers)} payments) "
        f"| {percentile(answers, 50) * 1000:.1f} ms | {percentile(answers, 99) * 1000:.1f} ms "
        "| < 50 ms |",
    ]
    for topic, samples in sorted(lags.items()):
        lines.append(
            f"| signal behind socket event, `{topic}`, sync drain of {args.sales} sales "
            f"({len(samples)} events) | {percentile(samples, 50) * 1000:.2f} ms "
            f"| {percentile(samples, 99) * 1000:.2f} ms | < 10 ms |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        with args.append.open("a", encoding="utf-8") as out:
            out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
