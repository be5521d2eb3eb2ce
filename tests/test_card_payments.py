"""Card payments end to end: tilld, the reference back-end, and the terminal simulators.

The till runs as a process with the terminal on real TCP (and once on a real
pty); the internet is a fault proxy the tests switch off. What the terminal
booked is read from the simulator, so "no double charge" is counted where
the money would be. Every test built on `card_site` runs against both the
ZVT and the nexo simulator: the card rules do not depend on the protocol.
Only the serial test is ZVT's alone (nexo terminals speak HTTP, no serial).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Client, RpcError, TillProcess
from sims import Backend, Proxy, TerminalSim, online_config, wait_for

TEST_PANS = {"visa": "4111111111111111", "maestro": "6759649826438453"}


@dataclass
class CardSite:
    base: Path
    backend: Backend
    server: Proxy
    internet: Proxy
    terminal: TerminalSim
    till: TillProcess
    client: Client
    config: dict[str, Any]

    def status(self) -> dict[str, Any]:
        return self.client.call("status.get")

    def wait_mode(self, mode: str) -> None:
        wait_for(lambda: self.status()["mode"] == mode, 20, what=f"mode {mode}")

    def internet_down(self) -> None:
        self.internet.set_mode("refuse")
        self.terminal.set(online=False)
        self.wait_mode("server-only")

    def internet_up(self) -> None:
        self.terminal.set(online=True)
        self.internet.set_mode("pass")
        self.wait_mode("online")

    def restart(self, kill: bool = True) -> None:
        self.client.close()
        if kill:
            self.till.kill()
        else:
            self.till.stop()
        self.till = TillProcess(self.base, self.config).start()
        self.client = self.till.client()

    def restart_with(self, extra: dict[str, dict[str, Any]]) -> None:
        self.config = {**self.config, **extra}
        self.restart()

    def journal(self) -> list[dict[str, Any]]:
        content = self.client.call("admin.journal_export", format="jsonl")["content"]
        return [json.loads(line) for line in content.splitlines() if line.strip()]


PROTOCOLS = ("zvt", "nexo")


def build_site(base: Path, *, pty: bool = False, protocol: str = "zvt", **card: Any) -> CardSite:
    backend = Backend(base)
    server = Proxy(base, "server", backend.address)
    internet = Proxy(base, "internet", None)
    terminal = TerminalSim(base, pty=pty, protocol=protocol)
    config = online_config(backend, server, internet)
    config["devices.terminal"] = terminal.till_config()
    config["card"] = card or {"offline_limit": 250}
    till = TillProcess(base, config).start()
    site = CardSite(base, backend, server, internet, terminal, till, till.client(), config)
    site.wait_mode("online")
    wait_for(
        lambda: site.status()["payment_methods"]["card"]["available"], 20, what="terminal ready"
    )
    return site


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def card_site(short_tmp: Path, protocol: str):
    site = build_site(short_tmp, protocol=protocol)
    yield site
    site.client.close()
    site.till.kill()
    for sim in (site.terminal, site.internet, site.server, site.backend):
        sim.stop()


def open_sale(client: Client, plu: str = "300") -> tuple[str, int]:
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu=plu)
    return sale_id, client.call("sale.get", sale_id=sale_id)["total"]


def pay_card(client: Client, plu: str = "300") -> dict[str, Any]:
    sale_id, total = open_sale(client, plu)
    return client.call("sale.pay", sale_id=sale_id, method="card", amount=total)


def approved(site: CardSite) -> list[dict[str, Any]]:
    return [b for b in site.terminal.state()["booked"] if b["kind"] == "authorisation"]


def test_an_online_card_sale_is_approved_and_stores_only_the_masked_card(card_site) -> None:
    events = card_site.till.client()
    events.call("events.subscribe", topics=["terminal"])
    reply = pay_card(card_site.client)
    assert reply["status"] == "completed"
    assert reply["card"]["brand"] == "visa" and reply["card"]["offline"] is False
    assert re.fullmatch(r"411111\*+1111", reply["card"]["masked_pan"])
    texts = []
    while True:
        event = events.next_event()
        texts.append(event.get("text"))
        if event["event"] == "approved":
            break
    assert any(t for t in texts if t)  # the terminal's "insert card"-style texts reached the UI
    entries = card_site.journal()
    types = [e["type"] for e in entries]
    assert types == ["card-intent", "card-result", "sale"]
    payment = entries[-1]["body"]["payments"][0]
    assert payment["method"] == "card" and payment["card"]["auth_code"]
    assert len(approved(card_site)) == 1
    events.close()


def test_a_declined_card_charges_nothing_and_the_sale_stays_open(card_site) -> None:
    card_site.terminal.set(decision="decline")
    sale_id, total = open_sale(card_site.client)
    with pytest.raises(RpcError) as refused:
        card_site.client.call("sale.pay", sale_id=sale_id, method="card", amount=total)
    assert refused.value.reason == "card-declined"
    assert card_site.client.call("sale.get", sale_id=sale_id)["due"] == total
    card_site.terminal.set(decision="approve")
    reply = card_site.client.call("sale.pay", sale_id=sale_id, method="card", amount=total)
    assert reply["status"] == "completed"
    assert len(approved(card_site)) == 1


def test_a_customer_abort_is_reported_as_aborted(card_site) -> None:
    card_site.terminal.set(decision="customer-abort")
    with pytest.raises(RpcError) as refused:
        pay_card(card_site.client)
    assert refused.value.reason == "card-aborted"
    assert approved(card_site) == []


def test_offline_visa_is_accepted_and_counted_then_flushed_when_the_internet_returns(
    card_site,
) -> None:
    card_site.internet_down()
    reply = pay_card(card_site.client)
    assert reply["status"] == "completed" and reply["card"]["offline"] is True
    assert card_site.status()["offline_card"]["stored"] == 1
    assert card_site.terminal.state()["offline_stored"] == 1
    card_site.restart()  # the count survives a crash: it lives with the entries
    assert card_site.status()["offline_card"]["stored"] == 1
    card_site.internet_up()
    wait_for(lambda: card_site.status()["offline_card"]["stored"] == 0, 20, what="flush")
    assert card_site.terminal.state()["offline_stored"] == 0
    flush = [e for e in card_site.journal() if e["type"] == "terminal-flush"]
    assert [(f["body"]["offline_before"], f["body"]["offline_after"]) for f in flush] == [(1, 0)]


def test_offline_maestro_approved_anyway_is_reversed_and_both_are_journaled(card_site) -> None:
    card_site.internet_down()
    card_site.terminal.set(brand="maestro", approve_online_only_offline=True)
    sale_id, total = open_sale(card_site.client)
    with pytest.raises(RpcError) as refused:
        card_site.client.call("sale.pay", sale_id=sale_id, method="card", amount=total)
    assert refused.value.reason == "card-brand-online-only"
    booked = card_site.terminal.state()["booked"]
    assert [b["kind"] for b in booked] == ["authorisation", "reversal"]
    assert booked[0]["reversed"] is True
    kinds = [(e["type"], e["body"].get("outcome")) for e in card_site.journal()]
    assert kinds == [
        ("card-intent", None),
        ("card-result", "approved"),
        ("card-reversal", "approved"),
    ]
    assert card_site.status()["offline_card"]["stored"] == 0
    assert card_site.client.call("sale.get", sale_id=sale_id)["due"] == total


def test_the_offline_limit_refuses_before_the_terminal_sees_the_card(
    short_tmp: Path, protocol: str
) -> None:
    site = build_site(short_tmp, protocol=protocol, offline_limit=2)
    try:
        site.internet_down()
        for _ in range(2):
            assert pay_card(site.client)["card"]["offline"] is True
        with pytest.raises(RpcError) as refused:
            pay_card(site.client)
        assert refused.value.reason == "offline-card-limit-reached"
        assert refused.value.error["data"]["limit"] == 2
        assert len(approved(site)) == 2  # the third card never reached the terminal
        methods = site.status()["payment_methods"]
        assert methods["card"] == {
            "available": False,
            "reason": "offline-card-limit-reached",
            "message": methods["card"]["message"],
        }
    finally:
        site.client.close()
        site.till.kill()
        for sim in (site.terminal, site.internet, site.server, site.backend):
            sim.stop()


def test_a_payment_in_doubt_across_a_crash_is_resolved_without_a_second_charge(card_site) -> None:
    card_site.terminal.set(drop="after-approval")
    sale_id, total = open_sale(card_site.client)
    with pytest.raises(RpcError) as doubt:
        card_site.client.call("sale.pay", sale_id=sale_id, method="card", amount=total)
    assert doubt.value.reason == "card-payment-in-doubt"
    assert len(approved(card_site)) == 1  # the terminal did charge the card
    card_site.restart(kill=True)  # and tilld dies before it learns so
    # After the restart tilld asks the terminal and adds the payment to the sale.
    wait_for(
        lambda: card_site.client.call("sale.get", sale_id=sale_id)["state"] == "completed",
        30,
        what="the sale completed by the resolved payment",
    )
    sale = card_site.client.call("sale.get", sale_id=sale_id)
    assert [p["method"] for p in sale["payments"]] == ["card"]
    assert len(approved(card_site)) == 1  # no second charge
    # And the next card payment works normally.
    assert pay_card(card_site.client)["status"] == "completed"
    assert len(approved(card_site)) == 2


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def test_no_full_card_number_reaches_disk_or_logs(card_site) -> None:
    card_site.terminal.set(pan=TEST_PANS["visa"])
    pay_card(card_site.client)
    card_site.internet_down()
    card_site.terminal.set(brand="maestro", approve_online_only_offline=True)
    with pytest.raises(RpcError):
        pay_card(card_site.client)
    state_dir = card_site.till.state_dir
    haystacks = [p for p in state_dir.rglob("*") if p.is_file()]
    haystacks.append(card_site.till.log_path)
    assert any(p.name.endswith("-wal") or p.suffix == ".sqlite" for p in haystacks), haystacks
    for path in haystacks:
        text = path.read_bytes().decode("latin-1")
        # Digit runs inside hex (the entries' hashes) are not card numbers.
        for run in re.findall(r"(?<![0-9A-Fa-f])\d{13,}(?![0-9A-Fa-f])", text):
            for length in range(13, min(19, len(run)) + 1):
                for start in range(len(run) - length + 1):
                    candidate = run[start : start + length]
                    assert candidate not in TEST_PANS.values(), f"{path}: full PAN"
                    if candidate[0] in "3456" and luhn_valid(candidate):
                        pytest.fail(f"{path}: a Luhn-valid {length}-digit run {candidate}")


def test_a_card_sale_over_a_serial_terminal_on_a_pty(short_tmp: Path) -> None:
    site = build_site(short_tmp, pty=True)
    try:
        reply = pay_card(site.client)
        assert reply["status"] == "completed" and reply["card"]["brand"] == "visa"
        assert len(approved(site)) == 1
    finally:
        site.client.close()
        site.till.kill()
        for sim in (site.terminal, site.internet, site.server, site.backend):
            sim.stop()


def test_offline_maestro_declined_by_the_terminal_is_refused_as_online_only(card_site) -> None:
    card_site.internet_down()
    card_site.terminal.set(brand="maestro")  # a well-behaved terminal will not take it offline
    with pytest.raises(RpcError) as refused:
        pay_card(card_site.client)
    assert refused.value.reason == "card-brand-online-only"
    assert approved(card_site) == []
    card_site.terminal.set(brand="visa")
    assert pay_card(card_site.client)["card"]["offline"] is True


def test_the_card_sale_receipt_shows_brand_masked_pan_and_the_terminal_slip(
    short_tmp: Path, protocol: str
) -> None:
    from sims import PrinterSim

    printer = PrinterSim(short_tmp)
    site = build_site(short_tmp, protocol=protocol)
    try:
        site.restart_with({"devices.printer": {"kind": "network", "address": printer.address}})
        wait_for(lambda: site.status()["devices"]["printer"]["state"] == "ok", 20, what="printer")
        wait_for(lambda: site.status()["payment_methods"]["card"]["available"], 20, what="terminal")
        pay_card(site.client)
        wait_for(lambda: printer.receipts(), 20, what="receipt")
        text = "\n".join(printer.receipts()[0]["lines"])
        assert "Kort Visa" in text
        assert "411111******1111" in text and "4111111111111111" not in text
        assert "tilld terminal simulator" in text  # the terminal's slip, kept for the receipt
    finally:
        site.client.close()
        site.till.kill()
        for sim in (site.terminal, site.internet, site.server, site.backend, printer):
            sim.stop()


def refunds_booked(site: CardSite) -> list[dict[str, Any]]:
    return [b for b in site.terminal.state()["booked"] if b["kind"] == "refund"]


def test_a_card_refund_goes_back_to_the_card_on_a_refund_receipt(card_site) -> None:
    sale = pay_card(card_site.client)
    receipt_no = sale["sale"]["receipt_no"]
    total = sale["sale"]["total"]
    reply = card_site.client.call("sale.refund", receipt_no=receipt_no, method="card")
    payment = reply["refund"]["payments"][0]
    assert payment["method"] == "card" and payment["amount"] == total
    assert re.fullmatch(r"411111\*+1111", payment["card"]["masked_pan"])
    assert [b["amount"] for b in refunds_booked(card_site)] == [total]
    types = [e["type"] for e in card_site.journal()]
    assert types[-2:] == ["card-intent", "refund"]  # the receipt closes its own intent
    report = card_site.client.call("admin.report", kind="x")
    assert report["payments"]["card"] == 0 and report["refunds"] == 1
    # Nothing is left to go back to the card, whatever the method asks.
    with pytest.raises(RpcError) as nothing:
        card_site.client.call("sale.refund", receipt_no=receipt_no, method="card")
    assert nothing.value.reason == "nothing-to-refund"
    assert len(refunds_booked(card_site)) == 1


def test_a_card_refund_never_exceeds_what_the_receipt_took_by_card(card_site) -> None:
    client = card_site.client
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300", quantity=2)
    total = client.call("sale.get", sale_id=sale_id)["total"]
    client.call("sale.pay", sale_id=sale_id, method="cash", amount=total // 2)
    done = client.call("sale.pay", sale_id=sale_id, method="card", amount=total - total // 2)
    receipt_no = done["sale"]["receipt_no"]
    line_id = done["sale"]["lines"][0]["line_id"]
    one = [{"line_id": line_id, "quantity": 1}]
    client.call("sale.refund", receipt_no=receipt_no, lines=one, method="card")
    with pytest.raises(RpcError) as refused:
        client.call("sale.refund", receipt_no=receipt_no, lines=one, method="card")
    assert refused.value.reason == "refund-exceeds-card-payment"
    assert refused.value.error["data"]["card_left"] == 0
    assert len(refunds_booked(card_site)) == 1
    assert client.call("sale.refund", receipt_no=receipt_no, lines=one, method="cash")


def test_card_refunds_need_the_internet_and_a_declined_refund_writes_no_receipt(
    card_site,
) -> None:
    receipt_no = pay_card(card_site.client)["sale"]["receipt_no"]
    card_site.internet_down()
    with pytest.raises(RpcError) as offline:
        card_site.client.call("sale.refund", receipt_no=receipt_no, method="card")
    assert offline.value.reason == "card-refund-needs-internet"
    card_site.internet_up()
    card_site.terminal.set(decision="decline")
    with pytest.raises(RpcError) as declined:
        card_site.client.call("sale.refund", receipt_no=receipt_no, method="card")
    assert declined.value.reason == "card-declined"
    assert refunds_booked(card_site) == []
    entries = card_site.journal()
    assert "refund" not in [e["type"] for e in entries]
    assert entries[-1]["type"] == "card-result"
    assert entries[-1]["body"]["outcome"] == "declined"
    card_site.terminal.set(decision="approve")
    card_site.client.call("sale.refund", receipt_no=receipt_no, method="card")
    assert len(refunds_booked(card_site)) == 1


def test_a_card_refund_in_doubt_across_a_crash_is_written_exactly_once(card_site) -> None:
    receipt_no = pay_card(card_site.client)["sale"]["receipt_no"]
    card_site.terminal.set(drop="after-approval")
    with pytest.raises(RpcError) as doubt:
        card_site.client.call("sale.refund", receipt_no=receipt_no, method="card")
    assert doubt.value.reason == "card-payment-in-doubt"
    assert len(refunds_booked(card_site)) == 1  # the money did go back
    card_site.restart(kill=True)  # tilld dies before it learns so

    def refund_receipts() -> list[dict[str, Any]]:
        return [e for e in card_site.journal() if e["type"] == "refund"]

    wait_for(lambda: len(refund_receipts()) == 1, 30, what="the refund receipt after the doubt")
    (refund,) = refund_receipts()
    assert refund["body"]["payments"][0]["method"] == "card"
    assert refund["body"]["original_receipt_no"] == receipt_no
    with pytest.raises(RpcError) as again:
        card_site.client.call("sale.refund", receipt_no=receipt_no, method="card")
    assert again.value.reason == "nothing-to-refund"
    assert len(refunds_booked(card_site)) == 1


def test_a_training_sale_takes_no_card_and_refunds_no_card(card_site) -> None:
    client = card_site.client
    sale_id = client.call("sale.open", training=True)["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    total = client.call("sale.get", sale_id=sale_id)["total"]
    with pytest.raises(RpcError) as card:
        client.call("sale.pay", sale_id=sale_id, method="card", amount=total)
    assert card.value.reason == "training-real-money"
    receipt_no = client.call("sale.pay", sale_id=sale_id, method="cash", amount=total)["sale"][
        "receipt_no"
    ]
    with pytest.raises(RpcError) as refund:
        client.call("sale.refund", receipt_no=receipt_no, method="card")
    assert refund.value.reason == "training-real-money"
    assert card_site.terminal.state()["booked"] == []


def test_a_card_refund_at_the_terminal_blocks_its_own_receipt_only(card_site) -> None:
    client = card_site.client
    first = pay_card(client)["sale"]["receipt_no"]
    second = pay_card(client)["sale"]["receipt_no"]
    card_site.terminal.set(decision="hold", pan="5555555555554444", brand="mastercard")
    outcome: dict[str, Any] = {}
    other = card_site.till.client()

    def refund_at_terminal() -> None:
        try:
            outcome["reply"] = other.call("sale.refund", receipt_no=first, method="card")
        except RpcError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=refund_at_terminal)
    worker.start()
    wait_for(
        lambda: any(
            e["type"] == "card-intent" and e["body"].get("kind") == "refund"
            for e in card_site.journal()
        ),
        10,
        what="the refund at the terminal",
    )
    with pytest.raises(RpcError) as busy:
        client.call("sale.refund", receipt_no=first, method="cash")
    assert busy.value.reason == "refund-in-progress"
    # Another receipt is refunded in cash meanwhile: the customer at the terminal holds up nobody.
    assert client.call("sale.refund", receipt_no=second, method="cash")["refund"]["total"] > 0
    card_site.terminal.set(decision="approve")
    worker.join(30)
    other.close()
    assert "error" not in outcome, outcome
    card = outcome["reply"]["refund"]["payments"][0]["card"]
    # Paid with a Visa, refunded to a Mastercard: allowed, and marked.
    assert card["brand"] == "mastercard" and card["same_card"] is False
    assert len(refunds_booked(card_site)) == 1


def test_a_card_refund_lost_before_the_terminal_booked_it_writes_no_receipt(card_site) -> None:
    receipt_no = pay_card(card_site.client)["sale"]["receipt_no"]
    card_site.terminal.set(drop="before-approval")
    with pytest.raises(RpcError) as doubt:
        card_site.client.call("sale.refund", receipt_no=receipt_no, method="card")
    assert doubt.value.reason == "card-payment-in-doubt"

    def closed() -> list[dict[str, Any]]:
        return [
            e
            for e in card_site.journal()
            if e["type"] == "card-result" and e["body"].get("kind") == "refund"
        ]

    wait_for(lambda: closed(), 30, what="the doubt resolved")
    assert closed()[0]["body"]["outcome"] == "not-booked"
    assert refunds_booked(card_site) == []
    assert "refund" not in [e["type"] for e in card_site.journal()]
    reply = card_site.client.call("sale.refund", receipt_no=receipt_no, method="card")
    assert reply["refund"]["payments"][0]["card"]["same_card"] is True
    assert len(refunds_booked(card_site)) == 1
