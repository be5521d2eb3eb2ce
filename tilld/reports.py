"""X and Z reports: totals of everything since the last Z report, as pure functions.

An X report is a look at the running day; a Z report closes it and is
journaled with its own number and the grand totals carried forward, so the
day's figures can never be produced twice or changed afterwards.

What a daily report holds follows SKVFS 2014:9 7 kap. (docs/fiscal.md has
the list and where each item comes from): the grand totals of sales, returns
and net; sales per VAT rate with the VAT; per payment method; the number of
receipts; the float (växelkassa) and its changes; drawer openings without a
sale; copies, training receipts and returns, each as a number and an
amount; discounts and price changes; the control unit. The header (seller,
organisation number, date and time, Z number, till) is the use case's
(tilld/reporting.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .journal.entry import Entry
from .money import vat_breakdown

# Drawer openings that go with a payment; any other reason is an opening without a sale.
DRAWER_WITH_A_SALE = ("cash-payment", "cash-refund")


def summarize(entries: Iterable[Entry]) -> dict[str, Any]:
    sales = refunds = voids = tickets = training = training_amount = 0
    gross_sales = gross_refunds = 0
    drawer_openings = 0
    by_method: dict[str, int] = defaultdict(int)
    vat_amounts: list[tuple[int, int]] = []
    receipts: list[int] = []
    copies: dict[int, int] = {}  # receipt_no -> its amount (negative for a return)
    floats: list[dict[str, Any]] = []
    unit_id: str | None = None
    first_at = last_at = None
    for entry in entries:
        body = entry.body
        if entry.type == "print":
            if body.get("copy"):
                copies[body["receipt_no"]] = body.get("amount", 0)
            continue
        if entry.type == "drawer":
            if body.get("reason") not in DRAWER_WITH_A_SALE:
                drawer_openings += 1
            continue
        if entry.type == "float":
            floats.append(
                {"amount": body["amount"], "change": body["change"], "at": entry.created_at}
            )
            continue
        if entry.type == "control-code":
            unit_id = body["unit_id"]
            continue
        if entry.type not in ("sale", "refund", "void"):
            continue
        if body.get("training"):
            # Training receipts are kept in the journal but are not takings.
            if entry.type != "void":
                training += 1
                training_amount += (1 if entry.type == "sale" else -1) * body["total"]
            continue
        first_at = first_at or entry.created_at
        last_at = entry.created_at
        if entry.type == "void":
            voids += 1
            continue
        sign = 1 if entry.type == "sale" else -1
        receipts.append(body["receipt_no"])
        if entry.type == "sale":
            sales += 1
            gross_sales += body["total"]
        else:
            refunds += 1
            gross_refunds += body["total"]
        for line in body["lines"]:
            vat_amounts.append((sign * line["amount"], line["vat_rate"]))
            if line["kind"] != "goods":
                tickets += sign * line["quantity"]
        for payment in body["payments"]:
            by_method[payment["method"]] += sign * payment["amount"]
    return {
        "sales": sales,
        "refunds": refunds,
        "receipts": sales + refunds,
        "voids": voids,
        "training_receipts": training,
        "training_amount": training_amount,
        "gross_sales": gross_sales,
        "gross_refunds": gross_refunds,
        "net": gross_sales - gross_refunds,
        "tickets": tickets,
        "payments": dict(sorted(by_method.items())),
        "vat": [v.as_dict() for v in vat_breakdown(vat_amounts)],
        "copies": {"count": len(copies), "amount": sum(copies.values())},
        "drawer_openings_without_sale": drawer_openings,
        "float_changes": floats,
        # tilld has no discounts and no price changes at the till: prices come
        # from the catalog, so both are always none (and said so).
        "discounts": {"count": 0, "amount": 0},
        "price_changes": 0,
        "control_unit": unit_id,
        "first_receipt_no": min(receipts) if receipts else None,
        "last_receipt_no": max(receipts) if receipts else None,
        "period_start": first_at,
        "period_end": last_at,
    }


def period_totals(last_z: Entry | None, since: list[Entry]) -> dict[str, Any]:
    """A report's figures: the period since the last Z, and the grand totals carried on.

    The float at the period's start is the one the last Z ended with; each
    registration of the float in the period changes it."""
    summary = summarize(since)
    before = last_z.body if last_z else {}
    float_start = before.get("float", {}).get("end", 0)
    float_end = summary["float_changes"][-1]["amount"] if summary["float_changes"] else float_start
    return {
        **summary,
        "float": {"start": float_start, "end": float_end},
        "grand_total_sales": before.get("grand_total_sales", 0) + summary["gross_sales"],
        "grand_total_refunds": before.get("grand_total_refunds", 0) + summary["gross_refunds"],
        "grand_total": before.get("grand_total", 0) + summary["net"],
    }
