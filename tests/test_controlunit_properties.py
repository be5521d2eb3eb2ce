"""CleanCash codec properties: every frame round-trips, and no input crashes or hangs a parser."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.controlunit import (
    VAT_RATES,
    MainStatus,
    ReceiptKind,
    ReceiptRegistration,
    Registration,
    StorageStatus,
    UnitIdentity,
)
from drivers.controlunit.cleancash import fields, messages
from drivers.controlunit.cleancash.errors import CcspProtocolError
from drivers.controlunit.cleancash.framing import (
    MAX_MESSAGE,
    Frame,
    FrameDecoder,
    FrameError,
    decode_frame,
    encode_frame,
)

# A generous per-example deadline: a parser that loops on some input fails it.
bounded = settings(deadline=500, max_examples=300)

printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
short_texts = st.text(printable, min_size=1, max_size=60)
# Frames near the longest a 3-digit length allows, built cheaply: a random
# head and tail around a long run of one character.
longest_texts = st.builds(
    lambda head, fill, tail, size: (head + fill * size + tail)[:MAX_MESSAGE],
    st.text(printable, max_size=20),
    printable,
    st.text(printable, max_size=20),
    st.integers(MAX_MESSAGE - 45, MAX_MESSAGE),
)
message_texts = st.one_of(short_texts, st.text(printable, min_size=1, max_size=300), longest_texts)
field_texts = st.text(printable.filter(lambda ch: ch != "#"), min_size=1, max_size=20)

# The wire carries the minute: a receipt's time round-trips at that precision.
minutes = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59)).map(
    lambda moment: moment.replace(second=0, microsecond=0)
)
money = st.integers(-(10**12), 10**12)
vat = st.dictionaries(st.sampled_from(VAT_RATES), money).map(
    lambda amounts: {rate: 0 if rate == 0 else ore for rate, ore in amounts.items()}
)
receipts = st.builds(
    ReceiptRegistration,
    date_time=minutes,
    receipt_number=st.integers(1, 10**15 - 1),
    till_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", fullmatch=True),
    org_number=st.one_of(
        st.from_regex(r"[0-9]{10}", fullmatch=True), st.from_regex(r"[0-9]{12}", fullmatch=True)
    ),
    total_ore=money,
    return_amount_ore=st.integers(0, 10**12),
    kind=st.sampled_from(ReceiptKind),
    vat_ore=vat,
)
control_codes = st.text(printable.filter(lambda ch: ch not in "# "), min_size=1, max_size=40)


@bounded
@given(message_texts)
def test_every_message_frames_and_unframes_to_itself(message):
    frame = encode_frame(message)
    assert len(frame) == int(frame[3:6], 16) == len(message) + 11
    assert decode_frame(frame) == message


@bounded
@given(st.integers(1, 10**15 - 1), receipts)
def test_every_v2_registration_round_trips_through_its_frame(sequence, receipt):
    frame = encode_frame(messages.register_receipt(sequence, receipt))
    assert messages.parse_register_receipt(messages.parse_message(decode_frame(frame))) == (
        sequence,
        receipt,
    )


@bounded
@given(receipts)
def test_every_v1_receipt_header_round_trips_through_its_frame(receipt):
    frame = encode_frame(messages.receipt_header(receipt))
    assert messages.parse_receipt_header(messages.parse_message(decode_frame(frame))) == receipt


@bounded
@given(
    control_codes,
    field_texts,
    st.sampled_from(
        [StorageStatus.OK, StorageStatus.HIGH_LEVEL_WARNING, StorageStatus.MEMORY_FULL]
    ),
    st.integers(1, 10**6),
)
def test_every_registration_reply_round_trips(code, unit_id, storage, sequence):
    registration = Registration(code, unit_id.strip() or "U", storage)
    frame = encode_frame(messages.registration_reply(registration, sequence))
    assert messages.parse_registration_reply(messages.parse_message(decode_frame(frame))) == (
        registration
    )


@bounded
@given(field_texts, st.integers(0, 99), field_texts, st.sampled_from(MainStatus))
def test_every_identity_and_status_reply_round_trips(unit_id, version, firmware, main):
    identity = UnitIdentity(unit_id.strip() or "U", version, firmware.strip() or "F")
    reply = messages.parse_message(decode_frame(encode_frame(messages.identity_reply(identity))))
    assert messages.parse_identity_reply(reply) == identity
    reply = messages.parse_message(decode_frame(encode_frame(messages.status_reply(main))))
    assert messages.parse_status_reply(reply) is main


@bounded
@given(money)
def test_every_amount_round_trips_at_the_wire(ore):
    text = fields.format_amount(ore)
    assert "," in text and "." not in text
    assert fields.parse_amount(text) == ore


@bounded
@given(st.lists(message_texts, min_size=1, max_size=4), st.lists(st.integers(1, 400), max_size=20))
def test_the_decoder_finds_every_frame_whatever_the_chunking(texts, cuts):
    stream = b"".join(encode_frame(text) for text in texts)
    decoder, events, position = FrameDecoder(), [], 0
    for cut in cuts:
        events += decoder.feed(stream[position : position + cut])
        position += cut
    events += decoder.feed(stream[position:])
    assert events == [Frame(text) for text in texts]


@bounded
@given(message_texts, st.data())
def test_any_one_damaged_byte_makes_a_frame_an_error_never_another_message(message, data):
    frame = bytearray(encode_frame(message))
    position = data.draw(st.integers(0, len(frame) - 1))
    frame[position] ^= data.draw(st.integers(1, 255))
    try:
        decoded = decode_frame(bytes(frame))
    except CcspProtocolError:
        return
    raise AssertionError(f"damaged frame decoded as {decoded!r}")


# Random bytes, and bytes that look like CCSP (frame starts, hex digits, #, CR,
# real frames) so the decoder's deeper paths get exercised too.
ccsp_like = st.lists(
    st.one_of(
        st.binary(max_size=4),
        st.sampled_from([b"#!#", b"#", b"\r", b"\n", b"00E", b"FFF", b"SIQ", b"2F", b"NAK#010"]),
        short_texts.map(encode_frame),
    ),
    max_size=30,
).map(b"".join)


@settings(deadline=500, max_examples=500)
@given(st.one_of(st.binary(max_size=600), ccsp_like))
def test_random_bytes_give_a_clear_error_or_a_frame_never_another_exception(data):
    try:
        assert isinstance(decode_frame(data), str)
    except CcspProtocolError as exc:
        assert str(exc)
    events = FrameDecoder().feed(data)
    assert all(isinstance(event, Frame | FrameError) for event in events)
    assert all(event.reason for event in events if isinstance(event, FrameError))
    assert len(events) <= len(data)


REPLY_PARSERS = [
    messages.parse_status_reply,
    messages.parse_identity_reply,
    messages.parse_registration_reply,
    messages.parse_signature_reply,
    messages.nak_code,
    messages.parse_register_receipt,
    messages.parse_receipt_header,
]

ccsp_text = st.lists(
    st.one_of(
        st.text(printable, max_size=6),
        st.sampled_from(["#", "SIR", "IR", "RR", "RH", "NAK", "25,00;", " ", "0,00", "normal"]),
    ),
    max_size=20,
).map("".join)


@settings(deadline=500, max_examples=500)
@given(st.one_of(st.text(max_size=200), ccsp_text))
def test_any_text_into_the_message_parsers_gives_a_clear_error_or_a_value(text):
    try:
        message = messages.parse_message(text)
    except CcspProtocolError:
        return
    for parse in REPLY_PARSERS:
        try:
            parse(message)
        except CcspProtocolError as exc:
            assert str(exc)
