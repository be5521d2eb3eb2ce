"""The control unit's rules as plain decisions (SKVFS 2014:9, SKVFS 2014:10 4 kap.).

Pure: journal bodies and device states in, values out. What a receipt's
registration holds, which kind it is, and whether the till may start a sale
are decided here; tilld/registering.py does the I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drivers.controlunit import ReceiptKind, ReceiptRegistration
from drivers.device import DeviceState, DeviceStatus

from .receipt import Seller

# The kinds of registration a receipt can need, as the journal's control_codes rows name them.
NORMAL = ReceiptKind.NORMAL.value  # a cash receipt or a return receipt
COPY = ReceiptKind.COPY.value  # the one copy, marked KOPIA
TRAINING = ReceiptKind.TRAINING.value  # marked ÖVNINGSKVITTO


def receipt_kind(body: dict[str, Any]) -> str:
    """How a sale's or refund's own receipt is registered."""
    return TRAINING if body.get("training") else NORMAL


def registration_request(
    entry_type: str, body: dict[str, Any], created_at: str, kind: str, seller: Seller
) -> dict[str, Any]:
    """The registration of one receipt as JSON, kept with it so a resend is the same request.

    A return receipt goes with a negative total and VAT and its size as the
    return amount, as the CleanCash implementation in docs/controlunit.md
    sends it. The time is the one printed on the receipt, to the minute."""
    sign = -1 if entry_type == "refund" else 1
    return {
        "date_time": _minute(created_at),
        "receipt_number": body["receipt_no"],
        "till_id": seller.till_id,
        "org_number": org_digits(seller.org_number),
        "total_ore": sign * body["total"],
        "return_amount_ore": body["total"] if entry_type == "refund" else 0,
        "kind": kind,
        "vat_ore": {str(v["rate"]): sign * v["vat"] for v in body["vat"]},
    }


def registration_of(request: dict[str, Any]) -> ReceiptRegistration:
    """The driver's value for a stored request; ReceiptInvalid if the unit could not take it."""
    return ReceiptRegistration(
        date_time=datetime.fromisoformat(request["date_time"]),
        receipt_number=request["receipt_number"],
        till_id=request["till_id"],
        org_number=request["org_number"],
        total_ore=request["total_ore"],
        return_amount_ore=request["return_amount_ore"],
        kind=ReceiptKind(request["kind"]),
        vat_ore={int(rate): ore for rate, ore in request["vat_ore"].items()},
    )


def org_digits(org_number: str) -> str:
    return org_number.replace("-", "").replace(" ", "")


def not_working_because(
    status: DeviceStatus, in_doubt: int, refusal: str | None = None
) -> str | None:
    """Why no receipt can be issued now, in the unit's own words; None when it works.

    A unit offline or in error (memory full among them) cannot give a code.
    A unit that refused the last registration (anything but a damaged
    message) gives none either, whatever its status says. A registration in
    doubt that the unit's protocol cannot be asked about stops the till too:
    issuing more receipts would hide that one."""
    if status.state is not DeviceState.OK:
        return status.detail or status.state.value
    if refusal:
        return refusal
    if in_doubt:
        return (
            f"{in_doubt} registration(s) in doubt: the unit may hold a receipt the till has "
            "no control code for; a technician must settle it with the unit's supplier"
        )
    return None


def is_storage_warning(status: DeviceStatus) -> bool:
    """A unit still working whose memory is nearly full, or which reports a warning."""
    return status.state is DeviceState.OK and "warning" in status.detail


def _minute(created_at: str) -> str:
    # The journal keeps the offset the till had: that wall time is what the
    # receipt shows, so it is what the unit registers.
    moment = datetime.fromisoformat(created_at).replace(tzinfo=None, second=0, microsecond=0)
    return moment.isoformat(timespec="minutes")
