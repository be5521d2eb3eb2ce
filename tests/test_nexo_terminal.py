"""The nexo driver against the nexo terminal simulator over real loopback HTTP.

The simulator runs in the test's own event loop (drivers/sim/nexo_terminal.py
on a real socket); the end-to-end card tests run it as a process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from drivers.device import Backoff, DeviceState, DeviceStatus
from drivers.nexo import NexoTerminal, NexoTimeouts, open_terminal
from drivers.nexo.device import STATUS_PRESENT_CARD
from drivers.nexo.messages import Result
from drivers.nexo.outcomes import decline_reason, result_code, transaction_service_id
from drivers.sim.nexo_terminal import NexoSimulator, SimNexoTerminal
from drivers.terminal import DeclineReason, IntermediateStatus, Outcome, TerminalUnavailable

POI_ID = "SIM00001"
TIMEOUTS = NexoTimeouts(connect_s=2, short_s=5, payment_s=20, busy_s=1.0, probe_s=0.3)


class Listener:
    def __init__(self) -> None:
        self.statuses: list[DeviceStatus] = []
        self.errors: list[str] = []

    def device_status(self, name: str, status: DeviceStatus) -> None:
        self.statuses.append(status)

    def device_error(self, name: str, message: str) -> None:
        self.errors.append(message)


def terminal_for(address: str, **kw: Any) -> NexoTerminal:
    return open_terminal(
        "terminal",
        Listener(),
        address=address,
        sale_id="till-1",
        poi_id=kw.pop("poi_id", POI_ID),
        timeouts=kw.pop("timeouts", TIMEOUTS),
        backoff=Backoff(0.05, 0.2),
    )


Scenario = Callable[[NexoTerminal, SimNexoTerminal], Awaitable[object]]


def run(scenario: Scenario, **kw: Any) -> Any:
    async def main() -> object:
        sim = NexoSimulator(SimNexoTerminal())
        address = await sim.listen("127.0.0.1", 0)
        terminal = terminal_for(address, **kw)
        await terminal.open()
        try:
            assert await terminal.wait_ready(10), f"not logged in: {terminal.status}"
            return await scenario(terminal, sim.terminal)
        finally:
            await terminal.close()
            await sim.close()

    return asyncio.run(asyncio.wait_for(main(), 60))


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)
    assert predicate(), what


def test_an_approved_payment_gives_brand_masked_pan_auth_code_and_texts() -> None:
    texts: list[IntermediateStatus] = []

    async def scenario(terminal: NexoTerminal, sim: SimNexoTerminal) -> None:
        result = await terminal.authorize(3550, "pay-1", on_status=texts.append)
        assert result.outcome is Outcome.APPROVED
        card = result.transaction
        assert card is not None
        assert (card.amount, card.brand, card.masked_pan) == (3550, "visa", "411111******1111")
        assert card.auth_code and card.receipt_no and card.offline is False
        assert "tilld terminal simulator" in result.receipt_lines
        assert [b.kind for b in sim.booked] == ["authorisation"]

    run(scenario)
    assert texts[0] == STATUS_PRESENT_CARD


def test_decline_abort_and_the_online_only_brand_are_told_apart() -> None:
    async def scenario(terminal: NexoTerminal, sim: SimNexoTerminal) -> None:
        sim.script.update({"decision": "decline"})
        declined = await terminal.authorize(1000, "pay-d")
        assert declined.outcome is Outcome.DECLINED and "Refusal" in declined.result_text
        sim.script.update({"decision": "hold"})
        held = asyncio.create_task(terminal.authorize(1000, "pay-a"))
        await until(lambda: bool(sim.running), "the payment waiting for the card")
        await terminal.abort()
        assert (await held).outcome is Outcome.ABORTED
        sim.script.update({"decision": "approve", "online": False, "brand": "maestro"})
        maestro = await terminal.authorize(1000, "pay-m")
        assert maestro.outcome is Outcome.DECLINED
        assert maestro.decline_reason is DeclineReason.NEEDS_ONLINE
        sim.script.update({"brand": "visa", "offline_limit": 1})
        offline = await terminal.authorize(1000, "pay-o")
        assert offline.approved and offline.offline
        full = await terminal.authorize(1000, "pay-f")
        assert full.decline_reason is DeclineReason.OFFLINE_STORE_FULL
        assert [b.kind for b in sim.booked] == ["authorisation"]

    run(scenario)


def test_a_lost_answer_is_in_doubt_and_resolved_by_its_service_id_never_paid_again() -> None:
    async def scenario(terminal: NexoTerminal, sim: SimNexoTerminal) -> None:
        sim.script.update({"drop": "after-approval"})
        lost = await terminal.authorize(2500, "pay-lost")
        assert lost.outcome is Outcome.IN_DOUBT and lost.doubt is not None
        # The terminal restarted: it logs the till out, and the driver logs in again.
        await until(lambda: not sim.logged_out, "the driver's new login")
        assert await terminal.wait_ready(10)
        resolved = await terminal.resolve_in_doubt(terminal.doubt_record(2500, "pay-lost"))
        assert resolved.outcome is Outcome.APPROVED
        assert resolved.transaction is not None and resolved.transaction.amount == 2500
        # A payment the terminal never saw is "not booked".
        unknown = await terminal.resolve_in_doubt(terminal.doubt_record(2500, "never-sent"))
        assert unknown.outcome is Outcome.DECLINED
        assert [b.kind for b in sim.booked] == ["authorisation"]
        asked = sim.commands["TransactionStatusRequest"]
        assert asked == 2 and sim.commands["PaymentRequest"] == 1

    run(scenario)


def test_a_refund_lost_before_booking_resolves_as_not_booked() -> None:
    async def scenario(terminal: NexoTerminal, sim: SimNexoTerminal) -> None:
        sim.script.update({"drop": "before-approval"})
        lost = await terminal.refund(1500, "refund-1")
        assert lost.outcome is Outcome.IN_DOUBT
        await until(lambda: not sim.logged_out, "the driver's new login")
        assert await terminal.wait_ready(10)
        resolved = await terminal.resolve_in_doubt(lost.doubt)
        assert resolved.outcome is Outcome.DECLINED and sim.booked == []

    run(scenario)


def test_a_busy_terminal_is_asked_again_then_reported() -> None:
    async def scenario(terminal: NexoTerminal, sim: SimNexoTerminal) -> None:
        sim.script.update({"decision": "hold"})
        other = terminal_for(terminal_address(terminal))  # a second till on the same terminal
        await other.open()
        try:
            assert await other.wait_ready(10)
            held = asyncio.create_task(other.authorize(700, "other-till"))
            await until(lambda: bool(sim.running), "another till's payment at the terminal")
            busy = await terminal.authorize(900, "pay-busy")
            assert busy.outcome is Outcome.DECLINED and "Busy" in busy.result_text
            assert sim.commands["PaymentRequest"] >= 3  # asked again while busy
            sim.script.update({"decision": "approve"})
            assert (await held).approved
        finally:
            await other.close()
        assert (await terminal.authorize(900, "pay-busy-2")).approved

    run(scenario)


def terminal_address(terminal: NexoTerminal) -> str:
    return f"{terminal.host}:{terminal.port}"


def test_reversal_refund_reconciliation_and_last_transaction() -> None:
    async def scenario(terminal: NexoTerminal, sim: SimNexoTerminal) -> None:
        paid = await terminal.authorize(4000, "pay-r")
        assert paid.transaction is not None and paid.transaction.receipt_no is not None
        reversed_ = await terminal.reverse(paid.transaction.receipt_no)
        assert reversed_.approved and reversed_.amount == 4000
        assert (await terminal.reverse(paid.transaction.receipt_no)).outcome is Outcome.DECLINED
        refund = await terminal.refund(1200, "refund-r")
        assert refund.approved and refund.transaction is not None
        last = await terminal.last_transaction()
        assert last is not None and last.amount == 1200
        sim.script.update({"online": False})
        await terminal.authorize(300, "offline-1")
        sim.script.update({"online": True})
        sent = await terminal.send_offline_transactions()
        assert sent.ok and (sent.count, sent.total) == (1, 300)
        closed = await terminal.end_of_day()
        assert closed.ok and sim.offline_store == []
        assert (await terminal.status_enquiry()).ready

    run(scenario)


def test_a_wrong_poi_id_keeps_the_terminal_offline_with_a_hint() -> None:
    async def main() -> None:
        sim = NexoSimulator(SimNexoTerminal())
        address = await sim.listen("127.0.0.1", 0)
        terminal = terminal_for(address, poi_id="WRONG")
        await terminal.open()
        try:
            await until(lambda: "poi_id" in terminal.status.detail, "the login refusal")
            assert not terminal.ready
            with pytest.raises(TerminalUnavailable):
                await terminal.authorize(100, "nothing-sent")
            assert sim.terminal.booked == []
        finally:
            await terminal.close()
            await sim.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_the_terminal_going_away_and_coming_back_reconnects_by_itself() -> None:
    async def main() -> None:
        sim = NexoSimulator(SimNexoTerminal())
        address = await sim.listen("127.0.0.1", 0)
        host, port = address.rsplit(":", 1)
        terminal = terminal_for(address)
        await terminal.open()
        try:
            assert await terminal.wait_ready(10)
            await sim.close()
            await until(lambda: terminal.status.state is DeviceState.OFFLINE, "offline")
            with pytest.raises(TerminalUnavailable):
                await terminal.authorize(100, "while-away")
            sim = NexoSimulator(SimNexoTerminal())
            await sim.listen(host, int(port))
            assert await terminal.wait_ready(10)
            assert (await terminal.authorize(100, "back")).approved
        finally:
            await terminal.close()
            await sim.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_garbage_from_the_terminal_is_an_error_and_a_payment_in_doubt() -> None:
    async def main() -> None:
        answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"]

        async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            from drivers.nexo import codec
            from drivers.nexo.http import read_message, response_bytes
            from drivers.nexo.messages import LoginResponse, Result, message

            request = codec.decode((await read_message(reader)).body)
            if request.header.category == "Login":
                reply = message(LoginResponse(Result()), request.header.service_id, "t", POI_ID)
                writer.write(response_bytes(200, codec.encode(reply)))
            else:
                writer.write(answers[0])
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(liar, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        timeouts = NexoTimeouts(connect_s=2, short_s=5, payment_s=5, probe_s=30)
        terminal = terminal_for(f"127.0.0.1:{port}", timeouts=timeouts)
        await terminal.open()
        try:
            assert await terminal.wait_ready(10)
            result = await terminal.authorize(100, "garbage")
            assert result.outcome is Outcome.IN_DOUBT
            listener = terminal.listener
            assert isinstance(listener, Listener)
            assert any("not well-formed" in e for e in listener.errors), listener.errors
        finally:
            await terminal.close()
            server.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_service_ids_are_stable_per_payment_and_apart_per_kind() -> None:
    assert transaction_service_id("authorisation", "p1") == transaction_service_id(
        "authorisation", "p1"
    )
    assert transaction_service_id("refund", "p1") != transaction_service_id("authorisation", "p1")
    assert len(transaction_service_id("refund", "p1")) == 10


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (Result("Failure", "UnreachableHost"), DeclineReason.NEEDS_ONLINE),
        (
            Result("Failure", "UnavailableService", "offline store full"),
            DeclineReason.OFFLINE_STORE_FULL,
        ),
        (Result("Failure", "Refusal", "declined"), DeclineReason.OTHER),
    ],
)
def test_error_conditions_map_to_the_decline_reasons_the_card_rules_use(result, reason) -> None:
    assert decline_reason(result) is reason
    assert result_code(result) != 0 and result_code(Result()) == 0
