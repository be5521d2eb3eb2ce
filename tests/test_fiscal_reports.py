"""X and Z reports of a scripted day against figures worked out by hand (SKVFS 2014:9 7 kap.).

tilld runs as a process with the control unit and printer simulators (a copy
and a manual drawer opening need the printer). The day: the float at the
start and one change, two sales (cash with change, manual Swish), a training
sale, a copy, a partial cash return, a drawer opening without a sale and a
voided sale. Every figure below is computed by hand from the demo catalog's
prices, not by tilld's code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sims import wait_for
from test_fiscal_controlunit import Site, _build, _teardown


@pytest.fixture
def site(short_tmp: Path):
    site = _build(short_tmp)
    yield site
    _teardown(site)


def _sale(site: Site, *lines: tuple[str, int], method: str, training: bool = False) -> dict:
    client = site.client
    sale_id = client.call("sale.open", training=training)["sale_id"]
    for plu, quantity in lines:
        client.call("sale.add", sale_id=sale_id, plu=plu, quantity=quantity)
    total = client.call("sale.get", sale_id=sale_id)["total"]
    paid = 10000 if method == "cash" and total < 10000 else total
    reference = {"reference": "0701234567"} if method == "swish-manual" else {}
    return client.call("sale.pay", sale_id=sale_id, method=method, amount=paid, **reference)


def test_x_and_z_reports_hold_every_item_with_hand_computed_figures(site: Site) -> None:
    client = site.client
    start = client.call("float.set", amount=50000)
    assert (start["previous"], start["change"]) == (0, 50000)
    # A: 2 x Kaffe 35,00 (12 %) + Vykort 15,00 (25 %) = 85,00, paid 100,00 cash.
    a = _sale(site, ("300", 2), ("400", 1), method="cash")
    assert a["sale"]["total"] == 8500 and a["change"] == 1500
    # B: Utställningskatalog 249,00 (6 %), manual Swish.
    b = _sale(site, ("401", 1), method="swish-manual")
    assert b["sale"]["total"] == 24900
    # Training: Ostsmörgås 65,00 — counted apart, not takings.
    _sale(site, ("302", 1), method="cash", training=True)
    wait_for(lambda: len(site.printed()) == 3, 10, what="three receipts printed")
    client.call("receipt.print", receipt_no=a["receipt_no"], copy=True)
    # A partial return: the Vykort, 15,00, in cash.
    postcard = next(line for line in a["sale"]["lines"] if line["plu"] == "400")
    client.call(
        "sale.refund",
        receipt_no=a["receipt_no"],
        lines=[{"line_id": postcard["line_id"]}],
        method="cash",
        reason="changed mind",
    )
    client.call("drawer.open")
    change = client.call("float.set", amount=60000, note="påfyllning")
    assert (change["previous"], change["change"]) == (50000, 10000)
    voided = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=voided, plu="301")
    client.call("sale.void", sale_id=voided, reason="mistake")

    x = client.call("admin.report", kind="x")
    expected = {
        "kind": "x",
        "till_id": "till-test",
        "seller": "Testmuseet AB",
        "org_number": "556677-8899",
        "sales": 2,
        "refunds": 1,
        "receipts": 3,
        "voids": 1,
        "training_receipts": 1,
        "training_amount": 6500,
        "gross_sales": 33400,
        "gross_refunds": 1500,
        "net": 31900,
        "tickets": 0,
        # cash 85,00 - 15,00 returned; Swish 249,00
        "payments": {"cash": 7000, "swish-manual": 24900},
        "vat": [
            {"rate": 25, "gross": 0, "net": 0, "vat": 0},
            # 70,00 at 12 %: VAT 70,00 * 12/112 = 7,50
            {"rate": 12, "gross": 7000, "net": 6250, "vat": 750},
            # 249,00 at 6 %: VAT 249,00 * 6/106 = 14,0943... -> 14,09
            {"rate": 6, "gross": 24900, "net": 23491, "vat": 1409},
        ],
        "copies": {"count": 1, "amount": 8500},
        "drawer_openings_without_sale": 1,
        "float": {"start": 0, "end": 60000},
        "discounts": {"count": 0, "amount": 0},
        "price_changes": 0,
        "control_unit": site.unit.unit_id,
        "first_receipt_no": a["receipt_no"],
        "last_receipt_no": a["receipt_no"] + 3,  # A, B, training, return
        "grand_total_sales": 33400,
        "grand_total_refunds": 1500,
        "grand_total": 31900,
    }
    assert {key: x[key] for key in expected} == expected
    assert [(f["amount"], f["change"]) for f in x["float_changes"]] == [
        (50000, 50000),
        (60000, 10000),
    ]
    assert x["printed_at"] and x["period_start"] and x["period_end"]

    z = client.call("admin.report", kind="z")
    assert z["z_no"] == 1
    assert {key: z[key] for key in expected if key != "kind"} == {
        k: v for k, v in expected.items() if k != "kind"
    }
    # No card terminal here: the Z says so, and the day is closed all the same.
    assert z["terminal"] == {"closed": False, "why": "no card terminal is configured"}
    # Both reports also came out of the receipt printer, with the same figures.
    assert x["printed"]["state"] == z["printed"]["state"] == "printed"
    wait_for(
        lambda: any("Z-DAGRAPPORT NR 1" in p for p in site.printed()), 10, what="the Z on paper"
    )
    paper = next(p for p in site.printed() if "Z-DAGRAPPORT NR 1" in p)
    for label, figure in [
        ("Kontrollenhet", site.unit.unit_id),
        ("Försäljning (2 kvitton)", "334,00"),
        ("Returer (1)", "-15,00"),
        ("Netto", "319,00"),
        ("Växelkassa vid start", "0,00"),
        ("Växelkassa vid slut", "600,00"),
        ("Lådöppningar utan köp", "1"),
        ("Kopior (1)", "85,00"),
        ("Övningskvitton (1)", "65,00"),
        ("Grand total netto", "319,00"),
    ]:
        assert any(line.startswith(label) and line.endswith(" " + figure) for line in paper), (
            label,
            figure,
            paper,
        )
    assert "Kortterminal: dagen ej avslutad" in paper
    # The next day starts from the Z: nothing sold yet, grand totals and float carried.
    after = client.call("admin.report", kind="x")
    assert (after["sales"], after["net"], after["copies"]) == (0, 0, {"count": 0, "amount": 0})
    assert (after["grand_total_sales"], after["grand_total_refunds"], after["grand_total"]) == (
        33400,
        1500,
        31900,
    )
    assert after["float"] == {"start": 60000, "end": 60000}
