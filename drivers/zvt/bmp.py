"""ZVT bitmaps (BMPs): the `id value` fields in a command or status information.

Each BMP has a fixed size, an LLVAR/LLLVAR length prefix, or is the BMP 06
TLV container. An unknown BMP cannot be skipped (its length is unknowable),
so it is an error naming the BMP and its offset. Track data, CVV and PIN
material are parsed past but never kept (CONTRACT.md: never store them).
"""

from __future__ import annotations

import re

from .bcd import decode_digits, decode_var_length, encode_bcd, encode_var_length
from .errors import ZvtProtocolError
from .tlv import _read_length

LLVAR = -2
LLLVAR = -3
TLV = -6

# BMP id -> size in bytes, or LLVAR/LLLVAR/TLV. From the public ZVT spec's
# "summary of utilised BMPs"; zvt.md lists the ones the driver interprets.
BMP_FORMATS: dict[int, int] = {
    0x01: 1,  # timeout
    0x02: 1,  # max. status infos
    0x03: 1,  # service byte
    0x04: 6,  # amount, BCD minor units
    0x05: 1,  # pump number
    0x06: TLV,  # TLV container
    0x0B: 3,  # trace number, BCD
    0x0C: 3,  # time HHMMSS, BCD
    0x0D: 2,  # date MMDD, BCD
    0x0E: 2,  # expiry YYMM, BCD
    0x17: 2,  # card sequence number, BCD
    0x19: 1,  # payment type / status byte
    0x22: LLVAR,  # PAN, BCD, E = masked digit
    0x23: LLVAR,  # track 2 (never kept)
    0x24: LLLVAR,  # track 3 (never kept)
    0x27: 1,  # result code
    0x29: 4,  # terminal id, BCD
    0x2A: 15,  # VU number, ASCII
    0x2D: LLVAR,  # track 1 (never kept)
    0x2E: LLLVAR,  # synchronous chip data
    0x37: 3,  # trace number of the original transaction, BCD
    0x3A: 2,  # CVV/CVC (never kept)
    0x3B: 8,  # authorisation code (AID)
    0x3C: LLLVAR,  # additional data / additional text
    0x3D: 3,  # password, BCD
    0x49: 2,  # currency code, BCD
    0x60: LLLVAR,  # individual totals (end of day)
    0x87: 2,  # receipt number, BCD
    0x88: 3,  # turnover record number, BCD
    0x8A: 1,  # card type id
    0x8B: LLVAR,  # card name, ASCII, NUL-terminated
    0x8C: 1,  # card type id of the network operator
    0x92: LLLVAR,  # additional data ec-cash with chip
    0x9A: LLLVAR,  # Geldkarte payment record
    0xA0: 1,  # result code of the authorisation system
    0xA7: LLVAR,  # chip data, EF_ID
    0xAA: 3,  # date YYMMDD, BCD
    0xAF: LLLVAR,  # EF_Info
    0xBA: 5,  # AID parameter
    0xD0: 1,
    0xD1: LLVAR,
    0xD2: 1,
    0xD3: 1,
    0xE0: 1,
    0xE1: LLVAR,
    0xE2: LLVAR,
    0xE3: LLVAR,
    0xE4: LLVAR,
    0xE5: LLVAR,
    0xE6: LLVAR,
    0xE7: LLVAR,
    0xE8: LLVAR,
    0xE9: 1,
    0xEA: 1,
    0xEB: 8,
    0xF0: 1,
    0xF1: LLVAR,
    0xF2: LLVAR,
    0xF3: LLVAR,
    0xF4: LLVAR,
    0xF5: LLVAR,
    0xF6: LLVAR,
    0xF7: LLVAR,
    0xF8: LLVAR,
    0xF9: 1,
    0xFA: 1,
    0xFB: 1,
    0xFC: 1,
    0xFD: 1,
    0xFE: 1,
}

SECRET_BMPS = frozenset({0x23, 0x24, 0x2D, 0x3A})  # track 2, track 3, track 1, CVV


def parse_bmps(data: bytes) -> dict[int, bytes]:
    """Split `data` into BMP id -> raw value (length prefixes removed).

    Secret BMPs (track data, CVV) map to b"" so their content is dropped here.
    """
    values: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        bmp = data[pos]
        size = BMP_FORMATS.get(bmp)
        if size is None:
            raise ZvtProtocolError(
                f"unknown BMP {bmp:02X} at offset {pos}: its length cannot be known, "
                "so the rest of the message cannot be read"
            )
        pos += 1
        if size == TLV:
            length, start = _read_length(data, pos, 0x06)
        elif size in (LLVAR, LLLVAR):
            digits = -size
            prefix = data[pos : pos + digits]
            if len(prefix) < digits:
                raise ZvtProtocolError(f"BMP {bmp:02X}: length prefix truncated at offset {pos}")
            length = decode_var_length(prefix, f"BMP {bmp:02X}")
            start = pos + digits
        else:
            length, start = size, pos
        end = start + length
        if end > len(data):
            raise ZvtProtocolError(
                f"BMP {bmp:02X} at offset {pos - 1}: needs {length} bytes, "
                f"{len(data) - start} left (truncated message)"
            )
        values[bmp] = b"" if bmp in SECRET_BMPS else bytes(data[start:end])
        pos = end
    return values


def encode_bmp(bmp: int, value: bytes) -> bytes:
    size = BMP_FORMATS.get(bmp)
    if size is None:
        raise ValueError(f"unknown BMP {bmp:02X}")
    if size == TLV:
        from .tlv import encode_length

        return bytes((bmp,)) + encode_length(len(value)) + value
    if size in (LLVAR, LLLVAR):
        return bytes((bmp,)) + encode_var_length(len(value), -size) + value
    if len(value) != size:
        raise ValueError(f"BMP {bmp:02X} takes {size} bytes, not {len(value)}")
    return bytes((bmp,)) + value


# Typed values ---------------------------------------------------------------


def encode_amount(ore: int) -> bytes:
    """BMP 04's value: the amount in minor units (öre), 6 bytes BCD."""
    return encode_bcd(ore, 6)


def decode_amount(value: bytes) -> int:
    _size(value, 6, "amount (BMP 04)")
    return int(decode_digits(value, "amount (BMP 04)"))


def decode_bcd_number(value: bytes, size: int, what: str) -> int:
    _size(value, size, what)
    return int(decode_digits(value, what))


def decode_time(value: bytes) -> str:
    """BMP 0C: HHMMSS -> "HH:MM:SS"."""
    _size(value, 3, "time (BMP 0C)")
    t = decode_digits(value, "time (BMP 0C)")
    return f"{t[0:2]}:{t[2:4]}:{t[4:6]}"


def decode_date(value: bytes) -> str:
    """BMP 0D: MMDD -> "MM-DD" (ZVT sends no year)."""
    _size(value, 2, "date (BMP 0D)")
    d = decode_digits(value, "date (BMP 0D)")
    return f"{d[0:2]}-{d[2:4]}"


def decode_expiry(value: bytes) -> str:
    """BMP 0E: YYMM -> "YY/MM"."""
    _size(value, 2, "expiry (BMP 0E)")
    d = decode_digits(value, "expiry (BMP 0E)")
    return f"{d[0:2]}/{d[2:4]}"


def decode_terminal_id(value: bytes) -> str:
    _size(value, 4, "terminal id (BMP 29)")
    return decode_digits(value, "terminal id (BMP 29)")


def decode_ascii(value: bytes, what: str) -> str:
    """ASCII text with trailing NULs and spaces removed (BMP 8B is NUL-terminated)."""
    text = value.split(b"\x00", 1)[0]
    try:
        return text.decode("ascii").strip()
    except UnicodeDecodeError:
        # Terminals in the field use code page 437 for umlauts; latin-1 never fails.
        return text.decode("latin-1").strip()


def decode_masked_pan(value: bytes) -> str:
    """BMP 22's value to a PAN showing at most the first 6 and last 4 digits.

    Nibble E is a digit the terminal masked, F is padding (odd digit counts).
    A terminal that sends an unmasked PAN gets it masked here, at decode
    time, so a full PAN never leaves the codec (CONTRACT.md, zvt.md).
    """
    nibbles = [n for byte in value for n in (byte >> 4, byte & 0x0F)]
    chars: list[str] = []
    for index, nibble in enumerate(nibbles):
        if nibble <= 9:
            chars.append(str(nibble))
        elif nibble == 0xE:
            chars.append("*")
        elif nibble == 0xF and all(n == 0xF for n in nibbles[index:]):
            break
        else:
            raise ZvtProtocolError(f"PAN (BMP 22): nibble {nibble:X} is not a digit, E or F pad")
    return mask_pan("".join(chars))


def mask_pan(pan: str) -> str:
    """Keep the first 6 and last 4 characters; everything between becomes "*"."""
    if len(pan) <= 10:
        # Too short to show 6 + 4 without showing it all: show only the last 4.
        return "*" * max(0, len(pan) - 4) + pan[-4:]
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


_DIGIT_RUN = re.compile(r"(?<!\d)\d{13,19}(?!\d)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        n = int(char)
        if position % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def mask_card_numbers(text: str) -> str:
    """Mask anything in free text that could be a full card number.

    A terminal's receipt lines are its own text; a badly configured one may
    print the whole PAN there, and tilld keeps and prints those lines.
    """
    return _DIGIT_RUN.sub(
        lambda m: mask_pan(m.group()) if luhn_valid(m.group()) else m.group(), text
    )


def encode_pan(pan: str, *, mask: bool = True) -> bytes:
    """BMP 22's value (without the prefix): digits as BCD, masked digits as E, F-padded."""
    shown = mask_pan(pan) if mask else pan
    nibbles = "".join("e" if c == "*" else c for c in shown)
    if len(nibbles) % 2:
        nibbles += "f"
    return bytes.fromhex(nibbles)


def _size(value: bytes, size: int, what: str) -> None:
    if len(value) != size:
        raise ZvtProtocolError(f"{what}: {len(value)} bytes, expected {size}")
