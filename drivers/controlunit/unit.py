"""The control unit (kontrollenhet) as tilld sees it, whatever protocol the unit speaks.

Skatteförfarandelagen 39 kap. and SKVFS 2014:9 require every receipt's data
to be registered with a certified control unit, which answers a control code
(kontrollkod) printed on the receipt with the unit's manufacturing number
(tillverkningsnummer). CleanCash over a serial line (drivers/controlunit/
cleancash) is the first implementation; another unit implements the same
`ControlUnit`, so the till never learns which one is on the other end.

The one rule every implementation keeps: a registration whose answer is lost
once it may have reached the unit raises `RegistrationInDoubt`, never a plain
failure, because the unit may have registered it (see errors.py).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from .errors import ReceiptInvalid

# The four Swedish VAT rates, in the order the unit's four VAT fields take
# them (controlunit.md "Receipt fields"); no other rate can be registered.
VAT_RATES = (25, 12, 6, 0)

_TILL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ReceiptKind(StrEnum):
    """What the receipt is; SKVFS 2014:9 requires each kind registered."""

    NORMAL = "normal"  # a cash receipt or a return receipt (returkvitto)
    COPY = "copy"  # the one allowed copy, marked KOPIA
    TRAINING = "training"  # övningskvitto, marked ÖVNINGSKVITTO
    PRO_FORMA = "pro-forma"  # marked EJ KVITTO


class MainStatus(StrEnum):
    """The unit's own summary of its health."""

    OK = "ok"
    WARNING = "warning"
    PROTOCOL_ERROR = "protocol-error"
    NON_FATAL_ERROR = "non-fatal-error"
    FATAL_ERROR = "fatal-error"
    BUSY = "busy"


class StorageStatus(StrEnum):
    """How full the unit's transaction memory is."""

    OK = "ok"
    HIGH_LEVEL_WARNING = "high-level-warning"  # nearly full: have the unit serviced soon
    MEMORY_FULL = "memory-full"  # no room: the unit registers nothing more
    UNKNOWN = "unknown"  # the unit has not said (yet, or its protocol never does)


@dataclass(frozen=True)
class ReceiptRegistration:
    """One receipt's data as the control unit registers it. Money in öre.

    `date_time` is the wall-clock time printed on the receipt (Swedish local
    time), to the minute. `total_ore` is the receipt's total; a return
    receipt has a negative total and `return_amount_ore` its size as a
    positive figure (how the open implementation in controlunit.md sends
    it). `vat_ore` maps each rate present on the receipt (25, 12, 6, 0) to
    the VAT amount at that rate; a rate the receipt has no amount at is left
    out, and a 0 % rate that is present maps to 0.

    Construction refuses anything a unit would refuse, before anything is
    sent, with ReceiptInvalid naming the field.
    """

    date_time: datetime
    receipt_number: int
    till_id: str
    org_number: str
    total_ore: int
    return_amount_ore: int = 0
    kind: ReceiptKind = ReceiptKind.NORMAL
    vat_ore: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.date_time, datetime) or not 2000 <= self.date_time.year <= 9999:
            raise ReceiptInvalid(
                f"date_time {self.date_time!r} must be a datetime from year 2000 on "
                "(the time printed on the receipt)"
            )
        if not _is_int(self.receipt_number) or self.receipt_number < 1:
            raise ReceiptInvalid(f"receipt number {self.receipt_number!r} must be a positive int")
        if not isinstance(self.till_id, str) or not _TILL_ID.fullmatch(self.till_id):
            raise ReceiptInvalid(
                f"till id {self.till_id!r} must be letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            )
        if not isinstance(self.org_number, str) or not (
            self.org_number.isascii()
            and self.org_number.isdigit()
            and len(self.org_number) in (10, 12)
        ):
            raise ReceiptInvalid(
                f"organisation number {self.org_number!r} must be 10 or 12 digits, "
                "written without the hyphen"
            )
        if not _is_int(self.total_ore):
            raise ReceiptInvalid(f"total {self.total_ore!r} must be an int in öre")
        if not _is_int(self.return_amount_ore) or self.return_amount_ore < 0:
            raise ReceiptInvalid(
                f"return amount {self.return_amount_ore!r} must be an int in öre, 0 or more "
                "(the size of the return, as a positive figure)"
            )
        if not isinstance(self.kind, ReceiptKind):
            raise ReceiptInvalid(f"kind {self.kind!r} must be a ReceiptKind")
        if not isinstance(self.vat_ore, Mapping):
            raise ReceiptInvalid("vat_ore must map a VAT rate in percent to öre")
        for rate, amount in self.vat_ore.items():
            if rate not in VAT_RATES or not _is_int(rate):
                raise ReceiptInvalid(
                    f"VAT rate {rate!r} % cannot be registered: a control unit takes only "
                    "25, 12, 6 and 0 %; fix the article's VAT rate"
                )
            if not _is_int(amount):
                raise ReceiptInvalid(f"VAT amount at {rate} % must be an int in öre")
        if rate_zero := self.vat_ore.get(0):
            raise ReceiptInvalid(f"VAT at 0 % must be 0 öre, not {rate_zero}")
        # Kept in the fields' order and read-only: the value must not change
        # between the caller's journal entry and the wire.
        ordered = {rate: self.vat_ore[rate] for rate in VAT_RATES if rate in self.vat_ore}
        object.__setattr__(self, "vat_ore", MappingProxyType(ordered))

    def __hash__(self) -> int:
        return hash(
            (
                self.date_time,
                self.receipt_number,
                self.till_id,
                self.org_number,
                self.total_ore,
                self.return_amount_ore,
                self.kind,
                tuple(self.vat_ore.items()),
            )
        )


@dataclass(frozen=True)
class UnitIdentity:
    unit_id: str  # the manufacturing number, printed on every receipt
    protocol_version: int
    firmware_version: str


@dataclass(frozen=True)
class UnitStatus:
    main: MainStatus
    storage: StorageStatus  # as the unit last reported it


@dataclass(frozen=True)
class Registration:
    """What the unit answered for one receipt: print both on the receipt."""

    control_code: str
    unit_id: str
    storage: StorageStatus


class ControlUnit(ABC):
    """A control unit: one request at a time; calls wait for the unit's answer.

    `unit_status` is not called `status`: a driver is also a supervised
    device (drivers/device.py), whose `status` is its connection state.
    """

    @abstractmethod
    async def identify(self) -> UnitIdentity: ...

    @abstractmethod
    async def unit_status(self) -> UnitStatus: ...

    @abstractmethod
    async def register(
        self, receipt: ReceiptRegistration, *, sequence: int | None = None
    ) -> Registration:
        """Register one receipt and return its control code.

        `sequence` is the request's number where the protocol has one (CCSP
        v2's RR): the driver counts by itself when it is None. A caller that
        keeps its numbers durably sends a receipt in doubt again with the
        number it was first sent with, so the unit can answer the first
        registration instead of making a second.

        Raises ControlUnitUnavailable when nothing reached the unit (register
        again later), UnitRefused when the unit said no (nothing registered),
        and RegistrationInDoubt when the request may have reached the unit
        but its answer did not come back. Cancelling a register() that has
        sent its request leaves the same doubt: treat it as in doubt too.
        """


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
