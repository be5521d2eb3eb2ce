"""Rules that were too loose: a used ticket refunded, a drawer opened for play money."""

from __future__ import annotations

import json

import pytest
from conftest import Client, RpcError, TillProcess
from sims import PrinterSim, wait_for


def sell_tickets(client: Client) -> dict:
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="100", quantity=2)  # two admission tickets
    client.call("sale.add", sale_id=sale_id, plu="300")
    total = client.call("sale.get", sale_id=sale_id)["total"]
    return client.call("sale.pay", sale_id=sale_id, method="cash", amount=total)


def ticket_lines(sale: dict) -> list[dict]:
    return [line for line in sale["sale"]["lines"] if line.get("ticket_codes")]


@pytest.mark.parametrize("allowed", [False, True])
def test_a_ticket_scanned_in_is_not_refunded_unless_the_venue_allows_it(
    short_tmp, reliability, allowed
):
    config = {"refunds": {"allow_used_tickets": True}} if allowed else None
    till = TillProcess(short_tmp, config).start()
    client = till.client()
    try:
        sale = sell_tickets(client)
        (tickets,) = ticket_lines(sale)
        used = tickets["ticket_codes"][0]
        assert client.call("scan.submit", code=used)["kind"] == "ticket"

        try:
            client.call("sale.refund", receipt_no=sale["receipt_no"], method="cash")
            refused = None
        except RpcError as exc:
            refused = exc
        if not allowed:
            reliability.record(
                "rules",
                "refund of a receipt whose ticket was scanned in at the entrance",
                tries=1,
                figure=f"refused: {refused.reason if refused else 'no, refunded'}",
            )
            assert refused is not None and refused.reason == "ticket-already-used"
            assert refused.error["data"]["codes"] == [used]
            # The lines without a used ticket can still go back.
            goods = next(line for line in sale["sale"]["lines"] if not line.get("ticket_codes"))
            refund = client.call(
                "sale.refund",
                receipt_no=sale["receipt_no"],
                method="cash",
                lines=[{"line_id": goods["line_id"]}],
            )
            assert refund["refund"]["total"] == goods["amount"]
        else:
            assert refused is None
    finally:
        client.close()
        till.kill()


def test_a_training_sale_never_opens_the_cash_drawer(short_tmp, reliability):
    printer = PrinterSim(short_tmp)
    till = TillProcess(
        short_tmp,
        {"devices.printer": {"kind": "network", "address": printer.address}},
    ).start()
    client = till.client()
    try:
        wait_for(lambda: client.call("status.get")["devices"]["printer"]["state"] == "ok", 15)
        training = client.call("sale.open", training=True)["sale_id"]
        client.call("sale.add", sale_id=training, plu="300")
        practice = client.call("sale.pay", sale_id=training, method="cash", amount=5000)
        wait_for(lambda: len(printer.receipts()) >= 1, 10, what="the training receipt")
        real = client.call("sale.open")["sale_id"]
        client.call("sale.add", sale_id=real, plu="300")
        sold = client.call("sale.pay", sale_id=real, method="cash", amount=5000)

        def drawer_entries() -> list[dict]:
            content = client.call("admin.journal_export", format="jsonl")["content"]
            entries = [json.loads(line) for line in content.splitlines()]
            return [e["body"] for e in entries if e["type"] == "drawer"]

        wait_for(lambda: drawer_entries(), 10, what="the real sale's drawer kick")
        wait_for(lambda: printer.state()["drawer_kicks"] >= 1, 10, what="the kick at the printer")
        reliability.record(
            "rules",
            "cash training sale (ÖVNINGSKVITTO) with drawer_after_cash",
            tries=1,
            figure=f"drawer opened for receipts {[d['receipt_no'] for d in drawer_entries()]}",
        )
        assert [d["receipt_no"] for d in drawer_entries()] == [sold["receipt_no"]]
        assert practice["receipt_no"] != sold["receipt_no"]
        assert printer.state()["drawer_kicks"] == 1
    finally:
        client.close()
        till.kill()
        printer.stop()
