"""The control unit's rules as plain decisions (SKVFS 2014:9, SKVFS 2014:10 4 kap.).

Pure: journal bodies and device states in, values out. What a receipt's
registration holds, which kind it is, and whether the till may start a sale
are decided here; tilld/registering.py does the I/O.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from drivers.controlunit import ReceiptKind, ReceiptRegistration
from drivers.device import DeviceState, DeviceStatus

from .errors import Reason, Refused
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


# How a technician settles a registration in doubt (docs/fiscal.md "A registration in doubt").
REGISTER_AGAIN = "register-again"  # the unit's journal does not hold it: send it again
REGISTERED = "registered"  # the unit holds it: its code, read from the unit, is entered
SETTLE_ACTIONS = (REGISTER_AGAIN, REGISTERED)
# A code or unit id as the unit shows it; '#' or a space would break the receipt and the
# unit's own frames, and a code typed wrong must be refused rather than printed.
_CODE = re.compile(r"[0-9A-Z]{8,128}")
_UNIT_ID = re.compile(r"[0-9A-Za-z-]{1,64}")


def settlement(
    row: dict[str, Any] | None,
    receipt_no: int,
    action: str,
    control_code: str | None,
    unit_id: str | None,
) -> dict[str, Any]:
    """What settling the doubt of ``receipt_no``'s registration ``row`` journals; Refused if
    it cannot be settled so. ``unit_id`` is the one to print (given, or the unit's own)."""
    if row is None or row["state"] != "in-doubt":
        state = "no registration" if row is None else f"its registration is {row['state']}"
        raise Refused(
            Reason.CONTROL_UNIT_NO_DOUBT,
            f"Receipt {receipt_no} has no registration in doubt ({state}): there is nothing "
            "to settle. status.get's control_unit.doubts lists the receipts that have one.",
            receipt_no=receipt_no,
        )
    body: dict[str, Any] = {
        "receipt_no": receipt_no,
        "kind": row["kind"],
        "sequence": row["sequence"],
        "action": action,
    }
    if action == REGISTER_AGAIN:
        if control_code is not None:
            raise Refused(
                Reason.CONTROL_CODE_MALFORMED,
                "A control code goes with action 'registered' only: 'register-again' sends "
                "the receipt to the unit, which gives the code.",
            )
        return body
    if control_code is None or not _CODE.fullmatch(control_code):
        raise Refused(
            Reason.CONTROL_CODE_MALFORMED,
            f"{control_code!r} is not a control code as the unit shows one (8 to 128 capitals "
            "and digits, no spaces): read it again from the unit's journal or display.",
            receipt_no=receipt_no,
        )
    if unit_id is None or not _UNIT_ID.fullmatch(unit_id):
        raise Refused(
            Reason.CONTROL_CODE_MALFORMED,
            f"{unit_id!r} is not a control unit's manufacturing number: give unit_id as the "
            "unit shows it (the till does not know the unit's own yet).",
            receipt_no=receipt_no,
        )
    return {**body, "control_code": control_code, "unit_id": unit_id}


def is_storage_warning(status: DeviceStatus) -> bool:
    """A unit still working whose memory is nearly full, or which reports a warning."""
    return status.state is DeviceState.OK and "warning" in status.detail


def _minute(created_at: str) -> str:
    # The journal keeps the offset the till had: that wall time is what the
    # receipt shows, so it is what the unit registers.
    moment = datetime.fromisoformat(created_at).replace(tzinfo=None, second=0, microsecond=0)
    return moment.isoformat(timespec="minutes")
