"""A Z report closes the card terminal's batch, for both protocols.

tilld runs as a process with the ZVT or nexo simulator and a printer
simulator. Offline card payments are taken with the internet down; then the
terminal gets its line back while tilld's internet stays down, so the flush
that runs when the internet returns does not happen and only the Z can
forward them. What the terminal forwarded is read from the simulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sims import PrinterSim, wait_for
from test_card_payments import CardSite, build_site, pay_card, protocol  # noqa: F401


@pytest.fixture
def z_site(short_tmp: Path, protocol: str):  # noqa: F811
    printer = PrinterSim(short_tmp)
    site = build_site(short_tmp, protocol=protocol)
    site.restart_with({"devices.printer": {"kind": "network", "address": printer.address}})
    wait_for(lambda: site.status()["devices"]["printer"]["state"] == "ok", 20, what="printer")
    wait_for(lambda: site.status()["payment_methods"]["card"]["available"], 20, what="terminal")
    yield site, printer
    site.client.close()
    site.till.kill()
    for sim in (site.terminal, site.internet, site.server, site.backend, printer):
        sim.stop()


def take_offline_payments(site: CardSite, n: int) -> int:
    site.internet_down()
    total = 0
    for _ in range(n):
        reply = pay_card(site.client)
        assert reply["card"]["offline"] is True
        total += reply["sale"]["total"]
    budget = site.status()["offline_card"]
    assert (budget["stored"], budget["stored_amount"]) == (n, total)
    assert site.terminal.state()["offline_stored"] == n
    return total


def z_paper(printer: PrinterSim, z_no: int) -> list[str]:
    title = f"Z-DAGRAPPORT NR {z_no}"

    def printed() -> list[list[str]]:
        return [r["lines"] for r in printer.receipts() if not r["partial"]]

    wait_for(lambda: any(title in lines for lines in printed()), 20, what="the Z on paper")
    return next(lines for lines in printed() if title in lines)


def test_a_z_forwards_the_terminals_offline_payments_and_resets_the_budget(z_site) -> None:
    site, printer = z_site
    total = take_offline_payments(site, 2)
    # The terminal reaches its acquirer again; tilld's internet stays down,
    # so nothing but the Z asks the terminal to forward.
    site.terminal.set(online=True)
    assert site.terminal.state()["offline_stored"] == 2

    z = site.client.call("admin.report", kind="z")

    assert z["terminal"] == {
        "closed": True,
        "sent": 2,
        "count": 2,
        "total": total,
        "offline_before": 2,
        "offline_after": 0,
    }
    assert site.terminal.state()["offline_stored"] == 0
    budget = site.status()["offline_card"]
    assert (budget["stored"], budget["stored_amount"], budget["oldest_age_s"]) == (0, 0, None)
    entries = site.journal()
    flush = [e["body"] for e in entries if e["type"] == "terminal-flush"]
    assert [(f["why"], f["offline_before"], f["offline_after"]) for f in flush] == [
        ("z-report", 2, 0)
    ]
    z_entry = next(e for e in entries if e["type"] == "z-report")
    assert z_entry["body"]["terminal"] == z["terminal"]
    paper = z_paper(printer, z["z_no"])
    assert "Kortterminal: dagen avslutad" in paper
    kr = f"{total // 100},{total % 100:02d}"
    assert any(line.startswith("Kortköp (2)") and line.endswith(" " + kr) for line in paper), paper
    assert any(line.startswith("Offline skickade") and line.endswith(" 2") for line in paper)
    # The reset survives a restart: it lives in the journal's counters.
    site.restart()
    assert site.status()["offline_card"]["stored"] == 0


def test_a_terminal_that_cannot_close_is_named_in_the_z_and_the_day_closes(z_site) -> None:
    site, printer = z_site
    total = take_offline_payments(site, 1)
    # The terminal is still offline: it cannot forward nor reconcile.
    z = site.client.call("admin.report", kind="z")

    assert z["z_no"] == 1 and z["sales"] == 1
    assert z["terminal"]["closed"] is False
    why = z["terminal"]["why"]
    assert why.startswith("the card terminal refused") and "1 payment(s) still stored" in why
    # Nothing forwarded, so the budget still counts the stored payment.
    budget = site.status()["offline_card"]
    assert (budget["stored"], budget["stored_amount"]) == (1, total)
    assert site.terminal.state()["offline_stored"] == 1
    assert [e for e in site.journal() if e["type"] == "terminal-flush"] == []
    paper = z_paper(printer, 1)
    assert "Kortterminal: dagen ej avslutad" in paper
