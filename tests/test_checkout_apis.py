"""sale.checkout over the real socket and the real bus: the answer, the refusals, nothing journaled.

tilld runs as a subprocess without a back-end or a terminal (so the server
is unreachable and card payments have no terminal); the D-Bus till talks on
a private dbus-daemon. What was journaled is read back through the API
(status.get's journal head, sale.list, admin.journal_export).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import RpcError, TillProcess
from dbussims import Bus, Client, DBusCallError, options, wait_for_name

from tilld.api.dbus_types import to_vardict

BASKET = [{"plu": "300", "quantity": 2}, {"barcode": "7310000000018"}]  # 2 x 3500 + 3000


def _journal(client) -> list[dict[str, Any]]:
    content = client.call("admin.journal_export", format="jsonl")["content"]
    return [json.loads(line) for line in content.splitlines() if line.strip()]


def test_a_checkout_over_the_socket_answers_like_sale_pay_and_refusals_record_nothing(till):
    client = till.client()
    done = client.call(
        "sale.checkout",
        lines=BASKET,
        payments=[
            {"method": "swish-manual", "amount": 4000, "reference": "0701234567"},
            {"method": "cash", "amount": 10000},
        ],
    )
    assert done["status"] == "completed" and done["receipt_no"] == 1
    assert done["change"] == 4000
    sale = done["sale"]
    assert sale["state"] == "completed" and sale["total"] == 10000 and sale["due"] == 0
    assert [(line["plu"], line["quantity"]) for line in sale["lines"]] == [("300", 2), ("301", 1)]
    assert [p["method"] for p in sale["payments"]] == ["swish-manual", "cash"]
    assert sale["payments"][0]["reference"] == "0701234567"
    assert client.call("sale.get", sale_id=done["sale_id"])["receipt_no"] == 1
    (entry,) = [e for e in _journal(client) if e["type"] == "sale"]
    assert entry["body"]["sale_id"] == done["sale_id"] and entry["body"]["receipt_no"] == 1
    head = client.call("status.get")["journal"]["last_seq"]

    refusals = [
        ([{"plu": "no-such-plu"}], [{"method": "cash", "amount": 100}], "unknown-article"),
        ([{"plu": "200"}], [{"method": "cash", "amount": 35000}], "event-ticket-offline"),
        (BASKET, [{"method": "swish", "amount": 10000}], "method-unavailable-offline"),
        (BASKET, [{"method": "card", "amount": 10000}], "terminal-unavailable"),
        (BASKET, [{"method": "swish-manual", "amount": 10001}], "amount-exceeds-due"),
        (BASKET, [{"method": "cash", "amount": 9999}], "checkout-not-covered"),
    ]
    for lines, payments, reason in refusals:
        with pytest.raises(RpcError) as refused:
            client.call("sale.checkout", lines=lines, payments=payments)
        assert refused.value.code == -32010 and refused.value.reason == reason, reason
    data = refused.value.error["data"]
    assert (data["total"], data["paid"], data["due"]) == (10000, 9999, 1)
    for params in (
        {"lines": [{"plu": "300", "barcode": "7310000000018"}], "payments": BASKET[:0]},
        {"lines": [], "payments": [{"method": "cash", "amount": 100}]},
        {"lines": BASKET, "payments": [{"method": "cheque", "amount": 100}]},
    ):
        with pytest.raises(RpcError) as invalid:
            client.call("sale.checkout", **params)
        assert invalid.value.code == -32602
    status = client.call("status.get")
    assert status["journal"]["last_seq"] == head
    assert status["open_sales"] == 0 and client.call("sale.list")["sales"] == []
    client.close()


@pytest.fixture
def dbus_till(short_tmp):
    bus = Bus(short_tmp)
    process = TillProcess(short_tmp, {"api": {"dbus": bus.address}}).start()
    client = Client(bus.address)
    wait_for_name(client)
    yield client
    client.close()
    process.kill()
    bus.stop()


def _checkout(dbus: Client, lines, payments, **opts: Any) -> dict[str, Any]:
    args = [[to_vardict(line) for line in lines], [to_vardict(p) for p in payments]]
    if opts:
        return dbus.call("SaleCheckout", "aa{sv}aa{sv}a{sv}", *args, options(**opts))
    return dbus.call("SaleCheckout", "aa{sv}aa{sv}", *args)


def test_sale_checkout_over_dbus_completes_signals_and_refuses_with_named_errors(dbus_till):
    dbus = dbus_till
    done = _checkout(dbus, BASKET, [{"method": "cash", "amount": 20000}])
    assert done["status"] == "completed" and done["receipt_no"] == 1 and done["change"] == 10000
    assert done["sale"]["total"] == 10000
    signal = dbus.wait_signal("SaleCompleted", lambda body: body[0] == done["sale_id"])
    assert signal[1]["receipt_no"] == 1 and signal[1]["total"] == 10000
    training = _checkout(dbus, BASKET, [{"method": "cash", "amount": 10000}], training=True)
    assert training["receipt_no"] == 2
    export = dbus.call("AdminJournalExport", "a{sv}", options(format="jsonl"))["content"]
    bodies = [json.loads(line)["body"] for line in export.splitlines() if line.strip()]
    assert [b.get("training", False) for b in bodies if "receipt_no" in b] == [False, True]
    head = dbus.call("StatusGet")["journal"]["last_seq"]

    with pytest.raises(DBusCallError) as short:
        _checkout(dbus, BASKET, [{"method": "cash", "amount": 5000}])
    assert short.value.name == "org.tilld.Till1.Error.CheckoutNotCovered"
    assert "5000 öre is missing" in short.value.text
    last = dbus.call("LastRefusal")
    assert (last["total"], last["paid"], last["due"]) == (10000, 5000, 5000)
    with pytest.raises(DBusCallError) as training_card:
        _checkout(dbus, BASKET, [{"method": "card", "amount": 10000}], training=True)
    assert training_card.value.name == "org.tilld.Till1.Error.TrainingRealMoney"
    with pytest.raises(DBusCallError) as unknown:
        _checkout(dbus, [{"plu": "no-such-plu"}], [{"method": "cash", "amount": 1}])
    assert unknown.value.name == "org.tilld.Till1.Error.UnknownArticle"
    assert "CatalogSearch" in unknown.value.text  # its words name D-Bus methods
    with pytest.raises(DBusCallError) as invalid:
        _checkout(dbus, [{"plu": "300", "quantity": 0}], [{"method": "cash", "amount": 1}])
    assert invalid.value.name == "org.freedesktop.DBus.Error.InvalidArgs"
    assert "lines.0.quantity: must be an integer from 1 to 999" in invalid.value.text
    status = dbus.call("StatusGet")
    assert status["journal"]["last_seq"] == head and status["open_sales"] == 0
