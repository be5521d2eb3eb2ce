"""What can go wrong with a control unit, in terms the till acts on.

Three outcomes of a registration that is not a control code, kept apart
because the till must act differently on each (SKVFS 2014:10 4 kap. 1 §: no
receipt without a working control unit):

- ControlUnitUnavailable: nothing reached the unit, or no control code can
  have been made; register again once the unit is back.
- UnitRefused: the unit answered no; nothing was registered. Its `reason`
  says why in no protocol's terms; protocol drivers raise subclasses that
  also carry the unit's own code.
- RegistrationInDoubt: the request may have reached the unit and its answer
  was lost. The unit may hold a registration the till has no code for.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .unit import ReceiptRegistration


class ControlUnitError(Exception):
    """Base of every control-unit error."""


class ReceiptInvalid(ControlUnitError, ValueError):
    """The receipt's data cannot be registered as it is; nothing was sent."""


class ControlUnitUnavailable(ControlUnitError):
    """No link to the unit now, or it did not answer before a control code could exist.

    Nothing was registered. The device reconnects by itself; the receipt must
    not be issued until it has a control code.
    """


class RefusalReason(StrEnum):
    INVALID_RECEIPT = "invalid-receipt"  # the unit found the receipt's data wrong
    INVALID_TILL_ID = "invalid-till-id"  # the unit is not set up for this till
    STORAGE_FULL = "storage-full"  # no room left in the unit's transaction memory
    NOT_OPERATIONAL = "not-operational"  # the unit is not working
    LICENCE_EXCEEDED = "licence-exceeded"  # a multi-till unit serves no more tills
    INTERNAL_ERROR = "internal-error"
    PROTOCOL = "protocol"  # the message was damaged or out of order: send again
    OTHER = "other"


class UnitRefused(ControlUnitError):
    """The unit answered no; nothing was registered."""

    reason: RefusalReason = RefusalReason.OTHER


class RegistrationInDoubt(ControlUnitError):
    """The registration may have reached the unit, and its answer is lost.

    The unit may have registered the receipt. Do not issue the receipt
    without a control code, and do not silently register it again as a new
    receipt: the caller records the doubt and resolves it (docs/controlunit.md
    "In doubt") before the next receipt.
    """

    def __init__(self, message: str, receipt: ReceiptRegistration, sequence: int | None) -> None:
        super().__init__(message)
        self.receipt = receipt
        self.sequence = sequence  # the protocol's message number, if it has one
