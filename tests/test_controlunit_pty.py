"""The CleanCash driver against `tilld sim controlunit` over a real pty, faults and all.

The simulator is a real subprocess; the driver opens the pty through the
simulator's stable symlink with pyserial, exactly as it opens a USB-serial
adapter. Waits poll for conditions (listener events or the simulator's
state), never sleep for a guessed time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from controlunit_sim import ControlUnitSim

from drivers.controlunit import (
    ControlUnitUnavailable,
    MainStatus,
    ReceiptKind,
    ReceiptRegistration,
    RefusalReason,
    RegistrationInDoubt,
    StorageStatus,
    UnitRefused,
    open_control_unit,
)
from drivers.controlunit.cleancash import CcspTimeouts, CleanCashUnit, naks
from drivers.device import Backoff, DeviceState, DeviceStatus

# Generous: the machine is shared, and a late answer would be a false "in doubt".
PATIENT = CcspTimeouts(reply_s=10.0, catch_up_s=30.0, poll_s=0.3)


class Recorder:
    def __init__(self) -> None:
        self.statuses: list[DeviceStatus] = []
        self.errors: list[str] = []
        self.changed = asyncio.Event()

    def device_status(self, name: str, status: DeviceStatus) -> None:
        self.statuses.append(status)
        self.changed.set()

    def device_error(self, name: str, message: str) -> None:
        self.errors.append(message)
        self.changed.set()

    async def until(self, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def call(function: Callable[..., Any], *args: Any) -> Any:
    """A blocking call to the simulator's HTTP API, off the driver's event loop."""
    return await asyncio.to_thread(function, *args)


async def eventually(read: Callable[[], Any], check: Callable[[Any], bool], what: str) -> Any:
    try:
        async with asyncio.timeout(30):
            while not check(value := await call(read)):
                await asyncio.sleep(0.05)  # polling the simulator, not waiting for a guess
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None
    return value


def with_unit(
    sim: ControlUnitSim,
    scenario: Callable[[CleanCashUnit, Recorder], Awaitable[None]],
    timeouts: CcspTimeouts = PATIENT,
) -> None:
    async def main() -> None:
        recorder = Recorder()
        unit = open_control_unit(
            "controlunit",
            recorder,
            kind="cleancash-serial",
            port=str(sim.link),
            timeouts=timeouts,
            backoff=Backoff(first_s=0.05, cap_s=0.3),
        )
        await unit.open()
        try:
            assert await unit.wait_connected(30), unit.status
            await scenario(unit, recorder)
        finally:
            await unit.close()

    asyncio.run(main())


def sale(number: int, **changes: Any) -> ReceiptRegistration:
    values: dict[str, Any] = {
        "date_time": datetime(2024, 5, 17, 18, 45),
        "receipt_number": number,
        "till_id": "KASSA1",
        "org_number": "5567890123",
        "total_ore": 12500,
        "vat_ore": {25: 2500},
    }
    return ReceiptRegistration(**{**values, **changes})


@pytest.fixture
def sim(short_tmp: Path):
    unit = ControlUnitSim(short_tmp)
    yield unit
    unit.stop()


@pytest.fixture
def sim_v1(short_tmp: Path):
    unit = ControlUnitSim(short_tmp, protocol=1)
    yield unit
    unit.stop()


@pytest.fixture(scope="module")
def shared_sim(tmp_path_factory):
    # One simulator for the NAK cases; each test resets its faults.
    unit = ControlUnitSim(Path(tmp_path_factory.mktemp("cu")))
    yield unit
    unit.stop()


RECEIPTS = [
    sale(1),
    sale(2, total_ore=-4990, return_amount_ore=4990, vat_ore={12: -535}),  # a return
    sale(1, kind=ReceiptKind.COPY),  # the one copy of receipt 1
    sale(3, kind=ReceiptKind.TRAINING, total_ore=3000, vat_ore={6: 170, 0: 0}),
    sale(4, kind=ReceiptKind.PRO_FORMA, total_ore=10000, vat_ore={25: 2000}),
]
WIRE_KINDS = ["normal", "normal", "kopia", "ovning", "profo"]


@pytest.mark.parametrize("protocol", [2, 1])
def test_each_receipt_kind_is_registered_with_a_code_the_unit_proves_it_issued(
    short_tmp: Path, protocol: int
) -> None:
    sim = ControlUnitSim(short_tmp, protocol=protocol)
    try:

        async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
            identity = await unit.identify()
            assert (identity.unit_id, identity.protocol_version) == (sim.unit_id, protocol)
            registrations = [await unit.register(receipt) for receipt in RECEIPTS]
            for receipt, registration in zip(RECEIPTS, registrations, strict=True):
                assert registration.unit_id == sim.unit_id
                proof = await call(sim.verify, registration.control_code)
                assert proof["issued"], registration
                assert proof["receipt"]["receipt_number"] == receipt.receipt_number
                assert proof["receipt"]["kind"] == receipt.kind.value
                assert proof["receipt"]["total_ore"] == receipt.total_ore
                assert proof["receipt"]["return_amount_ore"] == receipt.return_amount_ore
                expected_storage = StorageStatus.OK if protocol == 2 else StorageStatus.UNKNOWN
                assert registration.storage is expected_storage
            assert len({r.control_code for r in registrations}) == len(RECEIPTS)
            registered = await call(sim.registrations)
            # Exactly once each, in order, with the fields as they went over the wire.
            assert [r["control_code"] for r in registered] == [
                r.control_code for r in registrations
            ]
            assert [r["fields"][6] for r in registered] == WIRE_KINDS
            assert registered[1]["fields"][4:8] == ["-49,90", "49,90", "normal", " "]
            assert registered[1]["fields"][8] == "12,00;-5,35"
            assert registered[3]["fields"][9:] == ["6,00;1,70", "0,00;0,00"]
            assert unit.status == DeviceStatus(DeviceState.OK)

        with_unit(sim, scenario)
    finally:
        sim.stop()


def test_the_simulator_runs_as_tilld_sim_controlunit(short_tmp: Path) -> None:
    sim = ControlUnitSim(short_tmp, via_cli=True)
    try:
        assert Path(sim.announced["pty"]).exists()
        assert sim.link.resolve() == Path(sim.announced["pty"])

        async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
            assert (await unit.identify()).unit_id == sim.unit_id
            assert (await unit.register(sale(1))).control_code

        with_unit(sim, scenario)
        assert sim.state()["registered"] == 1
    finally:
        sim.stop()


def test_an_unplugged_unit_goes_offline_refuses_to_register_and_comes_back_by_itself(
    sim: ControlUnitSim,
) -> None:
    async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
        await call(sim.unplug)
        await recorder.until(lambda: unit.status.state is DeviceState.OFFLINE)
        with pytest.raises(ControlUnitUnavailable, match=r"not connected.*nothing was sent"):
            await unit.register(sale(1))
        await call(sim.plug)
        await recorder.until(lambda: unit.status.state is DeviceState.OK)
        registration = await unit.register(sale(2))
        assert (await call(sim.verify, registration.control_code))["issued"]
        registered = await call(sim.registrations)
        assert [r["receipt"]["receipt_number"] for r in registered] == [2]

    with_unit(sim, scenario)


def test_a_unit_that_stops_answering_goes_offline_and_comes_back_by_itself(
    sim: ControlUnitSim,
) -> None:
    quick = dataclasses.replace(PATIENT, reply_s=1.0)

    async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
        await call(sim.silent, True)
        await recorder.until(lambda: unit.status.state is DeviceState.OFFLINE)
        assert "no answer" in unit.status.detail
        await call(sim.silent, False)
        await recorder.until(lambda: unit.status.state is DeviceState.OK)
        unit.timeouts = PATIENT
        assert (await unit.register(sale(1))).control_code

    with_unit(sim, scenario, quick)


# controlunit.md "NAK replies", written out here, not taken from the code.
NAK_CASES = [
    ("001", naks.InvalidLrc, RefusalReason.PROTOCOL),
    ("002", naks.UnknownMessageType, RefusalReason.PROTOCOL),
    ("003", naks.InvalidData, RefusalReason.INVALID_RECEIPT),
    ("004", naks.InvalidSequence, RefusalReason.PROTOCOL),
    ("006", naks.NotOperational, RefusalReason.NOT_OPERATIONAL),
    ("007", naks.InvalidPosId, RefusalReason.INVALID_TILL_ID),
    ("008", naks.InternalError, RefusalReason.INTERNAL_ERROR),
    ("009", naks.LicenceExceeded, RefusalReason.LICENCE_EXCEEDED),
    ("010", naks.StorageFull, RefusalReason.STORAGE_FULL),
    ("011", naks.InvalidSequenceNumber, RefusalReason.PROTOCOL),
]


@pytest.mark.parametrize(("code", "error", "reason"), NAK_CASES)
def test_each_nak_code_surfaces_as_its_typed_error_and_nothing_is_registered(
    shared_sim: ControlUnitSim, code: str, error: type[UnitRefused], reason: RefusalReason
) -> None:
    sim = shared_sim
    sim.reset()
    before = len(sim.registrations())

    async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
        await call(sim.nak, code)
        with pytest.raises(error) as refused:
            await unit.register(sale(100))
        assert type(refused.value) is error and refused.value.reason is reason
        assert f"NAK {code}" in str(refused.value)
        assert len(await call(sim.registrations)) == before
        # The refusal leaves the unit usable: the next receipt registers.
        assert (await unit.register(sale(101))).control_code

    with_unit(sim, scenario)


def test_a_nak_to_the_v1_signature_query_is_its_typed_error(sim_v1: ControlUnitSim) -> None:
    async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
        await call(sim_v1.nak, "006")
        with pytest.raises(naks.NotOperational, match="SQ"):
            await unit.register(sale(1))
        assert await call(sim_v1.registrations) == []

    with_unit(sim_v1, scenario)


def test_a_storage_high_level_warning_shows_in_the_registration_and_the_status(
    sim: ControlUnitSim,
) -> None:
    async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
        await call(sim.storage, "warning")
        registration = await unit.register(sale(1))
        assert registration.storage is StorageStatus.HIGH_LEVEL_WARNING
        status = await unit.unit_status()
        assert (status.main, status.storage) == (
            MainStatus.WARNING,
            StorageStatus.HIGH_LEVEL_WARNING,
        )
        # Still working: ok, with the warning as the detail for the technician.
        assert unit.status.state is DeviceState.OK
        assert "storage high-level warning" in unit.status.detail

    with_unit(sim, scenario)


def test_a_full_memory_puts_the_unit_in_error_and_refuses_the_next_receipt(
    sim: ControlUnitSim,
) -> None:
    async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
        await call(sim.storage, "last")
        registration = await unit.register(sale(1))  # it takes the last room
        assert registration.storage is StorageStatus.MEMORY_FULL
        assert unit.status.state is DeviceState.ERROR
        assert "transaction memory full" in unit.status.detail
        with pytest.raises(naks.StorageFull) as refused:
            await unit.register(sale(2))
        assert refused.value.reason is RefusalReason.STORAGE_FULL
        status = await unit.unit_status()
        assert (status.main, status.storage) == (
            MainStatus.NON_FATAL_ERROR,
            StorageStatus.MEMORY_FULL,
        )
        assert len(await call(sim.registrations)) == 1

    with_unit(sim, scenario)


def test_the_units_own_error_condition_is_the_device_error_detail(sim: ControlUnitSim) -> None:
    async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
        await call(sim.main_status, "fatal-error")
        await recorder.until(lambda: unit.status.state is DeviceState.ERROR)
        assert unit.status.detail == "the unit reports a fatal error condition (main status 4)"
        await call(sim.main_status, None)
        await recorder.until(lambda: unit.status == DeviceStatus(DeviceState.OK))

    with_unit(sim, scenario)


def test_a_slow_answer_within_the_time_allowed_still_registers(sim: ControlUnitSim) -> None:
    async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
        await call(sim.delay, 0.8)
        registration = await unit.register(sale(1))
        assert (await call(sim.verify, registration.control_code))["issued"]
        assert unit.status.state is DeviceState.OK

    with_unit(sim, scenario)


@pytest.mark.parametrize("protocol", [2, 1])
def test_an_answer_lost_after_registering_is_in_doubt_and_the_unit_registered_it_once(
    short_tmp: Path, protocol: int
) -> None:
    sim = ControlUnitSim(short_tmp, protocol=protocol)
    try:

        async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
            await call(sim.lose_answer, 1)
            # The lost answer never comes, so any limit ends in doubt; v1's ST
            # and RH must still be answered within it, on a busy machine too.
            unit.timeouts = dataclasses.replace(PATIENT, reply_s=3.0)
            receipt = sale(7)
            with pytest.raises(RegistrationInDoubt) as doubt:
                await unit.register(receipt)
            assert not isinstance(doubt.value, UnitRefused | ControlUnitUnavailable)
            assert doubt.value.receipt == receipt
            assert doubt.value.sequence == (1 if protocol == 2 else None)
            assert "may have registered receipt 7" in str(doubt.value)
            registered = await call(sim.registrations)
            assert [(r["receipt"]["receipt_number"], r["answered"]) for r in registered] == [
                (7, False)
            ]
            # The unit is still there and the next receipt gets its own code.
            unit.timeouts = PATIENT
            registration = await unit.register(sale(8))
            proof = await call(sim.verify, registration.control_code)
            assert proof["issued"] and proof["receipt"]["receipt_number"] == 8
            assert DeviceState.OFFLINE not in {s.state for s in recorder.statuses[1:]}

        with_unit(sim, scenario)
    finally:
        sim.stop()


def test_an_answer_later_than_allowed_is_in_doubt_and_never_taken_for_the_next(
    sim: ControlUnitSim,
) -> None:
    async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
        # No status polls meanwhile: this test is about two registrations only.
        unit.timeouts = dataclasses.replace(PATIENT, reply_s=0.5, poll_s=600)
        await call(sim.delay, 2.0)  # the answer comes, but after the driver gave up
        with pytest.raises(RegistrationInDoubt):
            await unit.register(sale(1))
        await call(sim.delay, 0)
        unit.timeouts = dataclasses.replace(PATIENT, poll_s=600)
        second = await unit.register(sale(2))
        registered = await call(sim.registrations)
        assert [r["receipt"]["receipt_number"] for r in registered] == [1, 2]
        late_code = registered[0]["control_code"]
        assert second.control_code == registered[1]["control_code"] != late_code
        # The late answer was reported for whoever resolves the doubt, not used.
        assert any(
            "late answer to the registration in doubt of receipt 1" in e and late_code in e
            for e in recorder.errors
        ), recorder.errors

    with_unit(sim, scenario)


def test_a_registration_cancelled_after_sending_never_lends_its_answer_to_the_next(
    sim: ControlUnitSim,
) -> None:
    async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
        unit.timeouts = dataclasses.replace(PATIENT, poll_s=600)
        await call(sim.delay, 2.0)
        first = asyncio.create_task(unit.register(sale(1)))
        # Once the unit has the request, the caller gives up and cancels.
        await eventually(sim.state, lambda state: state["arrived"].get("RR") == 1, "RR sent")
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await call(sim.delay, 0)
        second = await unit.register(sale(2))
        registered = await call(sim.registrations)
        assert [r["receipt"]["receipt_number"] for r in registered] == [1, 2]
        assert second.control_code == registered[1]["control_code"]
        assert any(registered[0]["control_code"] in e for e in recorder.errors), recorder.errors

    with_unit(sim, scenario)


def test_a_receipt_the_unit_would_refuse_sends_nothing(sim: ControlUnitSim) -> None:
    async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
        before = (await call(sim.state))["arrived"].get("RR", 0)
        long_till = sale(1, till_id="K" * 4100)  # valid characters, but no frame holds it
        with pytest.raises(ValueError, match="cannot be sent as RR"):
            await unit.register(long_till)
        arrived = (await call(sim.state))["arrived"]
        assert arrived.get("RR", 0) == before == 0 and "(damaged)" not in arrived
        assert await call(sim.registrations) == []

    with_unit(sim, scenario)


def test_polls_keep_a_healthy_unit_ok_without_flooding_listeners(sim: ControlUnitSim) -> None:
    async def scenario(unit: CleanCashUnit, recorder: Recorder) -> None:
        start = (await call(sim.state))["received"].get("SIQ", 0)
        await eventually(
            sim.state, lambda state: state["received"].get("SIQ", 0) >= start + 5, "five polls"
        )
        assert recorder.statuses == [DeviceStatus(DeviceState.OK)]

    with_unit(sim, scenario)
