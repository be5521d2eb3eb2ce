"""Every event a socket subscriber gets is a D-Bus signal with the same facts, in the same order.

One daemon, driven through a day's worth of kinds (a sale with lines added
and removed, a void, a refund, card payments approved and declined with and
without waiting, the scanner's garbage and an article, a receipt printed and
the drawer opened, integrated Swish declined and paid, the server lost and
back with a ticket sold and scanned meanwhile, sync draining), is watched
by a socket subscriber to every topic and by a D-Bus client. Between two
marker sales the two lists must be equal event by event: a kind on one API
and not the other fails the test.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest
from conftest import Client as RpcClient
from conftest import RpcError, TillProcess
from dbussims import Bus, Client, wait_for_name
from sims import Backend, PrinterSim, Proxy, ScannerSim, TerminalSim, online_config, wait_for

from tilld.api.dbus_schema import EVENT_SIGNAL_BY_NAME, dbus_words, event_facts
from tilld.events import KINDS

WAIT_S = 30


def plain(value: Any) -> Any:
    """What D-Bus can carry of a JSON value: nulls left out of records and lists."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [plain(v) for v in value if v is not None]
    return value


def from_socket(event: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    facts = plain(event_facts(event))
    # Over D-Bus a message names D-Bus methods (the same words otherwise).
    if isinstance(facts.get("message"), str):
        facts["message"] = dbus_words(facts["message"])
    if isinstance(facts.get("data"), dict) and "message" in facts["data"]:
        facts["data"]["message"] = dbus_words(facts["data"]["message"])
    return event["topic"], event["event"], facts


def from_dbus(member: str, body: list[Any]) -> tuple[str, str, dict[str, Any]] | None:
    signal = EVENT_SIGNAL_BY_NAME.get(member)
    if signal is None:
        return None  # PropertiesChanged, or a contract signal's first shape
    facts = dict(body[-1])
    if signal.lead is not None:
        facts[signal.lead] = body[0]
    return signal.topic, signal.kind, facts


@pytest.fixture
def rig(short_tmp):
    bus = Bus(short_tmp)
    backend = Backend(short_tmp)
    server = Proxy(short_tmp, "server", backend.address)
    internet = Proxy(short_tmp, "internet", None)
    terminal = TerminalSim(short_tmp)
    scanner = ScannerSim(short_tmp)
    printer = PrinterSim(short_tmp)
    config = online_config(backend, server, internet)
    config["api"] = {"dbus": bus.address}
    config["devices.terminal"] = {"kind": "zvt-tcp", "address": terminal.address}
    config["devices.scanner"] = {"kind": "serial", "port": str(scanner.link)}
    config["devices.printer"] = {"kind": "network", "address": printer.address}
    config["card"] = {"offline_limit": 250}
    till = TillProcess(short_tmp, config).start()
    client = till.client()
    wait_for(lambda: client.call("status.get")["mode"] == "online", WAIT_S, what="online")
    wait_for(
        lambda: client.call("status.get")["payment_methods"]["card"]["available"],
        WAIT_S,
        what="the terminal",
    )
    dbus = Client(bus.address)
    wait_for_name(dbus)
    yield till, client, dbus, server, terminal, scanner, backend
    dbus.close()
    client.close()
    till.kill()
    for sim in (printer, scanner, terminal, internet, server, backend, bus):
        sim.stop()


def _socket_until(events: RpcClient, marker: str) -> list[dict[str, Any]]:
    seen = []
    while True:
        event = events.next_event()
        seen.append(event)
        if event["topic"] == "sale" and event["event"] == "opened" and event["sale_id"] == marker:
            return seen


def _dbus_until(dbus: Client, marker: str) -> list[tuple[str, list[Any]]]:
    seen = []
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            member, body = dbus.signals.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no SaleOpened for {marker} within {WAIT_S} s") from None
        seen.append((member, body))
        if member == "SaleOpened" and body[0]["sale_id"] == marker:
            return seen


def _after_marker(events: list[tuple[str, str, dict[str, Any]]], marker: str) -> list:
    for index, (topic, kind, facts) in enumerate(events):
        if (topic, kind) == ("sale", "opened") and facts["sale_id"] == marker:
            return events[index + 1 :]
    raise AssertionError(f"marker {marker} not seen")


def _sell(client: RpcClient, plu: str, method: str = "cash", **pay: Any) -> dict[str, Any]:
    sale_id = client.call("sale.open")["sale_id"]
    total = client.call("sale.add", sale_id=sale_id, plu=plu)["sale"]["total"]
    return client.call("sale.pay", sale_id=sale_id, method=method, amount=total, **pay)


def test_socket_events_and_dbus_signals_match_event_by_event(rig):
    till, client, dbus, server, terminal, scanner, backend = rig
    events = till.client()
    events.call("events.subscribe")
    start = client.call("sale.open")["sale_id"]

    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    second = client.call("sale.add", sale_id=sale_id, plu="301")["line_id"]
    client.call("sale.remove", sale_id=sale_id, line_id=second)
    paid = client.call("sale.pay", sale_id=sale_id, method="cash", amount=5000)
    voided = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=voided, plu="300")
    client.call("sale.void", sale_id=voided, reason="customer left")
    client.call("sale.refund", receipt_no=paid["receipt_no"], method="cash")

    _sell(client, "302", "card")
    terminal.set(decision="decline")
    with pytest.raises(RpcError):
        _sell(client, "300", "card")
    terminal.set(decision="hold")
    started = _sell(client, "301", "card", wait=False)
    assert started["status"] == "running" and started["payment_id"]
    terminal.set(decision="approve")

    # Integrated Swish: declined by the customer, then paid.
    sale_id = client.call("sale.open")["sale_id"]
    total = client.call("sale.add", sale_id=sale_id, plu="300")["sale"]["total"]
    for status in ("DECLINED", "PAID"):
        pending = client.call("sale.pay", sale_id=sale_id, method="swish", amount=total)
        backend.request("POST", f"/control/swish/{pending['swish']['id']}", {"status": status})
        wait_for(
            lambda: (
                client.call("sale.get", sale_id=sale_id)["payments"] == []
                or client.call("sale.get", sale_id=sale_id)["state"] == "completed"
            ),
            WAIT_S,
            what=f"Swish {status}",
        )

    scanner.send_bytes(b"\xc3\x28\r")
    scanner.scan("7310000000001")

    server.set_mode("refuse")
    wait_for(lambda: not client.call("status.get")["server"], WAIT_S, what="server down")
    ticket = _sell(client, "100")
    code = ticket["sale"]["lines"][0]["ticket_codes"][0]
    client.call("scan.submit", code=code)
    server.set_mode("pass")
    wait_for(
        lambda: client.call("status.get")["pending"] == {"entries": 0, "tickets": 0, "scans": 0},
        WAIT_S,
        what="the sync to drain",
    )
    end = client.call("sale.open")["sale_id"]

    on_socket = _after_marker([from_socket(e) for e in _socket_until(events, end)], start)
    on_dbus = _after_marker(
        [s for s in (from_dbus(m, b) for m, b in _dbus_until(dbus, end)) if s is not None], start
    )
    events.close()
    for index, (socket_event, dbus_event) in enumerate(zip(on_socket, on_dbus, strict=False)):
        assert socket_event == dbus_event, index
    assert len(on_socket) == len(on_dbus)
    seen = {(topic, kind) for topic, kind, _ in on_socket}
    # The day above shows these kinds at least; each passed through both APIs.
    for kind in [
        ("sale", "opened"),
        ("sale", "line-added"),
        ("sale", "line-removed"),
        ("sale", "voided"),
        ("sale", "completed"),
        ("sale", "refunded"),
        ("sale", "payment"),
        ("terminal", "started"),
        ("terminal", "status"),
        ("terminal", "approved"),
        ("terminal", "declined"),
        ("job", "finished"),
        ("device", "error"),
        ("device", "printed"),
        ("scan", "scanned"),
        ("scan", "registered"),
        ("mode", "changed"),
        ("sync", "progress"),
    ]:
        assert kind in seen, kind
    assert seen <= {(t, k) for t, kinds in KINDS.items() for k in kinds}
    # A ticket's scan is told before its registration, in words for the gate.
    scan_kinds = [(k, f) for t, k, f in on_socket if t == "scan" and f.get("code") == code]
    assert [k for k, _ in scan_kinds] == ["scanned", "registered"]
    assert scan_kinds[1][1]["detail"] == "Valid: let the guest in."
