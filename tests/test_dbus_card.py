"""Card payments and refunds over D-Bus: the call answers at once, the rest arrives as signals.

The till runs with the ZVT terminal simulator on TCP and a private
dbus-daemon enforcing the shipped policy; the terminal is scripted to hold
(the customer has not presented a card) so any call that waited for the
customer would not come back until the test let it.
"""

from __future__ import annotations

import pytest
from conftest import TillProcess
from dbus_fast import Variant
from dbussims import Bus, Client, DBusCallError, wait_for_name
from sims import Backend, Proxy, TerminalSim, online_config, wait_for


@pytest.fixture
def site(short_tmp):
    bus = Bus(short_tmp)
    backend = Backend(short_tmp)
    server = Proxy(short_tmp, "server", backend.address)
    internet = Proxy(short_tmp, "internet", None)
    terminal = TerminalSim(short_tmp)
    config = online_config(backend, server, internet)
    config["api"] = {"dbus": bus.address}
    config["devices.terminal"] = {"kind": "zvt-tcp", "address": terminal.address}
    till = TillProcess(short_tmp, config).start()
    dbus = Client(bus.address)
    wait_for_name(dbus)
    wait_for(
        lambda: dbus.call("StatusGet")["payment_methods"]["card"]["available"],
        20,
        what="the terminal",
    )
    yield dbus, terminal
    dbus.close()
    till.kill()
    for sim in (terminal, internet, server, backend, bus):
        sim.stop()


def _sale(dbus: Client) -> tuple[str, int]:
    sale_id = dbus.call("SaleOpen")["sale_id"]
    added = dbus.call("SaleAdd", "sa{sv}", sale_id, {"plu": _s("300")})
    return sale_id, added["sale"]["total"]


def _s(value: str) -> Variant:
    return Variant("s", value)


def test_a_held_card_payment_answers_at_once_and_ends_as_signals(site):
    dbus, terminal = site
    terminal.set(decision="hold")
    sale_id, total = _sale(dbus)
    started = dbus.call("SalePay", "ssx", sale_id, "card", total)
    assert started["status"] == "running" and started["operation"] == "sale.pay"
    payment_id = started["payment_id"]
    (text,) = dbus.wait_signal("TerminalStatus", lambda b: b[0]["payment_id"] == payment_id)
    assert text["sale_id"] == sale_id and text["text"]
    # A second card payment meanwhile is refused at once, with the details kept.
    other, other_total = _sale(dbus)
    with pytest.raises(DBusCallError) as busy:
        dbus.call("SalePay", "ssx", other, "card", other_total)
    assert busy.value.reason == "terminal-busy"
    assert dbus.call("LastRefusal")["method"] == "SalePay"

    terminal.set(decision="approve")
    (approved,) = dbus.wait_signal("TerminalApproved", lambda b: b[0]["payment_id"] == payment_id)
    assert approved["amount"] == total
    (finished,) = dbus.wait_signal("JobFinished", lambda b: b[0]["payment_id"] == payment_id)
    assert finished["job_id"] == started["job_id"]
    assert finished["result"]["status"] == "completed"
    receipt_no = finished["result"]["receipt_no"]
    dbus.wait_signal("SaleCompleted", lambda b: b[0] == sale_id)

    # The refund to the card waits on the customer too: the same way.
    terminal.set(decision="hold")
    refund = dbus.call("SaleRefund", "xs", receipt_no, "card")
    assert refund["status"] == "running" and refund["payment_id"]
    dbus.wait_signal("TerminalStatus", lambda b: b[0]["payment_id"] == refund["payment_id"])
    terminal.set(decision="approve")
    dbus.wait_signal("TerminalRefunded", lambda b: b[0]["payment_id"] == refund["payment_id"])
    (done,) = dbus.wait_signal("JobFinished", lambda b: b[0]["job_id"] == refund["job_id"])
    assert done["result"]["refund"]["total"] == total


def test_a_held_card_payment_is_cancelled_from_dbus(site):
    dbus, terminal = site
    terminal.set(decision="hold")
    sale_id, total = _sale(dbus)
    payment_id = dbus.call("SalePay", "ssx", sale_id, "card", total)["payment_id"]
    dbus.wait_signal("TerminalStatus", lambda b: b[0]["payment_id"] == payment_id)
    cancelled = dbus.call("SaleCancelPayment", "ss", sale_id, payment_id)
    assert cancelled == {"payment_id": payment_id, "status": "cancel-requested"}
    dbus.wait_signal("TerminalAborted", lambda b: b[0]["payment_id"] == payment_id)
    (refused,) = dbus.wait_signal("JobRefused", lambda b: b[0]["payment_id"] == payment_id)
    assert refused["reason"] and refused["data"]["reason"] == refused["reason"]
    assert dbus.call("SaleGet", "s", sale_id)["due"] == total  # nothing was charged


def test_a_sale_whose_card_payment_is_at_the_terminal_refuses_changes_at_once(site):
    """Its lock is held until the customer is done: a call to change the sale
    would wait on the customer, so it is refused at once, and cancel still works."""
    dbus, terminal = site
    terminal.set(decision="hold")
    sale_id, total = _sale(dbus)
    started = dbus.call("SalePay", "ssx", sale_id, "card", total)
    assert started["status"] == "running"
    for method, signature, args in (
        ("SaleAdd", "sa{sv}", (sale_id, {"plu": _s("300")})),
        ("SaleVoid", "ss", (sale_id, "the customer left")),
        ("SalePay", "ssx", (sale_id, "cash", total)),
    ):
        with pytest.raises(DBusCallError) as running:
            dbus.call(method, signature, *args)
        assert running.value.reason == "card-payment-running", method
        assert "SaleCancelPayment" in running.value.text
    assert dbus.call("SaleGet", "s", sale_id)["due"] == total  # nothing changed
    dbus.call("SaleCancelPayment", "ss", sale_id, started["payment_id"])
    (refused,) = dbus.wait_signal("JobRefused", lambda b: b[0]["job_id"] == started["job_id"])
    assert refused["reason"] == "card-aborted"
    added = dbus.call("SaleAdd", "sa{sv}", sale_id, {"plu": _s("300")})
    assert added["sale"]["total"] == 2 * total
