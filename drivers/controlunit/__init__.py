"""The control unit (kontrollenhet): the interface, its values and errors, and drivers.

Layout: unit (ControlUnit, ReceiptRegistration and the other values), errors
(what the till acts on), cleancash/ (the CleanCash serial protocol).
`open_control_unit` builds a driver from configuration values; the till
wires it in and calls `await unit.open()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..device import Backoff, DeviceListener
from .errors import (
    ControlUnitError,
    ControlUnitUnavailable,
    ReceiptInvalid,
    RefusalReason,
    RegistrationInDoubt,
    UnitRefused,
)
from .unit import (
    VAT_RATES,
    ControlUnit,
    MainStatus,
    ReceiptKind,
    ReceiptRegistration,
    Registration,
    StorageStatus,
    UnitIdentity,
    UnitStatus,
)

if TYPE_CHECKING:
    from .cleancash import CcspTimeouts, CleanCashUnit

KINDS = ("cleancash-serial",)


def open_control_unit(
    name: str,
    listener: DeviceListener,
    *,
    kind: str,
    port: str,
    timeouts: CcspTimeouts | None = None,
    backoff: Backoff | None = None,
    first_sequence: int = 1,
) -> CleanCashUnit:
    """A control unit driver, not yet opened: call `await unit.open()` to start it."""
    if kind != "cleancash-serial":
        raise ValueError(f"unknown control unit kind {kind!r}; the kinds are {', '.join(KINDS)}")
    if not port:
        raise ValueError("the control unit's port is empty: set it to the serial device path")
    # Imported here: a till without a control unit (most tests, non-Swedish
    # venues) does not load the CleanCash protocol at every start.
    from .cleancash import CleanCashUnit, SerialPort

    return CleanCashUnit(
        name,
        listener,
        SerialPort(port),
        timeouts=timeouts,
        backoff=backoff,
        first_sequence=first_sequence,
    )


__all__ = [
    "KINDS",
    "VAT_RATES",
    "ControlUnit",
    "ControlUnitError",
    "ControlUnitUnavailable",
    "MainStatus",
    "ReceiptInvalid",
    "ReceiptKind",
    "ReceiptRegistration",
    "RefusalReason",
    "Registration",
    "RegistrationInDoubt",
    "StorageStatus",
    "UnitIdentity",
    "UnitRefused",
    "UnitStatus",
    "open_control_unit",
]
