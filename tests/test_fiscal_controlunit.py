"""The till's control-unit rules end to end (docs/fiscal.md).

tilld runs as a process with the CleanCash simulator on a real pty, the
printer simulator on TCP and, where card money is involved, the ZVT
terminal simulator with the reference back-end. What the unit registered is
read from the simulator (GET /registrations, POST /verify), what was printed
from the printer simulator, and what the terminal was asked from its
command counts: each check looks where the fact lives.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import DEMO_CATALOG, REPO, Client, RpcError, TillProcess
from controlunit_sim import ControlUnitSim
from sims import Backend, PrinterSim, Proxy, TerminalSim, online_config, wait_for

AUTHORISE = "06 01"
ROUNDS = 8  # kills in the random-kill test  # the ZVT command that takes card money
SELLER = {
    "seller_name": "Testmuseet AB",
    "org_number": "556677-8899",
    "address": "Storgatan 1, 123 45 Småstad",
}


@dataclass
class Site:
    base: Path
    unit: ControlUnitSim
    printer: PrinterSim
    till: TillProcess
    client: Client
    config: dict[str, Any]
    terminal: TerminalSim | None = None

    def status(self) -> dict[str, Any]:
        return self.client.call("status.get")

    def restart(self) -> None:
        """kill -9 and start again on the same state directory."""
        self.client.close()
        self.till.kill()
        self.till = TillProcess(self.base, self.config).start()
        self.client = self.till.client()

    def journal(self) -> list[dict[str, Any]]:
        # Page by page: the kill test's stream of sales outgrows one page (1,000 entries).
        entries: list[dict[str, Any]] = []
        since: int | None = 0
        while since is not None:
            page = self.client.call("admin.journal_export", format="jsonl", since_seq=since)
            entries += [json.loads(line) for line in page["content"].splitlines() if line.strip()]
            since = page["next_since_seq"]
        return entries

    def codes(self) -> list[dict[str, Any]]:
        return [e["body"] for e in self.journal() if e["type"] == "control-code"]

    def printed(self) -> list[list[str]]:
        return [r["lines"] for r in self.printer.receipts() if not r["partial"]]

    def unit_working(self, working: bool = True) -> None:
        wait_for(
            lambda: self.status()["control_unit"]["working"] is working,
            20,
            what=f"control unit working={working}",
        )


def _build(
    base: Path,
    *,
    card: bool = False,
    answer_wait_s: float = 5.0,
    protocol: int = 2,
    catalog: Path | None = None,
) -> Site:
    unit = ControlUnitSim(base, protocol=protocol)
    printer = PrinterSim(base)
    config: dict[str, Any] = {}
    terminal = None
    if card:
        backend = Backend(base)
        server = Proxy(base, "server", backend.address)
        internet = Proxy(base, "internet", None)
        terminal = TerminalSim(base)
        config = online_config(backend, server, internet)
        config["devices.terminal"] = {"kind": "zvt-tcp", "address": terminal.address}
        extra = [backend, server, internet]
    config["till"] = {**config.get("till", {}), **SELLER}
    config["devices.printer"] = {
        "kind": "network",
        "address": printer.address,
        "status_interval_s": 0.3,
    }
    config["devices.controlunit"] = {
        "kind": "cleancash",
        "port": str(unit.link),
        "answer_wait_s": answer_wait_s,
    }
    if catalog is not None:
        config["catalog"] = {"file": str(catalog)}
    till = TillProcess(base, config).start()
    site = Site(base, unit, printer, till, till.client(), config, terminal)
    site._extra = extra if card else []  # type: ignore[attr-defined]
    site.unit_working()
    if card:
        wait_for(lambda: site.status()["payment_methods"]["card"]["available"], 20, what="terminal")
    return site


def _teardown(site: Site) -> None:
    site.client.close()
    site.till.kill()
    for sim in (site.terminal, *site._extra, site.printer, site.unit):  # type: ignore[attr-defined]
        if sim is not None:
            sim.stop()


@pytest.fixture
def site(short_tmp: Path):
    site = _build(short_tmp, answer_wait_s=1.0)
    yield site
    _teardown(site)


@pytest.fixture
def card_site(short_tmp: Path):
    site = _build(short_tmp, card=True, answer_wait_s=1.0)
    yield site
    _teardown(site)


def _open(client: Client, plu: str = "300", training: bool = False) -> tuple[str, int]:
    sale_id = client.call("sale.open", training=training)["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu=plu)
    return sale_id, client.call("sale.get", sale_id=sale_id)["total"]


def _cash_sale(client: Client, plu: str = "300", training: bool = False) -> dict[str, Any]:
    sale_id, total = _open(client, plu, training)
    return client.call("sale.pay", sale_id=sale_id, method="cash", amount=total)


def _registered(site: Site, receipt_no: int) -> list[dict[str, Any]]:
    return [r for r in site.unit.registrations() if r["receipt"]["receipt_number"] == receipt_no]


def _printed_with(site: Site, receipt_no: int) -> list[list[str]]:
    return [p for p in site.printed() if any(line.endswith(f" {receipt_no}") for line in p)]


def _assert_code_on_paper(site: Site, lines: list[str], code: str) -> None:
    assert f"Kontrollenhet: {site.unit.unit_id}" in lines
    assert f"Kontrollkod: {code}" in lines


def test_a_cash_sale_is_registered_and_its_code_printed(site: Site) -> None:
    reply = _cash_sale(site.client)
    receipt_no = reply["receipt_no"]
    control = reply["control"]
    assert control["state"] == "registered" and control["unit_id"] == site.unit.unit_id
    proof = site.unit.verify(control["control_code"])
    assert proof["issued"] is True
    assert proof["receipt"]["receipt_number"] == receipt_no
    assert proof["receipt"]["org_number"] == "5566778899"
    assert proof["receipt"]["kind"] == "normal"
    total = reply["sale"]["total"]
    assert proof["receipt"]["total_ore"] == total
    assert proof["receipt"]["vat_ore"] == {str(v["rate"]): v["vat"] for v in reply["sale"]["vat"]}
    wait_for(lambda: _printed_with(site, receipt_no), 10, what="the receipt on paper")
    (paper,) = _printed_with(site, receipt_no)
    _assert_code_on_paper(site, paper, control["control_code"])
    # Journaled with the receipt: one control-code entry, after the sale.
    assert site.codes() == [
        {
            "receipt_no": receipt_no,
            "kind": "normal",
            "control_code": control["control_code"],
            "unit_id": site.unit.unit_id,
            "sequence": 1,
        }
    ]
    assert len(_registered(site, receipt_no)) == 1


def test_a_checkout_is_registered_and_printed_like_any_other_sale(site: Site) -> None:
    reply = site.client.call(
        "sale.checkout",
        lines=[{"plu": "300", "quantity": 2}, {"plu": "400"}],
        payments=[{"method": "cash", "amount": 10000}],
    )
    receipt_no = reply["receipt_no"]
    control = reply["control"]
    assert control["state"] == "registered" and control["receipt_no"] == receipt_no
    proof = site.unit.verify(control["control_code"])
    assert proof["issued"] is True and proof["receipt"]["kind"] == "normal"
    assert proof["receipt"]["total_ore"] == reply["sale"]["total"] == 8500
    wait_for(lambda: _printed_with(site, receipt_no), 10, what="the receipt on paper")
    (paper,) = _printed_with(site, receipt_no)
    _assert_code_on_paper(site, paper, control["control_code"])
    assert [c["receipt_no"] for c in site.codes()] == [receipt_no]
    assert len(_registered(site, receipt_no)) == 1


def test_copy_training_and_return_receipts_are_registered_with_their_types(site: Site) -> None:
    sale = _cash_sale(site.client)
    receipt_no = sale["receipt_no"]
    wait_for(lambda: _printed_with(site, receipt_no), 10, what="the original")
    copy = site.client.call("receipt.print", receipt_no=receipt_no, copy=True)
    assert copy["state"] == "printed" and copy["copy"] is True
    training = _cash_sale(site.client, training=True)
    refund = site.client.call("sale.refund", receipt_no=receipt_no, method="cash", reason="test")
    wait_for(lambda: len(site.unit.registrations()) == 4, 10, what="four registrations at the unit")
    by_number = {}
    for record in site.unit.registrations():
        receipt = record["receipt"]
        by_number.setdefault(receipt["receipt_number"], []).append(receipt)
    kinds = {n: sorted(r["kind"] for r in rs) for n, rs in by_number.items()}
    assert kinds == {
        receipt_no: ["copy", "normal"],
        training["receipt_no"]: ["training"],
        refund["receipt_no"]: ["normal"],
    }
    (returned,) = by_number[refund["receipt_no"]]
    total = sale["sale"]["total"]
    assert (returned["total_ore"], returned["return_amount_ore"]) == (-total, total)
    # Each printed with its own code: the copy's is not the original's.
    codes = {(c["receipt_no"], c["kind"]): c["control_code"] for c in site.codes()}
    assert len(set(codes.values())) == 4
    wait_for(lambda: len(site.printed()) == 4, 10, what="four receipts on paper")
    papers = site.printed()
    copy_paper = next(p for p in papers if "KOPIA" in p)
    _assert_code_on_paper(site, copy_paper, codes[(receipt_no, "copy")])
    training_paper = next(p for p in papers if "ÖVNINGSKVITTO" in p)
    _assert_code_on_paper(site, training_paper, codes[(training["receipt_no"], "training")])
    refund_paper = next(p for p in papers if "RETURKVITTO" in p)
    _assert_code_on_paper(site, refund_paper, codes[(refund["receipt_no"], "normal")])


def test_a_card_sale_is_refused_while_the_unit_is_down_and_the_terminal_sees_nothing(
    card_site: Site,
) -> None:
    site = card_site
    assert site.terminal is not None
    events = site.till.client()
    events.call("events.subscribe", topics=["device"])
    earlier = _cash_sale(site.client)  # a receipt from before the unit went
    wait_for(lambda: _printed_with(site, earlier["receipt_no"]), 10, what="its paper")
    sale_id, total = _open(site.client)  # opened while the unit still works
    site.unit.unplug()
    site.unit_working(False)
    while True:
        event = events.next_event()
        if event.get("device") == "controlunit" and event.get("state") == "offline":
            break
    reported = {event["detail"]}
    asked_before = site.terminal.state()["commands"].get(AUTHORISE, 0)
    with pytest.raises(RpcError) as refused:
        site.client.call("sale.pay", sale_id=sale_id, method="card", amount=total)
    assert refused.value.reason == "control-unit-unavailable"
    detail = refused.value.error["data"]["detail"]
    # The unit's own error, as the device reported it then or since.
    reported.add(site.status()["devices"]["controlunit"]["detail"])
    assert detail and detail in reported
    assert site.status()["devices"]["controlunit"]["state"] == "offline"
    for method, params in [
        ("sale.open", {}),
        ("sale.refund", {"receipt_no": earlier["receipt_no"], "method": "cash"}),
        ("receipt.print", {"receipt_no": earlier["receipt_no"], "copy": True}),
    ]:
        with pytest.raises(RpcError) as no_receipt:
            site.client.call(method, **params)
        assert no_receipt.value.reason == "control-unit-unavailable", method
    assert site.terminal.state()["commands"].get(AUTHORISE, 0) == asked_before
    assert site.terminal.state()["approved"] == 0
    # Back: the same sale is paid, registered and printed.
    site.unit.plug()
    site.unit_working(True)
    reply = site.client.call("sale.pay", sale_id=sale_id, method="card", amount=total)
    assert reply["status"] == "completed" and reply["control"]["state"] == "registered"
    events.close()


def test_a_unit_lost_after_a_card_approval_registers_and_prints_once_it_is_back(
    card_site: Site,
) -> None:
    site = card_site
    assert site.terminal is not None
    sale_id, total = _open(site.client)
    # Silent: the unit still looks fine until a request goes unanswered.
    site.unit.silent(True)
    reply = site.client.call("sale.pay", sale_id=sale_id, method="card", amount=total)
    assert reply["status"] == "completed"  # the money is taken: the sale completes
    assert reply["control"]["state"] == "waiting"
    receipt_no = reply["receipt_no"]
    assert site.terminal.state()["approved"] == 1
    wait_for(
        lambda: receipt_no in site.status()["control_unit"]["waiting_receipts"],
        10,
        what="the receipt waiting in status",
    )
    assert _printed_with(site, receipt_no) == []  # no paper without a code
    site.unit.silent(False)
    wait_for(lambda: site.status()["control_unit"]["waiting_receipts"] == [], 30, what="registered")
    wait_for(lambda: _printed_with(site, receipt_no), 10, what="the receipt on paper")
    (code,) = [c for c in site.codes() if c["receipt_no"] == receipt_no]
    assert len(_registered(site, receipt_no)) == 1
    assert site.unit.verify(code["control_code"])["issued"] is True
    (paper,) = _printed_with(site, receipt_no)
    _assert_code_on_paper(site, paper, code["control_code"])


def test_kill_9_between_registration_and_journal_leaves_one_code_per_receipt(
    site: Site,
) -> None:
    first = _cash_sale(site.client)
    assert first["control"]["state"] == "registered"
    site.unit.delay(2.0)  # the unit registers after the till's process is gone
    sale_id, total = _open(site.client)
    reply = site.client.call("sale.pay", sale_id=sale_id, method="cash", amount=total)
    assert reply["control"]["state"] == "waiting"
    receipt_no = reply["receipt_no"]
    site.client.close()
    site.till.kill()
    wait_for(lambda: _registered(site, receipt_no), 10, what="the unit registered it")
    site.unit.delay(0)
    site.till = TillProcess(site.base, site.config).start()
    site.client = site.till.client()
    wait_for(lambda: site.status()["control_unit"]["waiting_receipts"] == [], 30, what="resolved")
    codes = site.codes()
    per_receipt = {}
    for code in codes:
        per_receipt.setdefault(code["receipt_no"], []).append(code["control_code"])
    assert sorted(per_receipt) == [first["receipt_no"], receipt_no]
    assert all(len(c) == 1 for c in per_receipt.values()), per_receipt
    registrations = site.unit.registrations()
    assert len(registrations) == 2  # nothing registered twice
    assert site.unit.state()["repeats"] == 1  # the restart asked the unit, with the same number
    for record in registrations:
        number = record["receipt"]["receipt_number"]
        assert per_receipt[number] == [record["control_code"]]
    wait_for(lambda: _printed_with(site, receipt_no), 10, what="printed after the restart")
    assert len(_printed_with(site, receipt_no)) == 1


def test_a_storage_warning_and_a_full_memory_reach_status_events_and_the_log(
    site: Site,
) -> None:
    events = site.till.client()
    events.call("events.subscribe", topics=["device"])
    site.unit.storage("warning")
    reply = _cash_sale(site.client)
    assert reply["control"]["state"] == "registered"

    def controlunit_detail() -> str:
        return site.status()["devices"]["controlunit"]["detail"]

    wait_for(lambda: "storage high-level warning" in controlunit_detail(), 10, what="warning")
    assert site.status()["devices"]["controlunit"]["state"] == "ok"
    while True:
        event = events.next_event()
        if event.get("device") == "controlunit" and "storage" in event.get("detail", ""):
            break
    # Logged at warning level: syslog priority 4 (tilld/logs.py).
    wait_for(lambda: _warning_lines(site.till.log()), 10, what="the warning in the log")
    # Full: the next registration is refused, and the till takes no new sales.
    site.unit.storage("full")
    sale_id, total = _open(site.client)
    reply = site.client.call("sale.pay", sale_id=sale_id, method="cash", amount=total)
    assert reply["control"]["state"] == "waiting"
    wait_for(lambda: "memory full" in controlunit_detail(), 10, what="memory full")
    assert site.status()["devices"]["controlunit"]["state"] == "error"
    with pytest.raises(RpcError) as refused:
        site.client.call("sale.open")
    assert refused.value.reason == "control-unit-unavailable"
    assert "memory full" in refused.value.error["data"]["detail"]
    # Emptied by its supplier: the waiting receipt is registered and sales resume.
    site.unit.reset()
    wait_for(lambda: site.status()["control_unit"]["waiting_receipts"] == [], 20, what="registered")
    site.unit_working(True)
    assert len(_registered(site, reply["receipt_no"])) == 1
    assert _cash_sale(site.client)["control"]["state"] == "registered"
    events.close()


def _warning_lines(log: str) -> list[str]:
    return [
        line
        for line in log.splitlines()
        if line.startswith("<4>") and "storage high-level warning" in line
    ]


def _tillctl(socket_path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tilld.cli.tillctl", "--socket", socket_path, *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )


def test_the_demo_prints_control_codes_and_its_switch_stops_and_resumes_sales(
    short_tmp: Path,
) -> None:
    state = short_tmp / "d"
    demo = subprocess.Popen(
        [sys.executable, "-m", "tilld.cli.daemon", "demo", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    try:
        announced: dict[str, str] = {}
        while "socket" not in announced:
            line = demo.stdout.readline() if demo.stdout else ""
            assert line, "the demo exited before announcing socket="
            key, _, value = line.strip().partition("=")
            announced[key] = value
        client = Client(Path(announced["socket"]))
        wait_for(
            lambda: client.call("status.get")["control_unit"]["working"] is True,
            20,
            what="the demo's control unit",
        )
        reply = _cash_sale(client)
        code = reply["control"]["control_code"]

        def printed() -> list[str]:
            return [
                p.read_text(encoding="utf-8")
                for p in sorted((state / "receipts").glob("*.txt"))
                if not p.name.endswith(".partial.txt")
            ]

        wait_for(lambda: any(code in text for text in printed()), 10, what="the demo's receipt")
        assert any(f"Kontrollkod: {code}" in text for text in printed())
        down = _tillctl(announced["socket"], "demo", "controlunit", "down")
        assert down.returncode == 0, down.stderr
        wait_for(
            lambda: client.call("status.get")["control_unit"]["working"] is False,
            20,
            what="the unit down",
        )
        with pytest.raises(RpcError) as refused:
            client.call("sale.open")
        assert refused.value.reason == "control-unit-unavailable"
        up = _tillctl(announced["socket"], "demo", "controlunit", "up")
        assert up.returncode == 0, up.stderr
        wait_for(
            lambda: client.call("status.get")["control_unit"]["working"] is True,
            20,
            what="the unit back",
        )
        assert _cash_sale(client)["control"]["state"] == "registered"
        client.close()
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(30)
        if demo.stdout:
            demo.stdout.close()


def test_kill_9_at_random_points_of_a_stream_of_sales_registers_each_receipt_once(
    site: Site,
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    for _ in range(ROUNDS):
        killer = threading.Timer(rng.uniform(0.05, 0.6), site.till.kill)
        killer.start()
        try:
            while True:
                _cash_sale(site.client, plu=rng.choice(["300", "301", "400"]))
        except (OSError, ConnectionError, ValueError, RpcError):
            pass  # killed mid-request: that sale's outcome is unknown, either is fine
        killer.join()
        site.client.close()
        site.till = TillProcess(site.base, site.config).start()
        site.client = site.till.client()
    wait_for(
        lambda: site.status()["control_unit"]["waiting_receipts"] == [], 30, what="all registered"
    )
    journal = site.journal()
    receipts = sorted(e["body"]["receipt_no"] for e in journal if e["type"] == "sale")
    assert receipts, f"no sale completed (seed {seed})"
    codes: dict[int, list[str]] = {}
    for entry in journal:
        if entry["type"] == "control-code":
            codes.setdefault(entry["body"]["receipt_no"], []).append(entry["body"]["control_code"])
    assert sorted(codes) == receipts, f"seed {seed}"
    assert all(len(c) == 1 for c in codes.values()), f"seed {seed}: {codes}"
    at_unit: dict[int, list[str]] = {}
    for record in site.unit.registrations():
        at_unit.setdefault(record["receipt"]["receipt_number"], []).append(record["control_code"])
    # Exactly one registration per receipt at the unit, and it is the journaled one.
    assert at_unit == codes, f"seed {seed}"


def test_a_unit_that_refuses_registrations_stops_sales_until_it_registers_again(
    site: Site,
) -> None:
    site.unit.nak("006", times=1000)  # "not operational", while its status still says OK
    sale_id, total = _open(site.client)
    reply = site.client.call("sale.pay", sale_id=sale_id, method="cash", amount=total)
    assert reply["status"] == "completed" and reply["control"]["state"] == "waiting"
    wait_for(lambda: site.status()["control_unit"]["working"] is False, 10, what="stopped")
    assert site.status()["devices"]["controlunit"]["state"] == "ok"
    with pytest.raises(RpcError) as refused:
        site.client.call("sale.open")
    assert refused.value.reason == "control-unit-unavailable"
    assert f"refused receipt {reply['receipt_no']}" in refused.value.error["data"]["detail"]
    assert _registered(site, reply["receipt_no"]) == []
    site.unit.reset()
    wait_for(lambda: site.status()["control_unit"]["waiting_receipts"] == [], 20, what="registered")
    site.unit_working(True)
    assert len(_registered(site, reply["receipt_no"])) == 1
    wait_for(lambda: _printed_with(site, reply["receipt_no"]), 10, what="printed")


def test_a_v1_unit_registers_and_a_v1_doubt_stops_sales_for_a_technician(short_tmp: Path) -> None:
    """CCSP v1 has no request number, so a lost answer cannot be asked about."""
    site = _build(short_tmp, answer_wait_s=1.0, protocol=1)
    try:
        first = _cash_sale(site.client)
        assert first["control"]["state"] == "registered"
        assert site.unit.verify(first["control"]["control_code"])["issued"] is True
        site.unit.lose_answer(1)
        reply = _cash_sale(site.client)
        assert reply["status"] == "completed" and reply["control"]["state"] == "waiting"
        wait_for(lambda: site.status()["control_unit"]["in_doubt"] == 1, 20, what="in doubt")
        assert site.status()["control_unit"]["working"] is False
        with pytest.raises(RpcError) as refused:
            site.client.call("sale.open")
        assert refused.value.reason == "control-unit-unavailable"
        assert "in doubt" in refused.value.error["data"]["detail"]
        # The unit holds it once; tilld never sent it again on its own.
        (held,) = _registered(site, reply["receipt_no"])
        assert held["answered"] is False
        assert reply["receipt_no"] in site.status()["control_unit"]["waiting_receipts"]
        assert _printed_with(site, reply["receipt_no"]) == []
    finally:
        _teardown(site)


def test_a_v1_registration_cut_by_kill_9_is_never_sent_again(short_tmp: Path) -> None:
    site = _build(short_tmp, answer_wait_s=1.0, protocol=1)
    try:
        site.unit.delay(1.0)  # each answer (ST, RH, SQ): SQ's registers after the till is gone
        reply = _cash_sale(site.client)
        assert reply["control"]["state"] == "waiting"
        wait_for(lambda: site.unit.state()["arrived"].get("SQ"), 20, what="SQ sent")
        site.client.close()
        site.till.kill()
        wait_for(lambda: _registered(site, reply["receipt_no"]), 20, what="registered at the unit")
        site.unit.delay(0)
        site.till = TillProcess(site.base, site.config).start()
        site.client = site.till.client()
        wait_for(lambda: site.status()["control_unit"]["in_doubt"] == 1, 20, what="in doubt")
        with pytest.raises(RpcError) as refused:
            site.client.call("sale.open")
        assert refused.value.reason == "control-unit-unavailable"
        assert len(_registered(site, reply["receipt_no"])) == 1
        assert site.codes() == []
    finally:
        _teardown(site)


def test_an_article_whose_vat_rate_the_unit_cannot_register_is_refused_before_sale(
    short_tmp: Path,
) -> None:
    catalog = json.loads(DEMO_CATALOG.read_text(encoding="utf-8"))
    for article in catalog["articles"]:
        if article["plu"] == "402":
            article["vat_rate"] = 8  # not a Swedish rate: no unit takes it
    path = short_tmp / "catalog.json"
    path.write_text(json.dumps(catalog), encoding="utf-8")
    site = _build(short_tmp, catalog=path)
    try:
        sale_id = site.client.call("sale.open")["sale_id"]
        with pytest.raises(RpcError) as refused:
            site.client.call("sale.add", sale_id=sale_id, plu="402")
        assert refused.value.reason == "vat-rate-not-registrable"
        site.client.call("sale.add", sale_id=sale_id, plu="400")
        total = site.client.call("sale.get", sale_id=sale_id)["total"]
        reply = site.client.call("sale.pay", sale_id=sale_id, method="cash", amount=total)
        assert reply["control"]["state"] == "registered"
    finally:
        _teardown(site)
