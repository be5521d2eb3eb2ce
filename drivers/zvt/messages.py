"""ZVT messages: build the ECR's commands and read the terminal's answers.

Pure functions from values to APDUs and back (zvt.md "Commands"); the
device (device.py) decides when to send what.
"""

from __future__ import annotations

from ..terminal import CardTransaction, IntermediateStatus, TerminalState
from . import codes
from .apdu import (
    ABORT,
    AUTHORISATION,
    END_OF_DAY,
    INTERMEDIATE_STATUS,
    REFUND,
    REGISTRATION,
    REPEAT_RECEIPT,
    REVERSAL,
    SEND_OFFLINE,
    STATUS_ENQUIRY,
    STATUS_INFORMATION,
    Apdu,
)
from .bcd import decode_var_length, encode_bcd, encode_var_length
from .bmp import (
    decode_amount,
    decode_ascii,
    decode_bcd_number,
    decode_masked_pan,
    decode_terminal_id,
    encode_amount,
    encode_bmp,
    parse_bmps,
)
from .errors import ZvtProtocolError
from .tlv import Tlv, decode_tlv, encode_tlv

CURRENCY_SEK = 752
CURRENCY_EUR = 978
# Registration config byte (zvt.md): 02/04 the ECR prints payment/admin
# receipts, 08 send intermediate status, 10/20 payment/admin functions only
# from the ECR, 80 receipts as text blocks.
CONFIG_ECR_RECEIPTS = 0x02 | 0x04
CONFIG_INTERMEDIATE_STATUS = 0x08
CONFIG_ECR_CONTROLS = 0x10 | 0x20
CONFIG_TEXT_BLOCKS = 0x80
DEFAULT_CONFIG = (
    CONFIG_ECR_RECEIPTS | CONFIG_INTERMEDIATE_STATUS | CONFIG_ECR_CONTROLS | CONFIG_TEXT_BLOCKS
)

TLV_PRINT_TEXTS = 0x25  # constructed: the lines of a text block (06 D3)
TLV_TEXT_LINE = 0x07
TLV_RECEIPT_TYPE = 0x1F07


def encode_password(password: str) -> bytes:
    """The ZVT password: six digits as 3 bytes BCD (config `devices.terminal.password`)."""
    if len(password) != 6 or not password.isdigit():
        raise ValueError("the ZVT password must be exactly six digits (e.g. 000000)")
    return bytes.fromhex(password)


def decode_password(data: bytes) -> str:
    if len(data) < 3:
        raise ZvtProtocolError(f"password truncated: {len(data)} of 3 bytes")
    text = data[:3].hex()
    if not text.isdigit():
        raise ZvtProtocolError(f"password {data[:3].hex(' ')} is not BCD")
    return text


# Commands (ECR -> terminal) ---------------------------------------------------


def registration(password: str, config: int = DEFAULT_CONFIG, currency: int | None = None) -> Apdu:
    data = encode_password(password) + bytes((config,))
    if currency is not None:
        data += encode_bcd(currency, 2)
    return Apdu(*REGISTRATION, data)


def authorisation(
    amount: int,
    *,
    currency: int | None = None,
    payment_type: int | None = None,
    max_status_infos: int | None = None,
) -> Apdu:
    """06 01. BMP order 02, 04, 19, 49 reproduces zvt.md's published capture byte for byte."""
    if amount <= 0:
        raise ValueError(f"an authorisation needs a positive amount in öre, not {amount}")
    data = b""
    if max_status_infos is not None:
        data += encode_bmp(0x02, bytes((max_status_infos,)))
    data += encode_bmp(0x04, encode_amount(amount))
    if payment_type is not None:
        data += encode_bmp(0x19, bytes((payment_type,)))
    if currency is not None:
        data += encode_bmp(0x49, encode_bcd(currency, 2))
    return Apdu(*AUTHORISATION, data)


def decode_amount_bmp(data: bytes) -> int:
    """The amount (BMP 04) of a command's BMPs, e.g. an authorisation's, in öre."""
    bmps = parse_bmps(data)
    if 0x04 not in bmps:
        raise ZvtProtocolError("no amount (BMP 04) in the command")
    return decode_amount(bmps[0x04])


def reversal(password: str, receipt_no: int) -> Apdu:
    return Apdu(*REVERSAL, encode_password(password) + encode_bmp(0x87, encode_bcd(receipt_no, 2)))


def refund(password: str, amount: int) -> Apdu:
    if amount <= 0:
        raise ValueError(f"a refund needs a positive amount in öre, not {amount}")
    return Apdu(*REFUND, encode_password(password) + encode_bmp(0x04, encode_amount(amount)))


def abort() -> Apdu:
    return Apdu(*ABORT)


def status_enquiry(password: str) -> Apdu:
    return Apdu(*STATUS_ENQUIRY, encode_password(password))


def end_of_day(password: str) -> Apdu:
    return Apdu(*END_OF_DAY, encode_password(password))


def send_offline(password: str) -> Apdu:
    return Apdu(*SEND_OFFLINE, encode_password(password))


def repeat_receipt(password: str) -> Apdu:
    # 06 20 "repeat receipt": zvt.md is silent on recovering a result in doubt;
    # the public spec has the terminal re-send the last transaction's status
    # information (04 0F) and receipt, which is what last_transaction reads.
    return Apdu(*REPEAT_RECEIPT, encode_password(password))


# Terminal -> ECR ---------------------------------------------------------------


def intermediate_status(code: int) -> Apdu:
    return Apdu(*INTERMEDIATE_STATUS, bytes((code,)))


def decode_intermediate_status(apdu: Apdu) -> IntermediateStatus:
    if not apdu.data:
        raise ZvtProtocolError("intermediate status (04 FF) without a status byte")
    code = apdu.data[0]
    return IntermediateStatus(code, codes.intermediate_text(code))


def status_information(bmps: list[tuple[int, bytes]]) -> Apdu:
    return Apdu(*STATUS_INFORMATION, b"".join(encode_bmp(bmp, value) for bmp, value in bmps))


def decode_status_information(data: bytes) -> CardTransaction:
    """04 0F status information to the transaction it reports (only storable fields)."""
    bmps = parse_bmps(data)
    if 0x27 not in bmps:
        raise ZvtProtocolError("status information (04 0F) without a result code (BMP 27)")
    result = _byte(bmps[0x27], "result code (BMP 27)")
    brand = None
    if 0x8A in bmps:
        card_type = _byte(bmps[0x8A], "card type (BMP 8A)")
        if card_type == codes.CARD_TYPE_SEE_TLV and 0x06 in bmps:
            found = [t for item in decode_tlv(bmps[0x06]) for t in item.find(codes.TLV_CARD_TYPE)]
            if found and found[0].value:
                card_type = found[0].value[-1]
        brand = codes.brand_of(card_type)
    payment_type = _byte(bmps[0x19], "payment type (BMP 19)") if 0x19 in bmps else None
    return CardTransaction(
        amount=decode_amount(bmps[0x04]) if 0x04 in bmps else 0,
        result_code=result,
        result_text=codes.result_text(result),
        brand=brand,
        card_name=decode_ascii(bmps[0x8B], "card name (BMP 8B)") if 0x8B in bmps else None,
        masked_pan=decode_masked_pan(bmps[0x22]) if 0x22 in bmps else None,
        trace=decode_bcd_number(bmps[0x0B], 3, "trace (BMP 0B)") if 0x0B in bmps else None,
        receipt_no=decode_bcd_number(bmps[0x87], 2, "receipt no (BMP 87)")
        if 0x87 in bmps
        else None,
        auth_code=decode_ascii(bmps[0x3B], "auth code (BMP 3B)") or None if 0x3B in bmps else None,
        terminal_id=decode_terminal_id(bmps[0x29]) if 0x29 in bmps else None,
        # BMP 19 = 40 is the terminal's own word that it approved offline (zvt.md).
        offline=payment_type is not None and payment_type & 0xF0 == codes.PAYMENT_TYPE_OFFLINE,
    )


def decode_abort_code(apdu: Apdu) -> int:
    """06 1E <result code>; a bare 06 1E counts as FF "system error"."""
    return apdu.data[0] if apdu.data else 0xFF


def abort_from_terminal(code: int) -> Apdu:
    return Apdu(0x06, 0x1E, bytes((code,)))


def print_line(text: str, attribute: int = 0x00) -> Apdu:
    return Apdu(0x06, 0xD1, bytes((attribute,)) + text.encode("latin-1", "replace"))


def decode_print_line(apdu: Apdu) -> str:
    """06 D1: an attribute byte, then the text (the attribute is layout only)."""
    if not apdu.data:
        raise ZvtProtocolError("print line (06 D1) without its attribute byte")
    return decode_ascii(apdu.data[1:], "print line (06 D1)")


def text_block(lines: list[str], receipt_type: int = 1) -> Apdu:
    container = encode_tlv(
        [
            Tlv(TLV_RECEIPT_TYPE, bytes((receipt_type,))),
            Tlv(
                TLV_PRINT_TEXTS,
                children=tuple(
                    Tlv(TLV_TEXT_LINE, line.encode("latin-1", "replace")) for line in lines
                ),
            ),
        ]
    )
    return Apdu(0x06, 0xD3, encode_bmp(0x06, container))


def decode_text_block(apdu: Apdu) -> list[str]:
    """06 D3: a BMP 06 TLV container whose tag 25 holds text lines (tag 07)."""
    bmps = parse_bmps(apdu.data)
    if 0x06 not in bmps:
        raise ZvtProtocolError("text block (06 D3) without its TLV container (BMP 06)")
    lines = []
    for item in decode_tlv(bmps[0x06]):
        for block in item.find(TLV_PRINT_TEXTS):
            lines += [decode_ascii(line.value, "text line") for line in block.find(TLV_TEXT_LINE)]
    return lines


def status_enquiry_completion(software_version: str, terminal_status: int) -> Apdu:
    version = software_version.encode("ascii")
    return Apdu(
        0x06, 0x0F, encode_var_length(len(version), 3) + version + bytes((terminal_status,))
    )


def decode_status_enquiry_completion(data: bytes) -> TerminalState:
    """06 0F after 05 01: LLLVAR software version, terminal status byte, [06 TLV].

    The version is not a BMP (zvt.md's vector `06 0F 0B F0 F0 F7 "2.14.15" 00`),
    so this is read by position, not with parse_bmps.
    """
    if len(data) < 4:
        raise ZvtProtocolError(
            f"status enquiry completion of {len(data)} bytes: expected LLLVAR version + status"
        )
    length = decode_var_length(data[:3], "software version")
    end = 3 + length
    if end >= len(data):
        raise ZvtProtocolError(
            f"status enquiry completion truncated: version of {length} bytes, then no status byte"
        )
    version = decode_ascii(data[3:end], "software version")
    status = data[end]
    if end + 1 < len(data):
        parse_bmps(data[end + 1 :])  # an optional TLV container: validated, not needed
    return TerminalState(status, codes.terminal_status_text(status), version)


# End-of-day totals (BMP 60 "individual totals"): receipt number from and to
# (2 bytes BCD each), then for each of seven card groups a count (1 byte,
# binary) and a total (6 bytes BCD) -- the public spec's layout.
TOTALS_GROUPS = 7


def encode_totals(first_receipt: int, last_receipt: int, groups: list[tuple[int, int]]) -> bytes:
    padded = (groups + [(0, 0)] * TOTALS_GROUPS)[:TOTALS_GROUPS]
    out = encode_bcd(first_receipt, 2) + encode_bcd(last_receipt, 2)
    for count, total in padded:
        out += bytes((min(count, 255),)) + encode_amount(total)
    return out


def decode_totals(value: bytes) -> tuple[int, int]:
    """BMP 60 to (transaction count, total in öre) summed over the card groups."""
    expected = 4 + TOTALS_GROUPS * 7
    if len(value) < expected:
        raise ZvtProtocolError(f"individual totals (BMP 60): {len(value)} bytes, need {expected}")
    count = total = 0
    for offset in range(4, expected, 7):
        count += value[offset]
        total += decode_amount(value[offset + 1 : offset + 7])
    return count, total


def _byte(value: bytes, what: str) -> int:
    if len(value) != 1:
        raise ZvtProtocolError(f"{what}: {len(value)} bytes, expected 1")
    return value[0]
