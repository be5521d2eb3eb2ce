"""X and Z reports: totals of everything since the last Z report, as pure functions.

An X report is a look at the running day; a Z report closes it and is
journaled with its own number and the grand total carried forward, so the
day's figures can never be produced twice or changed afterwards.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .journal.entry import Entry
from .money import vat_breakdown


def summarize(entries: Iterable[Entry]) -> dict[str, Any]:
    sales = refunds = voids = tickets = training = 0
    gross_sales = gross_refunds = 0
    by_method: dict[str, int] = defaultdict(int)
    vat_amounts: list[tuple[int, int]] = []
    receipts: list[int] = []
    first_at = last_at = None
    for entry in entries:
        body = entry.body
        if entry.type not in ("sale", "refund", "void"):
            continue
        if body.get("training"):
            # Training receipts are kept in the journal but are not takings.
            training += 1
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
        "voids": voids,
        "training_receipts": training,
        "gross_sales": gross_sales,
        "gross_refunds": gross_refunds,
        "net": gross_sales - gross_refunds,
        "tickets": tickets,
        "payments": dict(sorted(by_method.items())),
        "vat": [v.as_dict() for v in vat_breakdown(vat_amounts)],
        "first_receipt_no": min(receipts) if receipts else None,
        "last_receipt_no": max(receipts) if receipts else None,
        "period_start": first_at,
        "period_end": last_at,
    }


def period_totals(last_z: Entry | None, since: list[Entry]) -> dict[str, Any]:
    """A report's figures: the period since the last Z, and the grand total carried on."""
    summary = summarize(since)
    carried = last_z.body["grand_total"] if last_z else 0
    return {**summary, "grand_total": carried + summary["net"]}
