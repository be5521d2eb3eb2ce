"""ZVT APDUs: `CLASS INSTR LEN data`, with the extended length `FF lo hi` (zvt.md "APDU")."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ZvtProtocolError

EXTENDED_LENGTH = 0xFF
MAX_DATA = 0xFFFF  # the extended length is two bytes


@dataclass(frozen=True)
class Apdu:
    cls: int
    instr: int
    data: bytes = b""

    @property
    def command(self) -> tuple[int, int]:
        return (self.cls, self.instr)

    def __repr__(self) -> str:
        return f"Apdu({self.cls:02X} {self.instr:02X}, {self.data.hex(' ')})"


# Commands and answers (zvt.md "Flow" and "Commands").
ACK = (0x80, 0x00)
REGISTRATION = (0x06, 0x00)
AUTHORISATION = (0x06, 0x01)
COMPLETION = (0x06, 0x0F)
ABORT_FROM_PT = (0x06, 0x1E)
REPEAT_RECEIPT = (0x06, 0x20)
REVERSAL = (0x06, 0x30)
REFUND = (0x06, 0x31)
END_OF_DAY = (0x06, 0x50)
SEND_OFFLINE = (0x06, 0x51)
DIAGNOSIS = (0x06, 0x70)
ABORT = (0x06, 0xB0)
PRINT_LINE = (0x06, 0xD1)
PRINT_TEXT_BLOCK = (0x06, 0xD3)
STATUS_INFORMATION = (0x04, 0x0F)
INTERMEDIATE_STATUS = (0x04, 0xFF)
STATUS_ENQUIRY = (0x05, 0x01)
NEGATIVE_ACK_CLASS = 0x84

POSITIVE_ACK = Apdu(0x80, 0x00)


def encode_apdu(apdu: Apdu) -> bytes:
    if not (0 <= apdu.cls <= 0xFF and 0 <= apdu.instr <= 0xFF):
        raise ValueError(f"class/instruction out of range in {apdu!r}")
    size = len(apdu.data)
    if size > MAX_DATA:
        raise ValueError(f"APDU data of {size} bytes exceeds the 65535-byte extended length")
    if size < EXTENDED_LENGTH:
        header = bytes((apdu.cls, apdu.instr, size))
    else:
        header = bytes((apdu.cls, apdu.instr, EXTENDED_LENGTH, size & 0xFF, size >> 8))
    return header + apdu.data


def apdu_size(buffer: bytes) -> int | None:
    """The whole APDU's size in bytes once the header is in `buffer`, else None.

    Used by stream readers (TCP has no framing: zvt.md "Transport") to know how
    much more to read; never reads past what is there.
    """
    if len(buffer) < 3:
        return None
    if buffer[2] != EXTENDED_LENGTH:
        return 3 + buffer[2]
    if len(buffer) < 5:
        return None
    return 5 + (buffer[3] | buffer[4] << 8)


def decode_apdu(data: bytes) -> Apdu:
    """Exactly one APDU; truncated or trailing bytes are errors."""
    size = apdu_size(data)
    if size is None:
        raise ZvtProtocolError(
            f"truncated APDU: {len(data)} bytes ({data.hex(' ')}) is shorter than its header"
        )
    if len(data) < size:
        raise ZvtProtocolError(
            f"truncated APDU {data[0]:02X} {data[1]:02X}: length says {size} bytes, got {len(data)}"
        )
    if len(data) > size:
        raise ZvtProtocolError(
            f"APDU {data[0]:02X} {data[1]:02X} has {len(data) - size} bytes after its "
            f"declared length of {size}"
        )
    header = 3 if data[2] != EXTENDED_LENGTH else 5
    return Apdu(data[0], data[1], bytes(data[header:]))
