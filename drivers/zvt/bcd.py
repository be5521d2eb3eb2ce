"""Packed BCD and the ZVT length prefixes (LLVAR/LLLVAR), pure functions over bytes."""

from __future__ import annotations

from .errors import ZvtProtocolError


def encode_bcd(value: int, size: int) -> bytes:
    """`value` as `size` bytes of packed BCD, most significant digit first (12 -> 00 12)."""
    if value < 0:
        raise ValueError(f"BCD cannot hold a negative number ({value})")
    digits = str(value).rjust(size * 2, "0")
    if len(digits) > size * 2:
        raise ValueError(f"{value} does not fit in {size} BCD bytes")
    return bytes.fromhex(digits)


def decode_bcd(data: bytes, what: str = "BCD field") -> int:
    """Packed BCD to an integer; a nibble above 9 is an error naming `what`."""
    text = data.hex()
    if not text.isdigit():
        raise ZvtProtocolError(f"{what}: {data.hex(' ')} is not BCD (a nibble above 9)")
    return int(text) if text else 0


def decode_digits(data: bytes, what: str) -> str:
    """BCD digits as text, keeping leading zeros (terminal ids, dates)."""
    text = data.hex()
    if not text.isdigit():
        raise ZvtProtocolError(f"{what}: {data.hex(' ')} is not BCD (a nibble above 9)")
    return text


def encode_var_length(length: int, digits: int) -> bytes:
    """The LLVAR (2) / LLLVAR (3) prefix: one byte F<digit> per decimal digit."""
    text = str(length).rjust(digits, "0")
    if len(text) > digits:
        raise ValueError(f"length {length} does not fit an {'L' * digits}VAR prefix")
    return bytes(0xF0 | int(d) for d in text)


def decode_var_length(prefix: bytes, what: str) -> int:
    """Read an LLVAR/LLLVAR prefix; each byte must be F0..F9."""
    length = 0
    for byte in prefix:
        if byte >> 4 != 0xF or byte & 0x0F > 9:
            raise ZvtProtocolError(f"{what}: length prefix {prefix.hex(' ')} is not F0..F9 digits")
        length = length * 10 + (byte & 0x0F)
    return length
