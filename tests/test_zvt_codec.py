"""ZVT codec: every test vector of zvt.md byte for byte, and malformed input named clearly."""

from __future__ import annotations

import pytest

from drivers.zvt import messages
from drivers.zvt.apdu import Apdu, decode_apdu, encode_apdu
from drivers.zvt.bcd import decode_bcd, encode_bcd
from drivers.zvt.bmp import (
    decode_date,
    decode_expiry,
    decode_masked_pan,
    decode_time,
    encode_bmp,
    encode_pan,
    parse_bmps,
)
from drivers.zvt.errors import ZvtProtocolError
from drivers.zvt.framing import (
    Frame,
    FrameDecoder,
    FrameError,
    crc16_kermit,
    decode_frame,
    encode_frame,
)
from drivers.zvt.tlv import Tlv, decode_tlv, encode_tlv


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# zvt.md "Vectors" ------------------------------------------------------------

ACK_APDU = h("80 00 00")
ACK_FRAME = h("10 02 80 00 00 10 03 F5 1F")
VERSION_APDU = h("06 0F 0B F0 F0 F7 32 2E 31 34 2E 31 35 00")
VERSION_FRAME = h("10 02 06 0F 0B F0 F0 F7 32 2E 31 34 2E 31 35 00 10 03 B1 11")
SALE_APDU = h("06 01 07 04 00 00 00 00 10 00")
SALE_FRAME = h("10 02 06 01 07 04 00 00 00 00 10 10 00 10 03 62 91")
REGISTRATION_APDU = h("06 00 06 12 34 56 DE 09 78")
END_OF_DAY_APDU = h("06 50 03 12 34 56")
PLEASE_WAIT_APDU = h("04 FF 01 17")
SALE_TYPE_44_APDU = h("06 01 0E 02 01 04 00 00 00 00 10 00 19 44 49 09 78")


def test_vector_serial_ack_frame_both_ways():
    assert encode_frame(ACK_APDU) == ACK_FRAME
    assert decode_frame(ACK_FRAME) == ACK_APDU
    assert decode_apdu(ACK_APDU) == Apdu(0x80, 0x00)


def test_vector_completion_with_software_version_both_ways():
    assert decode_frame(VERSION_FRAME) == VERSION_APDU
    apdu = decode_apdu(VERSION_APDU)
    assert apdu.command == (0x06, 0x0F)
    state = messages.decode_status_enquiry_completion(apdu.data)
    assert state.software_version == "2.14.15"
    assert state.code == 0 and state.ready and state.text == "ready"
    assert encode_apdu(messages.status_enquiry_completion("2.14.15", 0)) == VERSION_APDU
    assert encode_frame(VERSION_APDU) == VERSION_FRAME


def test_vector_sale_of_10_00_with_doubled_dle_both_ways():
    assert encode_apdu(messages.authorisation(1000)) == SALE_APDU
    assert encode_frame(SALE_APDU) == SALE_FRAME
    assert decode_frame(SALE_FRAME) == SALE_APDU
    apdu = decode_apdu(SALE_APDU)
    assert apdu.command == (0x06, 0x01)
    assert parse_bmps(apdu.data) == {0x04: h("00 00 00 00 10 00")}
    assert messages.decode_amount_bmp(apdu.data) == 1000


def test_vector_registration_password_123456_config_de_eur_both_ways():
    assert encode_apdu(messages.registration("123456", 0xDE, messages.CURRENCY_EUR)) == (
        REGISTRATION_APDU
    )
    apdu = decode_apdu(REGISTRATION_APDU)
    assert apdu.command == (0x06, 0x00)
    assert messages.decode_password(apdu.data) == "123456"
    assert apdu.data[3] == 0xDE
    assert decode_bcd(apdu.data[4:6]) == 978


def test_vector_end_of_day_password_123456_both_ways():
    assert encode_apdu(messages.end_of_day("123456")) == END_OF_DAY_APDU
    apdu = decode_apdu(END_OF_DAY_APDU)
    assert apdu.command == (0x06, 0x50)
    assert messages.decode_password(apdu.data) == "123456"


def test_vector_intermediate_status_please_wait_both_ways():
    assert encode_apdu(messages.intermediate_status(0x17)) == PLEASE_WAIT_APDU
    status = messages.decode_intermediate_status(decode_apdu(PLEASE_WAIT_APDU))
    assert status.code == 0x17
    assert status.text == "please wait"


def test_vector_authorisation_with_payment_type_44_and_currency_both_ways():
    built = messages.authorisation(
        1000, max_status_infos=1, payment_type=0x44, currency=messages.CURRENCY_EUR
    )
    assert encode_apdu(built) == SALE_TYPE_44_APDU
    apdu = decode_apdu(SALE_TYPE_44_APDU)
    assert parse_bmps(apdu.data) == {
        0x02: h("01"),
        0x04: h("00 00 00 00 10 00"),
        0x19: h("44"),
        0x49: h("09 78"),
    }


# Codec facts from zvt.md -----------------------------------------------------


def test_crc16_kermit_check_value():
    # The catalogued check value of CRC-16/KERMIT over "123456789".
    assert crc16_kermit(b"123456789") == 0x2189


def test_extended_length_ff_lo_hi():
    data = bytes(range(256)) * 2
    encoded = encode_apdu(Apdu(0x06, 0xD3, data))
    assert encoded[:5] == h("06 D3 FF 00 02")
    assert decode_apdu(encoded) == Apdu(0x06, 0xD3, data)


def test_amount_is_bcd_in_ore():
    assert encode_bcd(123456, 6) == h("00 00 00 12 34 56")


def test_status_information_decodes_every_storable_field():
    pan = "4111111111111111"
    info = messages.status_information(
        [
            (0x27, h("00")),
            (0x04, h("00 00 00 00 25 50")),
            (0x0B, h("00 01 23")),
            (0x0C, h("14 30 59")),
            (0x0D, h("12 24")),
            (0x0E, h("28 12")),
            (0x19, h("40")),
            (0x22, encode_pan(pan, mask=True)),
            (0x29, h("52 50 00 01")),
            (0x2A, b"VU-NUMBER-12345"),
            (0x3B, b"AUTH0042"),
            (0x49, h("07 52")),
            (0x87, h("00 42")),
            (0x8A, h("0A")),
            (0x8B, b"VISA\x00"),
            (0x8C, h("0A")),
            (0x06, encode_tlv([Tlv(0x41, h("0A"))])),
        ]
    )
    tx = messages.decode_status_information(info.data)
    assert tx.result_code == 0 and tx.approved and tx.result_text == "approved"
    assert tx.amount == 2550
    assert tx.trace == 123
    assert tx.masked_pan == "411111******1111"
    assert tx.terminal_id == "52500001"
    assert tx.auth_code == "AUTH0042"
    assert tx.receipt_no == 42
    assert tx.brand == "visa" and tx.card_name == "VISA"
    assert tx.offline is True
    bmps = parse_bmps(info.data)
    assert decode_time(bmps[0x0C]) == "14:30:59"
    assert decode_date(bmps[0x0D]) == "12-24"
    assert decode_expiry(bmps[0x0E]) == "28/12"


@pytest.mark.parametrize(
    ("card_type", "brand"),
    [
        (0x05, "girocard"),
        (0x06, "mastercard"),
        (0x08, "amex"),
        (0x0A, "visa"),
        (0x0B, "visa-electron"),
        (0x0D, "vpay"),
        (0x2E, "maestro"),
        (0xC4, "dankort"),
    ],
)
def test_card_type_ids_map_to_brands(card_type, brand):
    info = messages.status_information([(0x27, h("00")), (0x8A, bytes((card_type,)))])
    assert messages.decode_status_information(info.data).brand == brand


def test_card_type_ff_reads_tlv_tag_41():
    info = messages.status_information(
        [(0x27, h("00")), (0x8A, h("FF")), (0x06, encode_tlv([Tlv(0x41, h("2E"))]))]
    )
    assert messages.decode_status_information(info.data).brand == "maestro"


def test_online_payment_type_is_not_offline():
    info = messages.status_information([(0x27, h("00")), (0x19, h("60"))])
    assert messages.decode_status_information(info.data).offline is False


def test_pan_with_masked_nibbles_e_and_padding_f():
    # 15 digits (Amex): F pads the last nibble; E marks a masked digit.
    value = h("37 82 82 EE EE E1 00 5F")
    assert decode_masked_pan(value) == "378282*****1005"


def test_unmasked_pan_from_a_terminal_is_masked_at_decode_time():
    full = encode_pan("5555555555554444", mask=False)
    assert full == h("55 55 55 55 55 55 44 44")
    assert decode_masked_pan(full) == "555555******4444"
    info = messages.status_information([(0x27, h("00")), (0x22, full)])
    tx = messages.decode_status_information(info.data)
    assert tx.masked_pan == "555555******4444"
    assert "5555555555554444" not in repr(tx)


def test_pan_llvar_prefix_is_byte_count():
    assert encode_bmp(0x22, encode_pan("4111111111111111"))[:3] == h("22 F0 F8")


def test_track_data_and_cvv_are_never_kept():
    data = encode_bmp(0x23, b"4111111111111111=2812") + encode_bmp(0x3A, h("12 34"))
    assert parse_bmps(data) == {0x23: b"", 0x3A: b""}


def test_text_block_lines_come_out_in_order():
    apdu = messages.text_block(["line one", "line two"])
    assert messages.decode_text_block(decode_apdu(encode_apdu(apdu))) == ["line one", "line two"]


def test_print_line_drops_the_attribute_byte():
    assert messages.decode_print_line(messages.print_line("TOTAL 10,00")) == "TOTAL 10,00"


def test_tlv_ber_lengths_81_and_82():
    long_value = bytes(300)
    encoded = encode_tlv([Tlv(0x1F07, h("01")), Tlv(0x07, bytes(200)), Tlv(0x14, long_value)])
    assert h("07 81 C8") in encoded
    assert h("14 82 01 2C") in encoded
    items = decode_tlv(encoded)
    assert [i.tag for i in items] == [0x1F07, 0x07, 0x14]
    assert items[2].value == long_value


def test_totals_sum_counts_and_amounts():
    value = messages.encode_totals(1, 9, [(2, 1000), (0, 0), (3, 2500)])
    assert messages.decode_totals(value) == (5, 3500)


def test_frame_decoder_separates_ack_nak_and_frames_fed_byte_by_byte():
    stream = h("06") + SALE_FRAME + h("15")
    decoder = FrameDecoder()
    events = [e for byte in stream for e in decoder.feed(bytes((byte,)))]
    assert [type(e).__name__ for e in events] == ["LineByte", "Frame", "LineByte"]
    assert events[1] == Frame(SALE_APDU)


# Malformed input: ZvtProtocolError naming the fault, never another exception ---


@pytest.mark.parametrize(
    ("parse", "data", "message"),
    [
        (decode_frame, h("10 02 80 00 00 10 03 F5 1E"), "bad CRC"),
        (decode_frame, h("10 02 80 00 00 10 03"), "truncated frame"),
        (decode_frame, h("10 02 80 10 07 00"), "invalid escape"),
        (decode_apdu, h("06 01"), "truncated APDU"),
        (decode_apdu, h("06 01 07 04 00"), "truncated APDU"),
        (decode_apdu, h("06 01 FF 10"), "truncated APDU"),
        (decode_apdu, h("80 00 00 00"), "after its declared length"),
        (parse_bmps, h("27 00 5B 01"), "unknown BMP 5B"),
        (parse_bmps, h("22 F9 F9 41 11"), "BMP 22"),
        (parse_bmps, h("22 F0 AB"), "length prefix"),
        (parse_bmps, h("04 00 00"), "truncated"),
        (decode_tlv, h("1F 07 82 FF FF 00"), "runs past"),
        (decode_tlv, h("07 85 00 00 00 00 01"), "not 81 or 82"),
        (messages.decode_status_information, h("04 00 00 00 00 10 00"), "BMP 27"),
        (messages.decode_status_information, h("27 00 04 00 00 00 00 1A 00"), "not BCD"),
        (messages.decode_status_enquiry_completion, h("F0 F0 F9 41"), "truncated"),
    ],
)
def test_malformed_input_raises_a_named_protocol_error(parse, data, message):
    with pytest.raises(ZvtProtocolError, match=message):
        parse(data)


def test_frame_decoder_reports_bad_crc_as_an_event_to_nak():
    decoder = FrameDecoder()
    events = decoder.feed(h("10 02 80 00 00 10 03 00 00"))
    assert len(events) == 1 and isinstance(events[0], FrameError)
    assert "bad CRC" in events[0].reason
    assert decoder.feed(ACK_FRAME) == [Frame(ACK_APDU)]


def test_a_full_card_number_in_a_terminal_receipt_line_is_masked() -> None:
    from drivers.zvt.bmp import mask_card_numbers

    line = "VISA 4111111111111111 AID A0000000031010 TRACE 0000123456789"
    assert mask_card_numbers(line) == "VISA 411111******1111 AID A0000000031010 TRACE 0000123456789"
    assert mask_card_numbers("receipt 0042  trace 000042") == "receipt 0042  trace 000042"
