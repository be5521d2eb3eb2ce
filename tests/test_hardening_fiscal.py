"""Fiscal integrity under attack: every receipt in exactly one Z report.

A Z report closes the day. If sales commit while it is being taken, each of
them must land in that Z or in the next one, never in neither: a receipt
missing from every Z report is takings the venue's books never show.
"""

from __future__ import annotations

import json
import threading

from conftest import TillProcess

RACE_SALES = 300
RACE_Z_REPORTS = 6


def z_reports(till: TillProcess) -> list[dict]:
    client = till.client()
    try:
        exported = client.call("admin.journal_export", format="jsonl")["content"]
    finally:
        client.close()
    entries = [json.loads(line) for line in exported.splitlines()]
    return [e["body"] for e in entries if e["type"] == "z-report"]


def test_every_receipt_lands_in_exactly_one_z_report_while_sales_commit(short_tmp, reliability):
    till = TillProcess(short_tmp).start()
    try:
        receipts: list[int] = []
        progress = threading.Condition()

        def sell() -> None:
            client = till.client()
            try:
                for _ in range(RACE_SALES):
                    sale_id = client.call("sale.open")["sale_id"]
                    client.call("sale.add", sale_id=sale_id, plu="300")
                    paid = client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
                    with progress:
                        receipts.append(paid["receipt_no"])
                        progress.notify()
            finally:
                client.close()

        seller = threading.Thread(target=sell)
        seller.start()
        reporter = till.client()
        taken = 0
        # Z reports spread over the stream of sales, each racing the commits.
        for step in range(1, RACE_Z_REPORTS + 1):
            due = step * RACE_SALES // (RACE_Z_REPORTS + 1)
            with progress:
                progress.wait_for(lambda due=due: len(receipts) >= due, timeout=60)
            if len(receipts) == RACE_SALES:
                break
            reporter.call("admin.report", kind="z")
            taken += 1
        seller.join()
        reporter.call("admin.report", kind="z")  # closes whatever the race left over
        reporter.close()

        reports = z_reports(till)
        reliability.record(
            "fiscal integrity",
            f"Z reports taken while {RACE_SALES} cash sales commit on another connection",
            tries=len(reports),
            figure=f"{sum(z['sales'] for z in reports)} of {len(receipts)} sales in a Z",
        )
        assert taken == RACE_Z_REPORTS, "the sales finished before the Z reports could race them"
        assert sum(z["sales"] for z in reports) == len(receipts) == RACE_SALES
        assert sum(z["gross_sales"] for z in reports) == 3500 * RACE_SALES
        for receipt in receipts:
            holding = [
                z["z_no"]
                for z in reports
                if z["first_receipt_no"] is not None
                and z["first_receipt_no"] <= receipt <= z["last_receipt_no"]
            ]
            assert len(holding) == 1, f"receipt {receipt} is in Z reports {holding}"
    finally:
        till.kill()
