"""CleanCash codec: frames byte for byte from the facts in controlunit.md, errors named clearly.

Every expected frame below was worked out from the reference, not by the
code under test: the length is the message's characters plus 11, the LRC the
XOR of every character from the first `#` through the `#` before it.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from drivers.controlunit import (
    MainStatus,
    ReceiptInvalid,
    ReceiptKind,
    ReceiptRegistration,
    RefusalReason,
    Registration,
    StorageStatus,
    UnitIdentity,
)
from drivers.controlunit.cleancash import fields, messages, naks
from drivers.controlunit.cleancash.errors import CcspProtocolError
from drivers.controlunit.cleancash.framing import (
    Frame,
    FrameDecoder,
    FrameError,
    LrcMismatch,
    decode_frame,
    encode_frame,
)


def receipt(**changes) -> ReceiptRegistration:
    values = {
        "date_time": datetime(2024, 1, 31, 12, 30),
        "receipt_number": 42,
        "till_id": "TILL1",
        "org_number": "5567890123",
        "total_ore": 12500,
        "return_amount_ore": 0,
        "kind": ReceiptKind.NORMAL,
        "vat_ore": {25: 2500},
    }
    return ReceiptRegistration(**{**values, **changes})


def wire(frame: bytes) -> messages.Message:
    return messages.parse_message(decode_frame(frame))


# Frames ---------------------------------------------------------------------


def test_status_query_frame_is_byte_exact():
    # "SIQ" is 3 characters: 3 + 11 = 14 = 00E. XOR of "#!#00E#SIQ#":
    # 23^21=02, ^23=21, ^30=11, ^30=21, ^45=64, ^23=47, ^53=14, ^49=5D, ^51=0C, ^23=2F.
    assert encode_frame(messages.status_query()) == b"#!#00E#SIQ#2F\r"
    assert decode_frame(b"#!#00E#SIQ#2F\r") == "SIQ"


def test_identity_query_frame_is_byte_exact():
    # 2 + 11 = 13 = 00D; 23^21^23^30^30^44^23^49^51^23 = 7D.
    assert encode_frame(messages.identity_query()) == b"#!#00D#IQ#7D\r"


def test_the_length_field_counts_the_message_plus_eleven_in_uppercase_hex():
    message = "X" * 300  # 311 = 0x137
    frame = encode_frame(message)
    assert frame.startswith(b"#!#137#")
    assert len(frame) == 311
    assert encode_frame("Y" * 160)[:7] == b"#!#0AB#"  # 171: uppercase digits


def test_v2_registration_sends_the_fields_in_order_with_decimal_commas_and_blank_vat():
    message = messages.register_receipt(1, receipt())
    assert message == ("RR#1#202401311230#42#TILL1#5567890123#125,00#0,00#normal#25,00;25,00# # # ")
    # 74 characters + 11 = 85 = 055; the LRC of everything before it is 03.
    assert encode_frame(message) == (
        b"#!#055#RR#1#202401311230#42#TILL1#5567890123#125,00#0,00#normal#25,00;25,00# # # #03\r"
    )


def test_a_return_receipt_sends_a_negative_total_and_the_return_as_a_positive_figure():
    returned = receipt(
        date_time=datetime(2024, 2, 1, 10, 15),
        receipt_number=43,
        total_ore=-12500,
        return_amount_ore=12500,
        vat_ore={25: -2500},
    )
    assert encode_frame(messages.register_receipt(2, returned)) == (
        b"#!#059#RR#2#202402011015#43#TILL1#5567890123#-125,00#125,00#normal"
        b"#25,00;-25,00# # # #0E\r"
    )


def test_every_vat_rate_has_its_field_and_zero_percent_present_is_not_blank():
    copy = receipt(
        date_time=datetime(2024, 6, 30, 14, 59),
        receipt_number=1001,
        till_id="KASSA-2",
        org_number="195001011234",
        total_ore=10730,
        kind=ReceiptKind.COPY,
        vat_ore={0: 0, 6: 57, 12: 107, 25: 2000},  # any order in, the fields' order out
    )
    assert encode_frame(messages.register_receipt(7, copy)) == (
        b"#!#073#RR#7#202406301459#1001#KASSA-2#195001011234#107,30#0,00#kopia"
        b"#25,00;20,00#12,00;1,07#6,00;0,57#0,00;0,00#3A\r"
    )


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        (ReceiptKind.NORMAL, "normal"),
        (ReceiptKind.COPY, "kopia"),
        (ReceiptKind.PRO_FORMA, "profo"),
        # Not in controlunit.md: one constant, to be checked against the unit's manual.
        (ReceiptKind.TRAINING, fields.TRAINING_TYPE),
    ],
)
def test_each_receipt_kind_has_its_wire_name(kind, name):
    assert messages.register_receipt(1, receipt(kind=kind)).split("#")[8] == name


def test_v1_sends_start_header_with_two_blank_fields_after_the_till_id_and_signature_query():
    assert encode_frame(messages.start_receipt()) == b"#!#00D#ST#62\r"
    assert encode_frame(messages.receipt_header(receipt())) == (
        b"#!#057#RH#202401311230#42#TILL1# # #5567890123#125,00#0,00#normal#25,00;25,00# # # #09\r"
    )
    assert encode_frame(messages.signature_query()) == b"#!#00D#SQ#67\r"


# Values refused before anything is sent -------------------------------------------


@pytest.mark.parametrize("rate", [7, 8, 24, 26, 100, -25])
def test_a_vat_rate_other_than_25_12_6_0_is_refused_before_anything_is_sent(rate):
    with pytest.raises(ReceiptInvalid, match=r"25, 12, 6 and 0 %"):
        receipt(vat_ore={rate: 100})


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"org_number": "556789-0123"}, "without the hyphen"),
        ({"org_number": "55678"}, "10 or 12 digits"),
        ({"till_id": "TILL#1"}, "till id"),
        ({"till_id": ""}, "till id"),
        ({"receipt_number": 0}, "positive"),
        ({"total_ore": 125.0}, "int in öre"),
        ({"return_amount_ore": -100}, "positive figure"),
        ({"vat_ore": {0: 5}}, "0 %"),
        ({"vat_ore": {25: 2.5}}, "int in öre"),
        ({"date_time": datetime(1999, 12, 31, 23, 59)}, "2000"),
        ({"kind": "normal"}, "ReceiptKind"),
    ],
)
def test_a_receipt_a_unit_would_refuse_cannot_be_built(change, named):
    with pytest.raises(ReceiptInvalid, match=named):
        receipt(**change)


def test_amounts_exist_with_decimal_commas_only_at_the_wire():
    assert [fields.format_amount(v) for v in (0, 1, 99, 100, 12500, 12345678, -5)] == [
        "0,00",
        "0,01",
        "0,99",
        "1,00",
        "125,00",
        "123456,78",
        "-0,05",
    ]
    assert fields.parse_amount("125,00") == 12500
    with pytest.raises(CcspProtocolError, match=r"'125\.00' is not kronor,öre"):
        fields.parse_amount("125.00")


# Replies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("0", MainStatus.OK),
        ("1", MainStatus.WARNING),
        ("2", MainStatus.PROTOCOL_ERROR),
        ("3", MainStatus.NON_FATAL_ERROR),
        ("4", MainStatus.FATAL_ERROR),
        ("5", MainStatus.BUSY),
    ],
)
def test_status_reply_field_4_is_the_main_status(code, status):
    message = f"SIR#{code}"
    assert messages.parse_status_reply(wire(encode_frame(message))) is status


def test_status_reply_frame_as_a_unit_sends_it():
    assert messages.parse_status_reply(wire(b"#!#010#SIR#1#4A\r")) is MainStatus.WARNING


def test_identity_reply_fields_4_5_6_are_unit_id_protocol_and_firmware():
    assert messages.parse_identity_reply(wire(b"#!#01C#IR#CC1234#2#1.2.3#5D\r")) == (
        UnitIdentity("CC1234", 2, "1.2.3")
    )


def test_registration_reply_fields_4_5_7_are_code_unit_id_and_storage():
    reply = wire(b"#!#020#RRR#ABC123#CC1234#1#1#35\r")
    assert messages.parse_registration_reply(reply) == (
        Registration("ABC123", "CC1234", StorageStatus.HIGH_LEVEL_WARNING)
    )


@pytest.mark.parametrize(
    ("storage", "status"),
    [
        ("0", StorageStatus.OK),
        ("1", StorageStatus.HIGH_LEVEL_WARNING),
        ("2", StorageStatus.MEMORY_FULL),
    ],
)
def test_storage_status_codes(storage, status):
    reply = messages.parse_message(f"RRR#CODE#UNIT#1#{storage}")
    assert messages.parse_registration_reply(reply).storage is status


def test_signature_reply_field_4_is_the_control_code():
    assert messages.parse_signature_reply(wire(b"#!#014#SR#ABC123#46\r")) == "ABC123"


# controlunit.md "NAK replies", written out here, not taken from the code.
NAK_TABLE = [
    ("001", naks.InvalidLrc, "invalid LRC", RefusalReason.PROTOCOL),
    ("002", naks.UnknownMessageType, "unknown message type", RefusalReason.PROTOCOL),
    ("003", naks.InvalidData, "invalid data", RefusalReason.INVALID_RECEIPT),
    ("004", naks.InvalidSequence, "invalid sequence", RefusalReason.PROTOCOL),
    ("006", naks.NotOperational, "not operational", RefusalReason.NOT_OPERATIONAL),
    ("007", naks.InvalidPosId, "invalid POS id", RefusalReason.INVALID_TILL_ID),
    ("008", naks.InternalError, "internal error", RefusalReason.INTERNAL_ERROR),
    ("009", naks.LicenceExceeded, "licence exceeded", RefusalReason.LICENCE_EXCEEDED),
    ("010", naks.StorageFull, "internal storage full", RefusalReason.STORAGE_FULL),
    ("011", naks.InvalidSequenceNumber, "invalid sequence number", RefusalReason.PROTOCOL),
]


@pytest.mark.parametrize(("code", "cls", "meaning", "reason"), NAK_TABLE)
def test_each_nak_code_is_its_own_typed_error(code, cls, meaning, reason):
    nak = messages.parse_message(f"NAK#{code}")
    error = naks.nak_error("RR (receipt 42)", messages.nak_code(nak))
    assert type(error) is cls
    assert error.reason is reason
    assert error.code == code
    text = str(error)
    assert f"NAK {code} ({meaning})" in text and "RR (receipt 42)" in text
    assert "nothing was registered" in text


def test_nak_frame_as_a_unit_sends_it():
    assert messages.nak_code(wire(b"#!#012#NAK#010#44\r")) == "010"


def test_an_unknown_nak_code_is_still_a_refusal_naming_the_code():
    error = naks.nak_error("SIQ", "099")
    assert isinstance(error, naks.NakError) and error.code == "099"
    assert "NAK 099" in str(error) and error.reason is RefusalReason.OTHER


# Malformed input, named --------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "named"),
    [
        (b"#!#00E#SIQ#2E\r", "bad LRC: the frame says 2E, its characters give 2F"),
        (b"#!#00F#SIQ#2F\r", "length field says 15 bytes, the frame has 14"),
        (b"#!#00E#SIQ#2F\n", "does not end with CR"),
        (b"#?#00E#SIQ#2F\r", "does not start with #!#"),
        (b"#!#0XE#SIQ#2F\r", "bad length field"),
        (b"#!#00E#SIQ!2F\r", "bad LRC field"),
        (b"#!#00C##2F\r", "too short"),
    ],
)
def test_a_malformed_frame_is_refused_naming_what_is_wrong(frame, named):
    with pytest.raises(CcspProtocolError, match=named):
        decode_frame(frame)


def test_only_a_wrong_lrc_is_an_lrc_mismatch():
    with pytest.raises(LrcMismatch):
        decode_frame(b"#!#00E#SIQ#2E\r")
    with pytest.raises(CcspProtocolError) as caught:
        decode_frame(b"#!#00F#SIQ#2F\r")
    assert not isinstance(caught.value, LrcMismatch)


def test_a_reply_missing_a_field_names_the_field():
    with pytest.raises(CcspProtocolError, match="IR has no field 6"):
        messages.parse_identity_reply(messages.parse_message("IR#CC1234#2"))
    with pytest.raises(CcspProtocolError, match="storage status '7'"):
        messages.parse_registration_reply(messages.parse_message("RRR#C#U#1#7"))


def test_the_decoder_reports_noise_and_still_finds_the_frame_after_it():
    events = FrameDecoder().feed(b"\x00garbage#!#00E#SIQ#2F\r\r\n")
    assert events[0] == FrameError("8 bytes outside a frame ignored: b'\\x00garbage'")
    assert events[1:] == [Frame("SIQ")]


def test_the_decoder_drops_a_broken_frame_when_a_new_one_starts_inside_it():
    events = FrameDecoder().feed(b"#!#055#RR#1#2024#!#00E#SIQ#2F\r")
    assert isinstance(events[0], FrameError) and "broken frame" in events[0].reason
    assert events[1] == Frame("SIQ")


def test_the_decoder_flags_a_bad_lrc_so_a_unit_can_answer_nak_001():
    (event,) = FrameDecoder().feed(b"#!#00E#SIQ#00\r")
    assert isinstance(event, FrameError) and event.bad_lrc


def test_the_decoder_gives_up_on_a_frame_without_cr_after_the_longest_length():
    decoder = FrameDecoder()
    events = decoder.feed(b"#!#FFF#" + b"A" * 5000)
    assert any("no CR within 4095 bytes" in e.reason for e in events if isinstance(e, FrameError))
    assert decoder.feed(b"#!#00E#SIQ#2F\r")[-1] == Frame("SIQ")
