"""Selling over the real socket: tilld runs as a subprocess on a fresh state folder."""

from __future__ import annotations

import pytest
from conftest import RpcError


def sell(client, *items, method="cash", amount=None):
    sale_id = client.call("sale.open")["sale_id"]
    for plu, quantity in items:
        client.call("sale.add", sale_id=sale_id, plu=plu, quantity=quantity)
    total = client.call("sale.get", sale_id=sale_id)["total"]
    return client.call("sale.pay", sale_id=sale_id, method=method, amount=amount or total)


def test_cash_sale_gives_change_receipt_number_and_vat_per_rate(client):
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300", quantity=2)  # Kaffe 35,00 at 12 %
    client.call("sale.add", sale_id=sale_id, barcode="7310000000032")  # Vykort 15,00 at 25 %
    paid = client.call("sale.pay", sale_id=sale_id, method="cash", amount=10000)
    assert paid["status"] == "completed"
    assert paid["change"] == 10000 - 8500
    assert paid["receipt_no"] == 1
    sale = paid["sale"]
    assert sale["state"] == "completed" and sale["total"] == 8500
    assert sale["vat"] == [
        {"rate": 25, "gross": 1500, "net": 1200, "vat": 300},
        {"rate": 12, "gross": 7000, "net": 6250, "vat": 750},
    ]
    assert client.call("sale.get", sale_id=sale_id)["receipt_no"] == 1


def test_split_tender_completes_only_when_fully_paid(client):
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="401")  # 249,00
    first = client.call("sale.pay", sale_id=sale_id, method="cash", amount=10000)
    assert first["status"] == "accepted" and first["sale"]["due"] == 14900
    with pytest.raises(RpcError) as refused:
        client.call("sale.add", sale_id=sale_id, plu="300")
    assert refused.value.reason == "sale-has-payments"
    second = client.call(
        "sale.pay", sale_id=sale_id, method="swish-manual", amount=14900, reference="SW123"
    )
    assert second["status"] == "completed"
    methods = [(p["method"], p["amount"]) for p in second["sale"]["payments"]]
    assert methods == [("cash", 10000), ("swish-manual", 14900)]


def test_non_cash_overpayment_is_refused(client):
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    with pytest.raises(RpcError) as refused:
        client.call("sale.pay", sale_id=sale_id, method="swish-manual", amount=3600)
    assert refused.value.reason == "amount-exceeds-due"


def test_receipt_numbers_form_one_series_across_sales_and_refunds(client):
    assert sell(client, ("300", 1))["receipt_no"] == 1
    assert sell(client, ("301", 1))["receipt_no"] == 2
    refund = client.call("sale.refund", receipt_no=1, method="cash")
    assert refund["receipt_no"] == 3
    assert refund["refund"]["total"] == 3500
    assert sell(client, ("302", 1))["receipt_no"] == 4


def test_partial_refund_never_exceeds_what_was_sold(client):
    sell(client, ("300", 3))
    client.call("sale.refund", receipt_no=1, lines=[{"line_id": 1, "quantity": 2}], method="cash")
    with pytest.raises(RpcError) as refused:
        client.call(
            "sale.refund", receipt_no=1, lines=[{"line_id": 1, "quantity": 2}], method="cash"
        )
    assert refused.value.reason == "refund-exceeds-sale"
    last = client.call("sale.refund", receipt_no=1, method="cash")
    assert last["refund"]["lines"][0]["quantity"] == 1
    with pytest.raises(RpcError) as nothing_left:
        client.call("sale.refund", receipt_no=1, method="cash")
    assert nothing_left.value.reason == "nothing-to-refund"


def test_ticket_articles_get_unique_codes_matching_the_pattern_and_are_pending(client):
    paid = sell(client, ("100", 3), ("101", 1))
    codes = [c for line in paid["sale"]["lines"] for c in line["ticket_codes"]]
    assert len(codes) == 4 and len(set(codes)) == 4
    import re

    assert all(re.fullmatch(r"^TK[0-9A-Z]{8,32}$", c) for c in codes)
    pending = client.call("sync.pending")
    assert sorted(t["code"] for t in pending["tickets"]) == sorted(codes)
    assert all(t["state"] == "pending" for t in pending["tickets"])
    assert client.call("status.get")["pending"]["tickets"] == 4


def test_event_ticket_refused_offline_naming_the_fallback_article(client):
    sale_id = client.call("sale.open")["sale_id"]
    with pytest.raises(RpcError) as refused:
        client.call("sale.add", sale_id=sale_id, plu="200")
    data = refused.value.error["data"]
    assert data["reason"] == "event-ticket-offline"
    assert data["fallback_plu"] == "100" and data["fallback_name"] == "Entré vuxen"
    assert "Entré vuxen" in data["message"]


def test_card_and_integrated_swish_are_refused_with_a_reason_not_faked(client):
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    for method, reason in (
        ("card", "terminal-unavailable"),
        ("swish", "method-unavailable-offline"),
    ):
        with pytest.raises(RpcError) as refused:
            client.call("sale.pay", sale_id=sale_id, method=method, amount=3500)
        assert refused.value.reason == reason
    status = client.call("status.get")
    assert status["payment_methods"]["card"] == {
        "available": False,
        "reason": "terminal-unavailable",
        "message": status["payment_methods"]["card"]["message"],
    }
    assert client.call("sale.get", sale_id=sale_id)["paid"] == 0


def test_void_is_journaled_and_the_sale_is_gone(client):
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    voided = client.call("sale.void", sale_id=sale_id, reason="customer changed mind")
    assert voided["state"] == "voided"
    assert client.call("sale.get", sale_id=sale_id)["state"] == "voided"
    with pytest.raises(RpcError) as gone:
        client.call("sale.add", sale_id=sale_id, plu="300")
    assert gone.value.reason == "unknown-sale"
    entries = client.call("sync.pending")["entries"]
    assert [e["type"] for e in entries] == ["void"]


def test_remove_line_before_payment(client):
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    line = client.call("sale.add", sale_id=sale_id, plu="301")["line_id"]
    sale = client.call("sale.remove", sale_id=sale_id, line_id=line)["sale"]
    assert [ln["plu"] for ln in sale["lines"]] == ["300"] and sale["total"] == 3500


def test_catalog_search_ignores_case_and_diacritics(client):
    names = [a["name"] for a in client.call("catalog.search", query="ost")["articles"]]
    assert names == ["Ostsmörgås", "Vykort Östersjön"]
    by_plu = client.call("catalog.search", query="300")["articles"]
    assert by_plu[0]["name"] == "Kaffe"
    by_barcode = client.call("catalog.search", query="9789100000001")["articles"]
    assert [a["plu"] for a in by_barcode] == ["401"]


def test_x_report_sums_and_z_report_closes_the_day(client):
    sell(client, ("300", 2))
    sell(client, ("400", 1), method="swish-manual")
    client.call("sale.refund", receipt_no=1, lines=[{"line_id": 1, "quantity": 1}], method="cash")
    x = client.call("admin.report", kind="x")
    assert (x["sales"], x["refunds"], x["net"]) == (2, 1, 7000 + 1500 - 3500)
    assert x["payments"] == {"cash": 3500, "swish-manual": 1500}
    z = client.call("admin.report", kind="z")
    assert z["z_no"] == 1 and z["grand_total"] == 5000
    after = client.call("admin.report", kind="x")
    assert after["sales"] == 0 and after["grand_total"] == 5000
    sell(client, ("300", 1))
    assert client.call("admin.report", kind="z")["z_no"] == 2


def test_sale_event_reaches_a_subscriber(till, client):
    listener = till.client()
    listener.call("events.subscribe", topics=["sale"])
    paid = sell(client, ("300", 1))
    # The sale's whole life, in order: opened, its line, then completed.
    kinds = [listener.next_event() for _ in range(3)]
    assert [e["event"] for e in kinds] == ["opened", "line-added", "completed"]
    assert kinds[1]["lines"][0]["plu"] == "300" and kinds[1]["total"] == 3500
    event = kinds[2]
    assert event["topic"] == "sale" and event["event"] == "completed"
    assert event["receipt_no"] == paid["receipt_no"] and event["total"] == 3500
    listener.close()
