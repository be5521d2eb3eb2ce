"""The ZVT driver against the terminal simulator, over real TCP and a real pty."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import pytest
from conftest import REPO
from zvt_sim import TerminalSim

from drivers.device import Backoff, DeviceStatus
from drivers.terminal import IntermediateStatus, Outcome, TerminalResult
from drivers.zvt import SerialTiming, SerialTransport, TcpTransport, ZvtTerminal, ZvtTimeouts

PASSWORD = "000000"
VISA_PAN = "4111111111111111"


class Listener:
    def __init__(self) -> None:
        self.statuses: list[DeviceStatus] = []
        self.errors: list[str] = []

    def device_status(self, name: str, status: DeviceStatus) -> None:
        self.statuses.append(status)

    def device_error(self, name: str, message: str) -> None:
        self.errors.append(message)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    process = TerminalSim(tmp_path_factory.mktemp("zvt"))
    yield process
    process.stop()


@pytest.fixture
def fresh(sim):
    sim.control("reset")
    return sim


def make_terminal(sim: TerminalSim, link: str, *, idle_s: float = 3.0) -> ZvtTerminal:
    if link == "tcp":
        transport = TcpTransport.from_address(sim.address, connect_timeout_s=2)
    else:
        transport = SerialTransport(
            sim.pty, timing=SerialTiming(ack_timeout_s=0.5, inter_byte_timeout_s=0.2)
        )
    return ZvtTerminal(
        "terminal",
        Listener(),
        transport,
        PASSWORD,
        timeouts=ZvtTimeouts(ack_s=2, idle_s=idle_s, flow_s=20),
        backoff=Backoff(0.05, 0.3),
    )


def with_terminal(
    sim: TerminalSim, link: str, scenario: Callable[[ZvtTerminal], Awaitable[object]], **kw
):
    async def run() -> object:
        terminal = make_terminal(sim, link, **kw)
        await terminal.open()
        try:
            assert await terminal.wait_ready(10), f"not connected: {terminal.status}"
            return await scenario(terminal)
        finally:
            await terminal.close()

    return asyncio.run(asyncio.wait_for(run(), 60))


both_links = pytest.mark.parametrize("link", ["tcp", "serial"])


@both_links
def test_online_approval_returns_the_card_fields_and_only_a_masked_pan(fresh, link):
    fresh.set(brand="visa", pan=VISA_PAN)
    result: TerminalResult = with_terminal(fresh, link, lambda t: t.authorize(2550, "sale-1"))
    assert result.outcome is Outcome.APPROVED and result.approved
    tx = result.transaction
    assert tx is not None
    assert (tx.amount, tx.brand, tx.card_name, tx.offline) == (2550, "visa", "VISA", False)
    assert tx.masked_pan == "411111******1111"
    assert tx.terminal_id == "52500001"
    assert tx.receipt_no == 1 and tx.trace and tx.auth_code
    assert result.ref == "sale-1" and result.result_code == 0
    assert any("411111******1111" in line for line in result.receipt_lines)
    assert VISA_PAN not in repr(result)
    assert [b["amount"] for b in fresh.state()["booked"]] == [2550]


@both_links
def test_decline_is_a_decline_with_nothing_booked(fresh, link):
    fresh.set(decision="decline")
    result = with_terminal(fresh, link, lambda t: t.authorize(1000, "sale-2"))
    assert result.outcome is Outcome.DECLINED
    assert result.result_code == 0x05 and "declined" in result.result_text
    assert fresh.state()["booked"] == []


def test_customer_abort_is_aborted_not_declined(fresh):
    fresh.set(decision="customer-abort")
    result = with_terminal(fresh, "tcp", lambda t: t.authorize(1000, "sale-3"))
    assert result.outcome is Outcome.ABORTED
    assert result.result_code == 0x6C
    assert fresh.state()["booked"] == []


@both_links
def test_cashier_abort_while_the_terminal_waits_for_the_card(fresh, link):
    fresh.set(decision="hold")

    async def scenario(terminal: ZvtTerminal) -> TerminalResult:
        seen: list[IntermediateStatus] = []
        payment = asyncio.create_task(terminal.authorize(1000, "sale-4", on_status=seen.append))
        deadline = time.monotonic() + 10
        while not any(s.text == "insert card" for s in seen):
            assert time.monotonic() < deadline, "no 'insert card' status"
            await asyncio.sleep(0.02)
        await terminal.abort()
        return await payment

    result = with_terminal(fresh, link, scenario)
    assert result.outcome is Outcome.ABORTED
    assert fresh.state()["booked"] == []


def test_intermediate_statuses_reach_the_callback_in_order(fresh):
    seen: list[IntermediateStatus] = []
    result = with_terminal(
        fresh, "tcp", lambda t: t.authorize(500, "sale-5", on_status=seen.append)
    )
    assert result.approved
    assert [s.text for s in seen] == [
        "online",
        "insert card",
        "enter PIN (watch the PIN pad)",
        "please wait",
    ]


@both_links
def test_offline_approval_is_flagged_offline_and_stored(fresh, link):
    fresh.set(online=False, brand="mastercard")
    result = with_terminal(fresh, link, lambda t: t.authorize(1200, "sale-6"))
    assert result.approved and result.offline
    assert result.transaction.brand == "mastercard"
    assert fresh.state()["offline_stored"] == 1


def test_online_only_brand_offline_is_refused_by_the_terminal(fresh):
    fresh.set(online=False, brand="maestro")
    result = with_terminal(fresh, "tcp", lambda t: t.authorize(1200, "sale-7"))
    assert result.outcome is Outcome.DECLINED
    assert result.result_code == 0xF1
    assert fresh.state()["booked"] == []


def test_full_offline_store_answers_memory_full(fresh):
    fresh.set(online=False, offline_limit=1)

    async def scenario(terminal: ZvtTerminal) -> tuple[TerminalResult, TerminalResult, object]:
        first = await terminal.authorize(100, "a")
        second = await terminal.authorize(100, "b")
        return first, second, await terminal.status_enquiry()

    first, second, state = with_terminal(fresh, "tcp", scenario)
    assert first.approved and first.offline
    assert second.outcome is Outcome.DECLINED and second.result_code == 0xB1
    assert state.code == 0xB1 and "memory full" in state.text


@both_links
def test_reversal_voids_the_payment(fresh, link):
    async def scenario(terminal: ZvtTerminal) -> tuple[TerminalResult, TerminalResult]:
        sale = await terminal.authorize(4200, "sale-8")
        return sale, await terminal.reverse(sale.transaction.receipt_no)

    sale, reversal = with_terminal(fresh, link, scenario)
    assert sale.approved and reversal.approved
    assert reversal.amount == 4200
    booked = fresh.state()["booked"]
    assert booked[0]["reversed"] is True
    assert booked[1]["kind"] == "reversal" and booked[1]["reverses"] == sale.transaction.receipt_no


def test_reversing_twice_is_refused(fresh):
    async def scenario(terminal: ZvtTerminal) -> TerminalResult:
        sale = await terminal.authorize(4200, "sale-9")
        await terminal.reverse(sale.transaction.receipt_no)
        return await terminal.reverse(sale.transaction.receipt_no)

    again = with_terminal(fresh, "tcp", scenario)
    assert again.outcome is Outcome.DECLINED and again.result_code == 0xB4


@both_links
def test_send_offline_and_end_of_day_empty_the_store_and_report_the_count(fresh, link):
    fresh.set(online=False)

    async def scenario(terminal: ZvtTerminal):
        for ref in ("a", "b", "c"):
            assert (await terminal.authorize(1000, ref)).offline
        fresh.set(online=True)
        sent = await terminal.send_offline_transactions()
        stored_after_send = fresh.state()["offline_stored"]
        day = await terminal.end_of_day()
        return sent, stored_after_send, day

    sent, stored_after_send, day = with_terminal(fresh, link, scenario)
    assert sent.ok and (sent.count, sent.total) == (3, 3000)
    assert stored_after_send == 0
    assert day.ok and (day.count, day.total) == (3, 3000)


def test_end_of_day_without_network_fails_and_keeps_the_store(fresh):
    fresh.set(online=False)

    async def scenario(terminal: ZvtTerminal):
        await terminal.authorize(1000, "a")
        return await terminal.send_offline_transactions()

    sent = with_terminal(fresh, "tcp", scenario)
    assert not sent.ok and sent.result_code == 0xFA
    assert fresh.state()["offline_stored"] == 1


def test_status_enquiry_reports_ready_and_version(fresh):
    state = with_terminal(fresh, "tcp", lambda t: t.status_enquiry())
    assert state.ready and state.software_version == "tilld-sim 1.0"


def test_link_dropped_after_approval_is_in_doubt_and_resolves_charged_once(fresh):
    fresh.set(drop="after-approval")

    async def scenario(terminal: ZvtTerminal):
        result = await terminal.authorize(3300, "sale-10")
        assert await terminal.wait_ready(10), "no reconnect after the drop"
        return result, await terminal.resolve_in_doubt(result.doubt)

    result, resolved = with_terminal(fresh, "tcp", scenario)
    assert result.outcome is Outcome.IN_DOUBT and result.doubt is not None
    assert result.doubt.amount == 3300 and result.doubt.ref == "sale-10"
    assert resolved.outcome is Outcome.APPROVED
    assert resolved.transaction.amount == 3300 and resolved.transaction.masked_pan
    assert [b["amount"] for b in fresh.state()["booked"]] == [3300]


def test_link_dropped_before_approval_resolves_not_charged(fresh):
    async def scenario(terminal: ZvtTerminal):
        earlier = await terminal.authorize(3300, "earlier")  # same amount: must not match
        fresh.set(drop="before-approval")
        result = await terminal.authorize(3300, "sale-11")
        assert await terminal.wait_ready(10), "no reconnect after the drop"
        return earlier, result, await terminal.resolve_in_doubt(result.doubt)

    earlier, result, resolved = with_terminal(fresh, "tcp", scenario)
    assert earlier.approved
    assert result.outcome is Outcome.IN_DOUBT
    assert resolved.outcome is Outcome.DECLINED
    assert len(fresh.state()["booked"]) == 1


def test_serial_silence_mid_authorisation_is_in_doubt_then_resolved(fresh):
    fresh.set(drop="after-approval")

    async def scenario(terminal: ZvtTerminal):
        result = await terminal.authorize(700, "sale-12")
        return result, await terminal.resolve_in_doubt(result.doubt)

    result, resolved = with_terminal(fresh, "serial", scenario, idle_s=1.0)
    assert result.outcome is Outcome.IN_DOUBT
    assert resolved.outcome is Outcome.APPROVED and resolved.transaction.amount == 700
    assert sum(1 for b in fresh.state()["booked"] if b["kind"] == "authorisation") == 1


def test_serial_frame_with_bad_crc_is_naked_and_resent(fresh):
    before = fresh.state()["serial"]["naks_received"]

    async def scenario(terminal: ZvtTerminal) -> TerminalResult:
        fresh.set(corrupt_crc=2)
        return await terminal.authorize(900, "sale-13")

    result = with_terminal(fresh, "serial", scenario)
    assert result.approved
    serial = fresh.state()["serial"]
    assert serial["naks_received"] - before == 2
    assert len(fresh.state()["booked"]) == 1


def test_wrong_password_keeps_the_terminal_offline_with_a_reason(tmp_path):
    sim = TerminalSim(tmp_path, password="123456")
    try:

        async def run() -> DeviceStatus:
            listener = Listener()
            terminal = ZvtTerminal(
                "terminal",
                listener,
                TcpTransport.from_address(sim.address),
                "000000",
                backoff=Backoff(0.05, 0.2),
            )
            await terminal.open()
            deadline = time.monotonic() + 10
            while not any("registration" in s.detail for s in listener.statuses):
                assert time.monotonic() < deadline, listener.statuses
                await asyncio.sleep(0.02)
            connected = terminal.ready
            await terminal.close()
            assert not connected
            return next(s for s in listener.statuses if "registration" in s.detail)

        status = asyncio.run(run())
        assert status.state == "offline"
    finally:
        sim.stop()


def test_reconnects_after_the_simulator_restarts(tmp_path):
    first = TerminalSim(tmp_path)
    address = first.address
    second: TerminalSim | None = None
    try:

        async def run() -> TerminalResult:
            nonlocal second
            terminal = ZvtTerminal(
                "terminal",
                Listener(),
                TcpTransport.from_address(address),
                PASSWORD,
                timeouts=ZvtTimeouts(ack_s=2, idle_s=3),
                backoff=Backoff(0.05, 0.3),
            )
            await terminal.open()
            try:
                assert await terminal.wait_ready(10)
                assert (await terminal.authorize(100, "before")).approved
                await asyncio.to_thread(first.stop)
                deadline = time.monotonic() + 10
                while terminal.ready:
                    assert time.monotonic() < deadline, "the drop went unnoticed"
                    await asyncio.sleep(0.02)
                second = await asyncio.to_thread(TerminalSim, tmp_path, address)
                assert await terminal.wait_ready(10), f"no reconnect: {terminal.status}"
                return await terminal.authorize(200, "after")
            finally:
                await terminal.close()

        result = asyncio.run(asyncio.wait_for(run(), 60))
        assert result.approved and result.transaction.amount == 200
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_tilld_sim_terminal_subcommand_serves_zvt(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tilld.cli.daemon", "sim", "terminal", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening="), line
        address = line.strip().partition("=")[2]

        async def run():
            terminal = ZvtTerminal(
                "terminal", Listener(), TcpTransport.from_address(address), PASSWORD
            )
            await terminal.open()
            try:
                assert await terminal.wait_ready(10)
                return await terminal.status_enquiry()
            finally:
                await terminal.close()

        assert asyncio.run(run()).ready
    finally:
        proc.terminate()
        proc.wait(10)


def test_refund_is_booked_as_a_refund(fresh):
    result = with_terminal(fresh, "tcp", lambda t: t.refund(1500, "return-1"))
    assert result.approved and result.transaction.amount == 1500
    assert [(b["kind"], b["amount"]) for b in fresh.state()["booked"]] == [("refund", 1500)]


def test_a_terminal_too_slow_to_answer_gives_in_doubt_never_a_decline(fresh):
    fresh.set(delay_s=3)

    async def scenario(terminal: ZvtTerminal):
        result = await terminal.authorize(800, "sale-14")
        # The terminal is still busy with the old flow for a while: keep asking,
        # with a deadline, until it can tell.
        deadline = time.monotonic() + 20
        resolved = await terminal.resolve_in_doubt(result.doubt)
        while resolved.outcome is Outcome.IN_DOUBT:
            assert time.monotonic() < deadline, resolved
            await terminal.wait_ready(5)
            resolved = await terminal.resolve_in_doubt(result.doubt)
        return result, resolved

    result, resolved = with_terminal(fresh, "tcp", scenario, idle_s=1.0)
    assert result.outcome is Outcome.IN_DOUBT
    assert "answer lost" in result.result_text
    assert resolved.outcome is Outcome.DECLINED
    assert fresh.state()["booked"] == []
