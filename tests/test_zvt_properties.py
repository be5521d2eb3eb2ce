"""ZVT codec properties: encode/decode round trips, and no input crashes or hangs a parser."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.zvt import messages
from drivers.zvt.apdu import Apdu, decode_apdu, encode_apdu
from drivers.zvt.bcd import decode_bcd, encode_bcd
from drivers.zvt.bmp import (
    BMP_FORMATS,
    LLLVAR,
    LLVAR,
    SECRET_BMPS,
    TLV,
    decode_amount,
    decode_masked_pan,
    encode_amount,
    encode_bmp,
    encode_pan,
    mask_pan,
    parse_bmps,
)
from drivers.zvt.errors import ZvtProtocolError
from drivers.zvt.framing import Frame, FrameDecoder, decode_frame, encode_frame
from drivers.zvt.tlv import Tlv, decode_tlv, encode_tlv

# A generous per-example deadline: a parser that loops on some input fails it.
bounded = settings(deadline=500, max_examples=300)

apdus = st.builds(
    Apdu,
    st.integers(0, 255),
    st.integers(0, 255),
    st.one_of(st.binary(max_size=300), st.binary(min_size=255, max_size=700)),
)


@bounded
@given(apdus)
def test_apdu_round_trip(apdu):
    assert decode_apdu(encode_apdu(apdu)) == apdu


@bounded
@given(st.binary(max_size=600))
def test_frame_round_trip(raw):
    assert decode_frame(encode_frame(raw)) == raw


@bounded
@given(st.binary(max_size=200), st.lists(st.integers(1, 50), max_size=10))
def test_frame_decoder_gets_the_frame_whatever_the_chunking(raw, cuts):
    stream = encode_frame(raw)
    decoder = FrameDecoder()
    events, pos = [], 0
    for cut in [*cuts, len(stream)]:
        events += decoder.feed(stream[pos : pos + cut])
        pos += cut
    events += decoder.feed(stream[pos:])
    assert events == [Frame(raw)]


@bounded
@given(st.integers(0, 10**12 - 1))
def test_bcd_amount_round_trip(ore):
    assert decode_amount(encode_amount(ore)) == ore
    assert decode_bcd(encode_bcd(ore, 6)) == ore


def bmp_value(bmp: int) -> st.SearchStrategy[bytes]:
    size = BMP_FORMATS[bmp]
    if size == LLVAR:
        return st.binary(max_size=99)
    if size == LLLVAR:
        return st.binary(max_size=300)
    if size == TLV:
        return tlv_lists.map(encode_tlv)
    return st.binary(min_size=size, max_size=size)


primitive_tags = st.sampled_from([0x07, 0x14, 0x41, 0x1F07, 0x1F10, 0x9F1A])
constructed_tags = st.sampled_from([0x21, 0x25, 0x2F])
tlvs = st.recursive(
    st.builds(Tlv, primitive_tags, st.binary(max_size=300)),
    lambda children: st.builds(
        lambda tag, kids: Tlv(tag, b"", tuple(kids)),
        constructed_tags,
        st.lists(children, max_size=4),
    ),
    max_leaves=12,
)
tlv_lists = st.lists(tlvs, max_size=5)


@bounded
@given(tlv_lists)
def test_tlv_round_trip(items):
    assert decode_tlv(encode_tlv(items)) == tuple(items)


plain_bmps = sorted(set(BMP_FORMATS) - SECRET_BMPS)


@bounded
@given(
    st.lists(st.sampled_from(plain_bmps), unique=True, max_size=8).flatmap(
        lambda ids: st.tuples(*(st.tuples(st.just(i), bmp_value(i)) for i in ids))
    )
)
def test_bmp_round_trip(pairs):
    data = b"".join(encode_bmp(bmp, value) for bmp, value in pairs)
    assert parse_bmps(data) == dict(pairs)


@bounded
@given(st.text("0123456789", min_size=12, max_size=19))
def test_pan_never_decodes_to_more_than_first_6_and_last_4(pan):
    for value in (encode_pan(pan, mask=True), encode_pan(pan, mask=False)):
        masked = decode_masked_pan(value)
        assert masked == mask_pan(pan)
        assert masked[:6] == pan[:6] and masked[-4:] == pan[-4:]
        assert set(masked[6:-4]) <= {"*"}


PARSERS = [
    decode_apdu,
    decode_frame,
    parse_bmps,
    decode_tlv,
    messages.decode_status_information,
    messages.decode_status_enquiry_completion,
    lambda data: messages.decode_text_block(Apdu(0x06, 0xD3, data)),
    lambda data: messages.decode_print_line(Apdu(0x06, 0xD1, data)),
    lambda data: messages.decode_intermediate_status(Apdu(0x04, 0xFF, data)),
    messages.decode_totals,
    decode_masked_pan,
]

# Random bytes, and bytes that look like ZVT (known BMP ids, F-digit prefixes,
# DLE/STX/ETX) so the parsers' deeper paths get exercised too.
zvt_like = st.lists(
    st.one_of(
        st.integers(0, 255),
        st.sampled_from([0x10, 0x02, 0x03, 0x06, 0x15, 0xF0, 0xF9, 0xFF, 0x81, 0x82]),
        st.sampled_from(sorted(BMP_FORMATS)),
    ),
    max_size=400,
).map(bytes)


@settings(deadline=500, max_examples=500)
@given(st.one_of(st.binary(max_size=400), zvt_like))
def test_random_bytes_only_ever_raise_zvt_protocol_error(data):
    for parse in PARSERS:
        with contextlib.suppress(ZvtProtocolError):
            parse(data)


@bounded
@given(st.one_of(st.binary(max_size=2000), zvt_like))
def test_frame_decoder_never_raises_and_stays_bounded(data):
    decoder = FrameDecoder()
    events = decoder.feed(data)
    assert len(events) <= len(data)
