"""CCSP messages: the requests a till sends and the replies a unit gives, both ways.

Field numbers follow controlunit.md, which counts the `#`-separated parts of
the whole frame: parts 0-2 are the frame's `#!#` and length, field 3 is the
message type, field 4 the first field after it. `Message.field(4)` reads it.

Both directions are here because the simulator (drivers/sim) is the
driver's mirror: it parses what the driver builds and builds what the driver
parses, with the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ReceiptInvalid
from ..unit import (
    MainStatus,
    ReceiptRegistration,
    Registration,
    StorageStatus,
    UnitIdentity,
)
from . import fields
from .errors import CcspProtocolError
from .framing import MAX_MESSAGE, is_message_text

STATUS_QUERY = "SIQ"
STATUS_REPLY = "SIR"
IDENTITY_QUERY = "IQ"
IDENTITY_REPLY = "IR"
REGISTER_RECEIPT = "RR"  # protocol v2: one message registers a receipt
START_RECEIPT = "ST"  # protocol v1: ST, RH, SQ register a receipt
RECEIPT_HEADER = "RH"
SIGNATURE_QUERY = "SQ"
NAK = "NAK"

# The reply types below are NOT in controlunit.md: the open implementation
# never looks at them. The simulator sends these names and the driver accepts
# any type that is not NAK, SIR or IR in their place; check them against the
# unit's documentation.
REGISTRATION_REPLY = "RRR"
SIGNATURE_REPLY = "SR"
ACKNOWLEDGE = "ACK"  # the answer to ST and RH

# Protocol v1's RH carries the receipt fields of RR with two blank fields
# inserted. The open implementation inserts them after the first THREE
# receipt fields (date-time, receipt number, till id), before the
# organisation number; controlunit.md words it "after the first two". We
# follow the code; check it against the unit's documentation.
RH_BLANKS_AFTER = 3
RH_BLANK = " "

FIRST_FIELD = 4  # the wire number of the first field after the type

MAIN_STATUS_CODES = {
    "0": MainStatus.OK,
    "1": MainStatus.WARNING,
    "2": MainStatus.PROTOCOL_ERROR,
    "3": MainStatus.NON_FATAL_ERROR,
    "4": MainStatus.FATAL_ERROR,
    "5": MainStatus.BUSY,
}
MAIN_STATUS_WIRE = {status: code for code, status in MAIN_STATUS_CODES.items()}
STORAGE_CODES = {
    "0": StorageStatus.OK,
    "1": StorageStatus.HIGH_LEVEL_WARNING,
    "2": StorageStatus.MEMORY_FULL,
}
STORAGE_WIRE = {status: code for code, status in STORAGE_CODES.items()}
RECEIPT_FIELD_COUNT = 11


@dataclass(frozen=True)
class Message:
    type: str
    fields: tuple[str, ...] = ()

    def field(self, number: int) -> str:
        """Wire field `number` (4 is the first after the type)."""
        index = number - FIRST_FIELD
        if not 0 <= index < len(self.fields):
            raise CcspProtocolError(
                f"{self.type} has no field {number} (it has {len(self.fields)} after the type)"
            )
        return self.fields[index]

    @property
    def text(self) -> str:
        return "#".join((self.type, *self.fields))


def parse_message(text: str) -> Message:
    if not is_message_text(text):
        raise CcspProtocolError(f"message {text[:40]!r} is empty or not printable ASCII")
    kind, *rest = text.split("#")
    if not kind:
        raise CcspProtocolError(f"message {text[:40]!r} has no type before its first #")
    return Message(kind, tuple(rest))


def build(kind: str, *values: str) -> str:
    for value in values:
        if "#" in value or not (value and is_message_text(value)):
            raise CcspProtocolError(f"field {value!r} of {kind} is empty, not ASCII or holds #")
    text = "#".join((kind, *values))
    if len(text) > MAX_MESSAGE:
        raise CcspProtocolError(f"{kind} of {len(text)} characters does not fit in a frame")
    return text


# Requests -------------------------------------------------------------------


def status_query() -> str:
    return STATUS_QUERY


def identity_query() -> str:
    return IDENTITY_QUERY


def receipt_fields(receipt: ReceiptRegistration) -> list[str]:
    """The eleven receipt fields in the order the unit takes them (controlunit.md)."""
    return [
        fields.format_date_time(receipt.date_time),
        str(receipt.receipt_number),
        receipt.till_id,
        receipt.org_number,
        fields.format_amount(receipt.total_ore),
        # The return amount as a positive figure, 0,00 when none.
        fields.format_amount(receipt.return_amount_ore),
        fields.kind_name(receipt.kind),
        *fields.format_vat_fields(receipt.vat_ore),
    ]


def register_receipt(sequence: int, receipt: ReceiptRegistration) -> str:
    if sequence < 1:
        raise ValueError(f"sequence number {sequence} must be 1 or more")
    return _build_receipt(REGISTER_RECEIPT, str(sequence), *receipt_fields(receipt))


def start_receipt() -> str:
    return START_RECEIPT


def receipt_header(receipt: ReceiptRegistration) -> str:
    values = receipt_fields(receipt)
    return _build_receipt(
        RECEIPT_HEADER,
        *values[:RH_BLANKS_AFTER],
        RH_BLANK,
        RH_BLANK,
        *values[RH_BLANKS_AFTER:],
    )


def signature_query() -> str:
    return SIGNATURE_QUERY


def _build_receipt(kind: str, *values: str) -> str:
    try:
        return build(kind, *values)
    except CcspProtocolError as exc:
        raise ReceiptInvalid(f"the receipt cannot be sent as {kind}: {exc}") from exc


# Replies, as the driver reads them -------------------------------------------


def nak_code(message: Message) -> str:
    if message.type != NAK:
        raise CcspProtocolError(f"{message.type} is not a NAK")
    return message.field(4)


def parse_status_reply(message: Message) -> MainStatus:
    _expect(message, STATUS_REPLY)
    code = message.field(4)
    try:
        return MAIN_STATUS_CODES[code]
    except KeyError:
        raise CcspProtocolError(f"SIR main status {code!r} is not one of 0-5") from None


def parse_identity_reply(message: Message) -> UnitIdentity:
    _expect(message, IDENTITY_REPLY)
    unit_id = message.field(4).strip()
    if not unit_id:
        raise CcspProtocolError("IR has a blank unit id")
    return UnitIdentity(
        unit_id=unit_id,
        protocol_version=fields.parse_number(message.field(5), "IR protocol version"),
        firmware_version=message.field(6).strip(),
    )


def parse_registration_reply(message: Message) -> Registration:
    """The answer to RR: field 4 the control code, 5 the unit id, 7 the storage status."""
    code, unit_id, storage = message.field(4).strip(), message.field(5).strip(), message.field(7)
    if not code:
        raise CcspProtocolError(f"{message.type} has a blank control code")
    if not unit_id:
        raise CcspProtocolError(f"{message.type} has a blank unit id")
    try:
        status = STORAGE_CODES[storage]
    except KeyError:
        raise CcspProtocolError(f"storage status {storage!r} is not one of 0-2") from None
    return Registration(code, unit_id, status)


def parse_signature_reply(message: Message) -> str:
    """The answer to SQ (protocol v1): field 4 is the control code."""
    code = message.field(4).strip()
    if not code:
        raise CcspProtocolError(f"{message.type} has a blank control code")
    return code


def _expect(message: Message, kind: str) -> None:
    if message.type != kind:
        raise CcspProtocolError(f"expected {kind}, got {message.type}")


# The unit's side, as the simulator reads requests and answers them ---------------


def parse_receipt_fields(values: list[str] | tuple[str, ...]) -> ReceiptRegistration:
    if len(values) != RECEIPT_FIELD_COUNT:
        raise CcspProtocolError(f"want {RECEIPT_FIELD_COUNT} receipt fields, got {len(values)}")
    try:
        return ReceiptRegistration(
            date_time=fields.parse_date_time(values[0]),
            receipt_number=fields.parse_number(values[1], "receipt number"),
            till_id=values[2],
            org_number=values[3],
            total_ore=fields.parse_amount(values[4]),
            return_amount_ore=fields.parse_amount(values[5]),
            kind=fields.parse_kind(values[6]),
            vat_ore=fields.parse_vat_fields(list(values[7:])),
        )
    except ReceiptInvalid as exc:
        raise CcspProtocolError(f"receipt fields refused: {exc}") from exc


def parse_register_receipt(message: Message) -> tuple[int, ReceiptRegistration]:
    """RR's sequence number and receipt."""
    _expect(message, REGISTER_RECEIPT)
    sequence = fields.parse_number(message.field(4), "RR sequence number")
    return sequence, parse_receipt_fields(message.fields[1:])


def parse_receipt_header(message: Message) -> ReceiptRegistration:
    _expect(message, RECEIPT_HEADER)
    values = list(message.fields)
    blanks = values[RH_BLANKS_AFTER : RH_BLANKS_AFTER + 2]
    if blanks != [RH_BLANK, RH_BLANK]:
        raise CcspProtocolError(f"RH fields {RH_BLANKS_AFTER + 4}-{RH_BLANKS_AFTER + 5} not blank")
    return parse_receipt_fields(values[:RH_BLANKS_AFTER] + values[RH_BLANKS_AFTER + 2 :])


def status_reply(main: MainStatus) -> str:
    return build(STATUS_REPLY, MAIN_STATUS_WIRE[main])


def identity_reply(identity: UnitIdentity) -> str:
    return build(
        IDENTITY_REPLY,
        identity.unit_id,
        str(identity.protocol_version),
        identity.firmware_version,
    )


def registration_reply(registration: Registration, sequence: int) -> str:
    # Field 6 is not in controlunit.md; the simulator echoes the sequence
    # number there and the driver does not read it.
    return build(
        REGISTRATION_REPLY,
        registration.control_code,
        registration.unit_id,
        str(sequence),
        STORAGE_WIRE[registration.storage],
    )


def signature_reply(control_code: str) -> str:
    return build(SIGNATURE_REPLY, control_code)


def acknowledge() -> str:
    return ACKNOWLEDGE


def nak(code: str) -> str:
    return build(NAK, code)
