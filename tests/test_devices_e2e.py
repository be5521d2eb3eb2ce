"""tilld with its scanner on a real pty and its printer on real TCP, both simulated.

The daemon runs as a subprocess; the simulators are the processes `make
demo` uses. Receipts are read back as the printer simulator decoded them
from ESC/POS bytes, so what is checked is what would be on paper.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Client, RpcError, TillProcess
from sims import PrinterSim, ScannerSim, wait_for

GOLDEN = Path(__file__).parent / "golden"
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")


@dataclass
class Rig:
    till: TillProcess
    client: Client
    scanner: ScannerSim
    printer: PrinterSim


@pytest.fixture
def rig(short_tmp: Path):
    scanner = ScannerSim(short_tmp)
    printer = PrinterSim(short_tmp)
    till = TillProcess(
        short_tmp,
        {
            "till": {
                "seller_name": "Testmuseet AB",
                "org_number": "556677-8899",
                "address": "Storgatan 1, 123 45 Småstad",
            },
            "devices.scanner": {"kind": "serial", "port": str(scanner.link), "debounce_ms": 300},
            "devices.printer": {
                "kind": "network",
                "address": printer.address,
                "status_interval_s": 0.3,
            },
        },
    ).start()
    client = till.client()
    wait_for(lambda: _devices(client) == {"scanner": "ok", "printer": "ok"}, 15, what="devices ok")
    yield Rig(till, client, scanner, printer)
    client.close()
    till.stop()
    printer.stop()
    scanner.stop()


def _devices(client: Client) -> dict[str, str]:
    return {name: d["state"] for name, d in client.call("status.get")["devices"].items()}


def _sell(client: Client, *articles: tuple[str, int], pay: int | None = None) -> dict[str, Any]:
    sale_id = client.call("sale.open")["sale_id"]
    for plu, quantity in articles:
        client.call("sale.add", sale_id=sale_id, plu=plu, quantity=quantity)
    total = client.call("sale.get", sale_id=sale_id)["total"]
    return client.call("sale.pay", sale_id=sale_id, method="cash", amount=pay or total)


def _complete_receipts(printer: PrinterSim) -> list[dict[str, Any]]:
    return [r for r in printer.receipts() if not r["partial"]]


def _normalised(lines: list[str], codes: list[str]) -> str:
    text = "\n".join(lines) + "\n"
    for n, code in enumerate(codes, 1):
        text = text.replace(code, f"<TICKET-{n}>")
    return DATETIME.sub("YYYY-MM-DD HH:MM", text)


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("TILLD_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_a_code_on_the_scanner_is_routed_and_published(rig: Rig) -> None:
    events = rig.till.client()
    events.call("events.subscribe", topics=["scan"])
    rig.scanner.scan("7310000000001")
    event = events.next_event()
    assert event["topic"] == "scan"
    assert event["source"] == "scanner"
    assert event["kind"] == "article"
    assert event["article"]["plu"] == "300"
    rig.scanner.scan("NOT-A-CODE-OF-OURS")
    assert events.next_event()["kind"] == "unknown"
    events.close()


def test_garbage_on_the_scanner_is_a_device_error_event(rig: Rig) -> None:
    events = rig.till.client()
    events.call("events.subscribe", topics=["device", "scan"])
    rig.scanner.send_bytes(b"\xc3\x28\xa0\xa1\r")
    event = events.next_event()
    assert (event["topic"], event["device"], event["event"]) == ("device", "scanner", "error")
    assert "not UTF-8" in event["message"]
    rig.scanner.scan("7310000000018")
    assert events.next_event()["article"]["plu"] == "301"
    assert _devices(rig.client)["scanner"] == "ok"
    events.close()


def test_a_cash_sale_prints_the_swedish_receipt_and_its_tickets(rig: Rig) -> None:
    result = _sell(rig.client, ("100", 2), ("300", 1), ("400", 1), pay=50000)
    assert result["status"] == "completed"
    codes = [c for line in result["sale"]["lines"] for c in line.get("ticket_codes", [])]
    assert len(codes) == 2
    wait_for(lambda: len(_complete_receipts(rig.printer)) == 3, 10, what="receipt and two tickets")
    receipt, *tickets = _complete_receipts(rig.printer)
    _check_golden("receipt_cash_sale.txt", _normalised(receipt["lines"], codes))
    for ticket, code in zip(tickets, codes, strict=True):
        assert f"[QR {code}]" in ticket["lines"]
        assert "PRELIMINÄR BILJETT" in ticket["lines"]  # no server: not yet valid at the gates
    assert rig.printer.state()["drawer_kicks"] == 1  # cash payment


def test_the_receipt_survives_the_code_page_round_trip(rig: Rig) -> None:
    _sell(rig.client, ("302", 1), ("401", 1))
    wait_for(lambda: len(_complete_receipts(rig.printer)) == 1, 10, what="receipt")
    text = "\n".join(_complete_receipts(rig.printer)[0]["lines"])
    for word in ("Ostsmörgås", "Utställningskatalog", "Växel", "Småstad", "TOTALT SEK"):
        assert word in text


def test_a_copy_prints_once_and_says_kopia(rig: Rig) -> None:
    receipt_no = _sell(rig.client, ("300", 1))["receipt_no"]
    wait_for(lambda: len(_complete_receipts(rig.printer)) == 1, 10, what="original")
    reply = rig.client.call("receipt.print", receipt_no=receipt_no, copy=True)
    assert reply["state"] == "printed" and reply["copy"] is True
    copy = _complete_receipts(rig.printer)[1]["lines"]
    assert "KOPIA" in copy
    with pytest.raises(RpcError) as again:
        rig.client.call("receipt.print", receipt_no=receipt_no, copy=True)
    assert again.value.reason == "copy-already-printed"
    with pytest.raises(RpcError) as original:
        rig.client.call("receipt.print", receipt_no=receipt_no)
    assert original.value.reason == "receipt-already-printed"
    assert len(_complete_receipts(rig.printer)) == 2


def test_paper_out_mid_receipt_is_reported_and_reprinted_marked_once_paper_is_back(
    rig: Rig,
) -> None:
    events = rig.till.client()
    events.call("events.subscribe", topics=["device"])
    rig.printer.paper_out_after(200)  # the paper runs out part-way through the receipt
    receipt_no = _sell(rig.client, ("300", 1), ("301", 1))["receipt_no"]
    wait_for(lambda: _devices(rig.client)["printer"] == "error", 10, what="printer error")
    assert rig.client.call("status.get")["devices"]["printer"]["detail"] == "paper-out"
    seen = []
    while not any(e.get("detail") == "paper-out" for e in seen):
        seen.append(events.next_event())
    assert seen[-1]["device"] == "printer" and seen[-1]["state"] == "error"
    assert [r["partial"] for r in rig.printer.receipts()] == [True]
    rig.printer.set_state("ok")  # new roll
    wait_for(lambda: len(_complete_receipts(rig.printer)) == 1, 10, what="reprint")
    reprint = [line.strip() for line in _complete_receipts(rig.printer)[0]["lines"]]
    assert "Ny utskrift efter skrivarfel (2)" in reprint
    assert re.sub(r"\s+", " ", next(ln for ln in reprint if ln.startswith("Kvitto nr"))) == (
        f"Kvitto nr {receipt_no}"
    )
    assert len(_complete_receipts(rig.printer)) == 1  # printed once more, not twice
    jobs = [e for e in _journal(rig.client) if e["type"] == "print"]
    assert [(j["body"]["receipt_no"], j["body"]["attempt"]) for j in jobs] == [
        (receipt_no, 1),
        (receipt_no, 2),
    ]
    events.close()


def test_drawer_open_is_journaled_and_kicks_the_drawer(rig: Rig) -> None:
    reply = rig.client.call("drawer.open")
    assert reply["opened"] is True
    wait_for(lambda: rig.printer.state()["drawer_kicks"] == 1, 10, what="drawer kick")
    drawer = [e for e in _journal(rig.client) if e["type"] == "drawer"]
    assert [e["body"]["reason"] for e in drawer] == ["manual"]


def test_a_pulled_printer_shows_offline_and_recovers_by_itself(rig: Rig) -> None:
    rig.printer.pull()
    wait_for(lambda: _devices(rig.client)["printer"] == "offline", 10, what="printer offline")
    with pytest.raises(RpcError) as refused:
        rig.client.call("drawer.open")
    assert refused.value.reason == "printer-not-ready"
    receipt_no = _sell(rig.client, ("300", 1))["receipt_no"]  # the sale does not wait for paper
    rig.printer.plug()
    wait_for(lambda: _devices(rig.client)["printer"] == "ok", 15, what="printer back")
    wait_for(lambda: len(_complete_receipts(rig.printer)) == 1, 10, what="queued receipt printed")
    lines = _complete_receipts(rig.printer)[0]["lines"]
    assert any(re.fullmatch(rf"Kvitto nr\s+{receipt_no}", line) for line in lines)


def test_an_unplugged_scanner_recovers_by_itself(rig: Rig) -> None:
    rig.scanner.unplug()
    wait_for(lambda: _devices(rig.client)["scanner"] == "offline", 10, what="scanner offline")
    rig.scanner.plug()
    wait_for(lambda: _devices(rig.client)["scanner"] == "ok", 10, what="scanner back")
    events = rig.till.client()
    events.call("events.subscribe", topics=["scan"])
    rig.scanner.scan("7310000000032")
    assert events.next_event()["article"]["plu"] == "400"
    events.close()


def _journal(client: Client) -> list[dict[str, Any]]:
    content = client.call("admin.journal_export", format="jsonl")["content"]
    return [json.loads(line) for line in content.splitlines() if line.strip()]


def test_a_training_receipt_is_marked_and_left_out_of_the_takings(rig: Rig) -> None:
    sale_id = rig.client.call("sale.open", training=True)["sale_id"]
    rig.client.call("sale.add", sale_id=sale_id, plu="100", quantity=1)
    result = rig.client.call("sale.pay", sale_id=sale_id, method="cash", amount=15000)
    assert result["status"] == "completed"
    assert (
        "ticket_codes" not in result["sale"]["lines"][0]
        or not (result["sale"]["lines"][0]["ticket_codes"])
    )
    wait_for(lambda: len(_complete_receipts(rig.printer)) == 1, 10, what="training receipt")
    lines = [line.strip() for line in _complete_receipts(rig.printer)[0]["lines"]]
    assert "ÖVNINGSKVITTO" in lines
    assert "Övningskvitto - inget köp" in lines
    report = rig.client.call("admin.report", kind="x")
    assert (report["sales"], report["gross_sales"], report["training_receipts"]) == (0, 0, 1)


def test_a_copy_asked_for_while_the_original_prints_waits_for_it(rig: Rig) -> None:
    rig.printer.set_state("cover-open")  # the original cannot print yet
    wait_for(lambda: _devices(rig.client)["printer"] == "error", 10, what="printer error")
    receipt_no = _sell(rig.client, ("300", 1))["receipt_no"]
    with pytest.raises(RpcError) as waiting:
        rig.client.call("receipt.print", receipt_no=receipt_no, copy=True)
    assert waiting.value.reason == "receipt-printing"
    rig.printer.set_state("ok")
    wait_for(lambda: len(_complete_receipts(rig.printer)) == 1, 15, what="the original")
    reply = rig.client.call("receipt.print", receipt_no=receipt_no, copy=True)
    assert reply["copy"] is True and reply["state"] == "printed"
    copies = [r for r in _complete_receipts(rig.printer) if "KOPIA" in r["lines"]]
    assert len(copies) == 1 and len(_complete_receipts(rig.printer)) == 2
