"""The simulated CleanCash unit answers like a unit and can prove its control codes.

These check the simulator's own behaviour message by message, without a pty;
tests/test_controlunit_pty.py runs the driver against it as a subprocess.
"""

from __future__ import annotations

from datetime import datetime

from drivers.controlunit import ReceiptKind, ReceiptRegistration, StorageStatus
from drivers.controlunit.cleancash import messages
from drivers.sim.cleancash_unit import SimUnit

SALE = ReceiptRegistration(
    datetime(2024, 1, 31, 12, 30),
    42,
    "TILL1",
    "5567890123",
    12500,
    0,
    ReceiptKind.NORMAL,
    {25: 2500},
)


def reply(unit: SimUnit, request: str) -> messages.Message:
    answer = unit.answer(request)
    assert answer is not None, f"no answer to {request}"
    return messages.parse_message(answer)


def test_a_registration_gets_a_code_the_unit_proves_and_another_unit_does_not():
    unit, other = SimUnit("CC0001"), SimUnit("CC0001")
    answer = reply(unit, messages.register_receipt(1, SALE))
    registration = messages.parse_registration_reply(answer)
    assert registration.unit_id == "CC0001" and registration.storage is StorageStatus.OK
    record = unit.verify(registration.control_code)
    assert record is not None and record.receipt["receipt_number"] == 42
    assert record.fields == messages.receipt_fields(SALE)
    # Same id, same receipt, its own secret key: it did not make this code.
    assert other.verify(registration.control_code) is None
    assert unit.verify("0" * 32) is None


def test_the_same_receipt_registered_twice_gets_two_codes():
    unit = SimUnit()
    first = messages.parse_registration_reply(reply(unit, messages.register_receipt(1, SALE)))
    second = messages.parse_registration_reply(reply(unit, messages.register_receipt(2, SALE)))
    assert first.control_code != second.control_code
    assert [r.journal_no for r in unit.registrations] == [1, 2]


def test_a_bad_sequence_number_is_nak_011_and_bad_fields_nak_003():
    unit = SimUnit()
    good = messages.register_receipt(1, SALE)
    assert reply(unit, good.replace("RR#1#", "RR#0#", 1)).fields == ("011",)
    assert reply(unit, good.replace("RR#1#", "RR#x#", 1)).fields == ("011",)
    assert reply(unit, good.replace("125,00", "125.00")).fields == ("003",)
    assert reply(unit, good.replace("#normal#", "#kvitto#")).fields == ("003",)
    assert unit.registrations == []


def test_an_unknown_message_is_nak_002_and_v1_messages_on_a_v2_unit_too():
    unit = SimUnit(protocol=2)
    assert reply(unit, "XYZ").fields == ("002",)
    assert reply(unit, messages.start_receipt()).fields == ("002",)


def test_v1_registers_on_the_signature_query_after_start_and_header():
    unit = SimUnit("CC0001", protocol=1)
    assert reply(unit, messages.signature_query()).fields == ("004",)  # no ST, no RH
    assert reply(unit, messages.receipt_header(SALE)).fields == ("004",)  # RH before ST
    assert reply(unit, messages.start_receipt()).type == messages.ACKNOWLEDGE
    assert reply(unit, messages.receipt_header(SALE)).type == messages.ACKNOWLEDGE
    code = messages.parse_signature_reply(reply(unit, messages.signature_query()))
    assert unit.verify(code) is not None
    assert reply(unit, messages.signature_query()).fields == ("004",)  # used up
    assert len(unit.registrations) == 1


def test_a_damaged_frame_is_answered_nak_001():
    assert messages.parse_message(SimUnit().answer_damaged_frame()).fields == ("001",)


def test_storage_fills_up_warning_then_last_then_full():
    unit = SimUnit()
    unit.set_storage("warning")
    assert reply(unit, messages.status_query()).fields == ("1",)
    storage = messages.parse_registration_reply(reply(unit, messages.register_receipt(1, SALE)))
    assert storage.storage is StorageStatus.HIGH_LEVEL_WARNING
    unit.set_storage("last")
    storage = messages.parse_registration_reply(reply(unit, messages.register_receipt(2, SALE)))
    assert storage.storage is StorageStatus.MEMORY_FULL
    assert reply(unit, messages.register_receipt(3, SALE)).fields == ("010",)
    assert reply(unit, messages.status_query()).fields == ("3",)
    assert len(unit.registrations) == 2


def test_a_lost_answer_is_registered_once_and_not_answered():
    unit = SimUnit()
    unit.lose_answers = 1
    assert unit.answer(messages.register_receipt(1, SALE)) is None
    assert [r.answered for r in unit.registrations] == [False]
    assert unit.answer(messages.register_receipt(2, SALE)) is not None


def test_a_forced_nak_refuses_registrations_only_and_registers_nothing():
    unit = SimUnit()
    unit.set_nak("006", times=1)
    assert reply(unit, messages.status_query()).type == messages.STATUS_REPLY
    assert reply(unit, messages.register_receipt(1, SALE)).fields == ("006",)
    assert reply(unit, messages.register_receipt(2, SALE)).type == messages.REGISTRATION_REPLY
    assert len(unit.registrations) == 1
