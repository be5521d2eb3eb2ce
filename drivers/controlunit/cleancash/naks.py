"""NAK: the unit's "no", one error class per code (controlunit.md "NAK replies").

A NAK means the unit did not act on the message: nothing was registered.
Each class says what the code means and what to do; `reason` puts it in the
till's terms (drivers/controlunit/errors.py), `code` keeps the unit's own.
Code 005 is absent: the protocol retired it.
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import RefusalReason, UnitRefused


class NakError(UnitRefused):
    code: str = ""  # the unit's three digits; set per instance for a code not listed here
    meaning: ClassVar[str] = "unknown NAK code"
    advice: ClassVar[str] = "see the unit's documentation for this code"

    def __init__(self, request: str, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        self.request = request
        super().__init__(
            f"control unit refused {request} with NAK {self.code} ({self.meaning}): "
            f"{self.advice}; nothing was registered"
        )


class InvalidLrc(NakError):
    code = "001"
    meaning = "invalid LRC"
    advice = "the message was damaged on the line; send it again, and check the cable if it recurs"
    reason = RefusalReason.PROTOCOL


class UnknownMessageType(NakError):
    code = "002"
    meaning = "unknown message type"
    advice = "the unit does not speak this protocol version; check its protocol version (IQ)"
    reason = RefusalReason.PROTOCOL


class InvalidData(NakError):
    code = "003"
    meaning = "invalid data"
    advice = (
        "the unit refused the receipt's fields; check the organisation number, the till id "
        "and the amounts"
    )
    reason = RefusalReason.INVALID_RECEIPT


class InvalidSequence(NakError):
    code = "004"
    meaning = "invalid sequence"
    advice = "messages came out of order; register the receipt again from the start"
    reason = RefusalReason.PROTOCOL


class NotOperational(NakError):
    code = "006"
    meaning = "not operational"
    advice = "the unit is not working; check its light or display and call its supplier"
    reason = RefusalReason.NOT_OPERATIONAL


class InvalidPosId(NakError):
    code = "007"
    meaning = "invalid POS id"
    advice = "the unit is not set up for this till id; have the supplier register this till"
    reason = RefusalReason.INVALID_TILL_ID


class InternalError(NakError):
    code = "008"
    meaning = "internal error"
    advice = "restart the unit (unplug and plug it); call its supplier if it recurs"
    reason = RefusalReason.INTERNAL_ERROR


class LicenceExceeded(NakError):
    code = "009"
    meaning = "licence exceeded"
    advice = "the unit's licence covers no more tills; ask its supplier for a larger licence"
    reason = RefusalReason.LICENCE_EXCEEDED


class StorageFull(NakError):
    code = "010"
    meaning = "internal storage full"
    advice = "the unit's transaction memory is full; call its supplier to have it serviced"
    reason = RefusalReason.STORAGE_FULL


class InvalidSequenceNumber(NakError):
    code = "011"
    meaning = "invalid sequence number"
    advice = "the unit refused the message's sequence number; reconnect and register again"
    reason = RefusalReason.PROTOCOL


NAK_ERRORS: dict[str, type[NakError]] = {
    cls.code: cls
    for cls in (
        InvalidLrc,
        UnknownMessageType,
        InvalidData,
        InvalidSequence,
        NotOperational,
        InvalidPosId,
        InternalError,
        LicenceExceeded,
        StorageFull,
        InvalidSequenceNumber,
    )
}


def nak_error(request: str, code: str) -> NakError:
    """The typed error for a NAK with `code` in answer to `request`."""
    cls = NAK_ERRORS.get(code)
    return cls(request) if cls is not None else NakError(request, code)
