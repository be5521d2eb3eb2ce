#!/usr/bin/python3
"""A cashier screen's outage routine over D-Bus with GLib's Gio (docs/ui-guide.md).

Runs with Debian's python3-gi and nothing of tilld's: every call, signal
and property goes through Gio.DBusProxy. Against the demo (`make demo`
prints its bus address as `dbus=...`):

    /usr/bin/python3 docs/examples/cashier_screen.py 'unix:path=.tilld-demo/dbus.sock'

It sells for cash; takes a card payment while the demo terminal holds (the
call answers at once, the terminal's texts arrive, the cashier cancels, a
second payment is approved as a signal); switches the demo's server off and
watches the mode and the pending counts; is refused an event ticket and
sells its fallback article, read through LastRefusal; captures a scan; and
switches the server back on, waiting until the pending counts reach zero
through PropertiesChanged alone. Each step prints one JSON line; the exit
status is 0 when every step held. tests/test_dbus_gio.py runs it.
"""

from __future__ import annotations

import json
import sys
import time

from gi.repository import Gio, GLib

BUS_NAME = "org.tilld.Till1"
OBJECT_PATH = "/org/tilld/Till1"
INTERFACE = "org.tilld.Till1.Till"
WAIT_S = 30  # how long a screen waits for the till before saying so
CALL_MS = 2000  # no tilld method waits on a person or a peer: keep it short


class Till:
    """One proxy: method calls, the signals seen so far, the properties as signalled."""

    def __init__(self, address: str) -> None:
        flags = (
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
            | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
        )
        connection = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
        self.proxy = Gio.DBusProxy.new_sync(
            connection, Gio.DBusProxyFlags.NONE, None, BUS_NAME, OBJECT_PATH, INTERFACE, None
        )
        self.signals: list[tuple[str, object]] = []
        self.proxy.connect("g-signal", self._on_signal)

    def _on_signal(self, _proxy, _sender, name, parameters) -> None:
        self.signals.append((name, parameters.unpack()))

    def call(self, method: str, signature: str = "()", *args: object) -> dict:
        reply = self.proxy.call_sync(
            method, GLib.Variant(signature, args), Gio.DBusCallFlags.NONE, CALL_MS, None
        )
        return reply.unpack()[0]

    def refused(self, method: str, signature: str, *args: object) -> tuple[str, str, dict]:
        """Call expecting a refusal: (error name, message, details from LastRefusal)."""
        try:
            self.call(method, signature, *args)
        except GLib.Error as error:
            name = Gio.DBusError.get_remote_error(error)
            Gio.DBusError.strip_remote_error(error)
            return name, error.message, self.call("LastRefusal")
        raise AssertionError(f"{method} was not refused")

    def prop(self, name: str) -> object:
        value = self.proxy.get_cached_property(name)  # kept current by PropertiesChanged
        return None if value is None else value.unpack()

    def wait(self, what: str, ready) -> object:
        """Run the main loop until ``ready()`` answers something; bounded."""
        context = GLib.MainContext.default()
        deadline = time.monotonic() + WAIT_S
        tick = GLib.timeout_add(100, lambda: True)  # wakes the loop to look at the clock
        try:
            while True:
                found = ready()
                if found is not None and found is not False:
                    return found
                if time.monotonic() > deadline:
                    raise AssertionError(f"waited {WAIT_S} s for {what}")
                context.iteration(True)
        finally:
            GLib.source_remove(tick)

    def signal(self, name: str, match=lambda args: True) -> tuple:
        """The first signal called ``name`` whose arguments match (taken from the list)."""

        def found():
            for index, (got, args) in enumerate(self.signals):
                if got == name and match(args):
                    del self.signals[index]
                    return args
            return None

        return self.wait(f"signal {name}", found)


def step(name: str, **facts: object) -> None:
    print(json.dumps({"step": name, **facts}, ensure_ascii=False), flush=True)


def open_sale(till: Till, plu: str) -> tuple[str, int]:
    sale_id = till.call("SaleOpen")["sale_id"]
    added = till.call("SaleAdd", "(sa{sv})", sale_id, {"plu": GLib.Variant("s", plu)})
    return sale_id, added["sale"]["total"]


def card_payment(till: Till, sale_id: str, total: int) -> str:
    """Start a card payment: the answer is at once; the payment id may come as a signal."""
    started = till.call("SalePay", "(ssx)", sale_id, "card", total)
    payment_id = started.get("payment_id")
    if payment_id is None:
        (facts,) = till.signal("TerminalStarted", lambda a: a[0]["sale_id"] == sale_id)
        payment_id = facts["payment_id"]
    step("card-started", status=started.get("status"), payment_id=payment_id)
    return payment_id


def routine(till: Till) -> None:
    till.wait("the till online", lambda: till.prop("Mode") == "online")
    till.wait(
        "the card terminal",
        lambda: till.call("StatusGet")["payment_methods"]["card"]["available"],
    )

    # 1. A cash sale.
    sale_id, total = open_sale(till, "300")
    paid = till.call("SalePay", "(ssx)", sale_id, "cash", total + 1500)
    step("cash", status=paid["status"], change=paid["change"], receipt_no=paid["receipt_no"])

    # 2. A card payment while the customer takes their time; the cashier cancels it.
    till.call("DemoSet", "(ss)", "card", "hold")
    sale_id, total = open_sale(till, "301")
    payment_id = card_payment(till, sale_id, total)
    (text,) = till.signal("TerminalStatus", lambda a: a[0]["payment_id"] == payment_id)
    step("terminal-text", text=text.get("text", ""))
    till.call("SaleCancelPayment", "(ss)", sale_id, payment_id)
    till.signal("TerminalAborted", lambda a: a[0]["payment_id"] == payment_id)
    (refused,) = till.signal("JobRefused", lambda a: a[0].get("payment_id") == payment_id)
    step("card-cancelled", reason=refused["reason"])

    # ... and pays after all: the approval arrives as signals.
    payment_id = card_payment(till, sale_id, total)
    till.signal("TerminalStatus", lambda a: a[0]["payment_id"] == payment_id)
    till.call("DemoSet", "(ss)", "card", "visa")  # the customer presents the card
    till.signal("TerminalApproved", lambda a: a[0]["payment_id"] == payment_id)
    _sale, summary = till.signal("SaleCompleted", lambda a: a[0] == sale_id)
    step("card-approved", payment_id=payment_id, receipt_no=summary["receipt_no"])

    # 3. The server goes away: the offline icon turns red from signals.
    till.call("DemoSet", "(ss)", "server", "down")
    (mode,) = till.signal("ModeChanged", lambda a: a[0] != "online")
    till.wait("ServerReachable false", lambda: till.prop("ServerReachable") is False)
    step("offline", mode=mode, since=till.prop("ModeSince"))

    # 4. An event ticket is refused offline; its fallback article is sold instead.
    sale_id = till.call("SaleOpen")["sale_id"]
    options = {"plu": GLib.Variant("s", "200")}
    error, message, details = till.refused("SaleAdd", "(sa{sv})", sale_id, options)
    step("refused", error=error, message=message, fallback_plu=details.get("fallback_plu"))
    fallback = {"plu": GLib.Variant("s", details["fallback_plu"])}
    added = till.call("SaleAdd", "(sa{sv})", sale_id, fallback)
    paid = till.call("SalePay", "(ssx)", sale_id, "cash", added["sale"]["total"])
    codes = [c for line in paid["sale"]["lines"] for c in line.get("ticket_codes", [])]
    till.wait("PendingTickets to rise", lambda: (till.prop("PendingTickets") or 0) > 0)
    step("sold-offline", tickets=till.prop("PendingTickets"), entries=till.prop("PendingEntries"))

    # 5. The guest is let in: the scan is captured for later.
    scan = till.call("ScanSubmit", "(s)", codes[0])
    till.signal("Scanned", lambda a: a[0] == codes[0])
    till.wait("PendingScans to rise", lambda: (till.prop("PendingScans") or 0) > 0)
    step("scan-captured", status=scan["status"], scans=till.prop("PendingScans"))

    # 6. The server is back: everything drains, told by signals alone.
    till.call("DemoSet", "(ss)", "server", "up")
    till.signal("ModeChanged", lambda a: a[0] == "online")
    for name in ("PendingEntries", "PendingTickets", "PendingScans"):
        till.wait(f"{name} to reach 0", lambda name=name: till.prop(name) == 0)
    step("synced", last_success=till.prop("LastSyncSuccess"))


def main() -> int:
    address = sys.argv[1] if len(sys.argv) > 1 else "unix:path=.tilld-demo/dbus.sock"
    routine(Till(address))
    step("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
