"""The gate's answer does not wait for the back-end.

A ticket's `scanned` event (with its local check) goes out once the scan is
journaled; its registration with the back-end is a later `registered` event.
Real parts: tilld as a process, its scanner on a real pty (the scanner
simulator), the reference back-end behind the fault proxy. The proxy holds
the back-end's answers ("slow" with a long delay) until the test lets them
through by switching it back to "pass", so "before the back-end answers" is
a fact of the test, not a matter of timing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import Client, TillProcess
from sims import Backend, Proxy, ScannerSim, online_config, wait_for

HELD_S = 120  # the proxy holds every byte this long, unless the test releases it
# The till waits for the back-end longer than any event may take to come
# (EVENT_WAIT_S): a `scanned` that waited for the registration to give up
# would miss its deadline, and the registration is answered, not timed out.
TIMEOUT_S = 60
EVENT_WAIT_S = 15


class Gate:
    def __init__(self, base: Path) -> None:
        self.backend = Backend(base)
        self.server = Proxy(base, "server", self.backend.address)
        self.scanner = ScannerSim(base)
        config = online_config(self.backend, self.server, None)
        config["backend"]["timeout_s"] = TIMEOUT_S
        # One probe at start: a held probe must not take the server fact down
        # while the registration is held.
        config["connectivity"]["probe_interval_s"] = 60
        config["devices.scanner"] = {
            "kind": "serial",
            "port": str(self.scanner.link),
            "debounce_ms": 0,
        }
        self.till = TillProcess(base, config).start()
        self.client = self.till.client()
        wait_for(lambda: self.client.call("status.get")["mode"] == "online", 20, what="online")
        wait_for(
            lambda: self.client.call("status.get")["devices"]["scanner"]["state"] == "ok",
            15,
            what="scanner ok",
        )
        self.events = Client(self.till.socket_path, timeout=EVENT_WAIT_S)
        self.events.call("events.subscribe", topics=["scan"])

    def next_scan_event(self) -> dict[str, Any]:
        return self.events.next_event()

    def hold_backend(self) -> None:
        self.server.set_mode("slow", delay_s=HELD_S)

    def release_backend(self) -> None:
        self.server.set_mode("pass")

    def stop(self) -> None:
        self.events.close()
        self.client.close()
        self.till.stop()
        for process in (self.scanner, self.server, self.backend):
            process.stop()


@pytest.fixture
def gate(short_tmp: Path):
    g = Gate(short_tmp)
    yield g
    g.stop()


def test_the_next_scanned_goes_out_while_the_backend_holds_the_first_registration(gate: Gate):
    gate.hold_backend()
    gate.scanner.scan("TKGATEFIRST001")
    first = gate.next_scan_event()
    assert (first["event"], first["code"]) == ("scanned", "TKGATEFIRST001")
    assert first["local_check"] == "not-known-locally" and first["status"] == "captured"
    # The first scan's registration is held at the proxy; the next guest's
    # scan is journaled and told all the same (before: it waited for the answer).
    gate.scanner.scan("TKGATEFIRST001")
    again = gate.next_scan_event()
    assert (again["event"], again["code"]) == ("scanned", "TKGATEFIRST001")
    assert again["local_check"] == "already-scanned"
    gate.release_backend()
    answered = gate.next_scan_event()
    assert (answered["event"], answered["code"]) == ("registered", "TKGATEFIRST001")
    # The back-end's own word on a code it never sold.
    assert answered["scan_id"] == first["scan_id"] and answered["status"] == "unknown"
    # The second passage is registered after the first, as it happened.
    second = gate.next_scan_event()
    assert (second["event"], second["scan_id"]) == ("registered", again["scan_id"])


def test_scan_submit_tells_scanned_before_its_answer_with_the_registration(gate: Gate):
    gate.hold_backend()
    answer: dict[str, Any] = {}
    caller = Client(gate.till.socket_path, timeout=TIMEOUT_S + 10)

    def submit() -> None:
        answer.update(caller.call("scan.submit", code="TKGATECALL0001"))

    thread = threading.Thread(target=submit)
    thread.start()
    try:
        told = gate.next_scan_event()
        assert (told["event"], told["code"]) == ("scanned", "TKGATECALL0001")
        assert told["status"] == "captured"
        # The call waits for the back-end, which has not answered yet.
        assert thread.is_alive() and not answer
    finally:
        gate.release_backend()
        thread.join(TIMEOUT_S + 10)
        caller.close()
    # The answer carries the back-end's word (a code it never sold), not the capture.
    assert answer["scan_id"] == told["scan_id"] and answer["status"] == "unknown"
    registered = gate.next_scan_event()
    assert (registered["event"], registered["scan_id"]) == ("registered", told["scan_id"])
