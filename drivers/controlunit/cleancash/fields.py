"""The receipt's fields as CCSP writes them (controlunit.md "Receipt fields").

Money is integer öre everywhere in tilld; decimal commas exist only here, at
the wire: 12500 öre is `125,00`. A VAT field is `rate;amount`, both with
commas (`25,00;25,00`), or a single space when the receipt has nothing at
that rate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from ..unit import VAT_RATES, ReceiptKind
from .errors import CcspProtocolError

DATE_TIME_FORMAT = "%Y%m%d%H%M"  # YYYYMMDDHHmm, to the minute
BLANK_VAT = " "

# The receipt type's wire names. normal, kopia and profo are what the open
# implementation in controlunit.md sends. It has no training mode, yet
# SKVFS 2014:9 wants training receipts registered too, so a unit must take a
# training type: "ovning" is our reading of övningskvitto, NOT confirmed.
# Check it against the unit's protocol documentation before claiming
# compatibility; this constant is the one place to change it.
TRAINING_TYPE = "ovning"
KIND_NAMES = {
    ReceiptKind.NORMAL: "normal",
    ReceiptKind.COPY: "kopia",
    ReceiptKind.TRAINING: TRAINING_TYPE,
    ReceiptKind.PRO_FORMA: "profo",
}
_KINDS_BY_NAME = {name: kind for kind, name in KIND_NAMES.items()}

_AMOUNT = re.compile(r"(-?)([0-9]{1,15}),([0-9]{2})")
_DATE_TIME = re.compile(r"[0-9]{12}")


def format_amount(ore: int) -> str:
    sign = "-" if ore < 0 else ""
    kronor, rest = divmod(abs(ore), 100)
    return f"{sign}{kronor},{rest:02d}"


def parse_amount(text: str) -> int:
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise CcspProtocolError(f"amount {text!r} is not kronor,öre like 125,00")
    sign, kronor, ore = match.groups()
    value = int(kronor) * 100 + int(ore)
    return -value if sign else value


def format_rate(rate: int) -> str:
    return f"{rate},00"


def format_vat(rate: int, ore: int | None) -> str:
    return BLANK_VAT if ore is None else f"{format_rate(rate)};{format_amount(ore)}"


def parse_vat(text: str, rate: int) -> int | None:
    """The VAT amount of the field for `rate`, None when blank."""
    if text == BLANK_VAT:
        return None
    said_rate, sep, amount = text.partition(";")
    if not sep:
        raise CcspProtocolError(f"VAT field {text!r} is neither blank nor rate;amount")
    if said_rate != format_rate(rate):
        raise CcspProtocolError(
            f"VAT field {text!r} is for rate {said_rate!r}; this field is for {format_rate(rate)}"
        )
    return parse_amount(amount)


def format_vat_fields(vat_ore: Mapping[int, int]) -> list[str]:
    return [format_vat(rate, vat_ore.get(rate)) for rate in VAT_RATES]


def parse_vat_fields(fields: list[str]) -> dict[int, int]:
    if len(fields) != len(VAT_RATES):
        raise CcspProtocolError(f"want {len(VAT_RATES)} VAT fields, got {len(fields)}")
    parsed = {rate: parse_vat(text, rate) for rate, text in zip(VAT_RATES, fields, strict=True)}
    return {rate: ore for rate, ore in parsed.items() if ore is not None}


def format_date_time(value: datetime) -> str:
    return value.strftime(DATE_TIME_FORMAT)


def parse_date_time(text: str) -> datetime:
    if not _DATE_TIME.fullmatch(text):
        raise CcspProtocolError(f"date-time {text!r} is not YYYYMMDDHHmm")
    try:
        return datetime.strptime(text, DATE_TIME_FORMAT)
    except ValueError as exc:
        raise CcspProtocolError(f"date-time {text!r} is not a real time: {exc}") from exc


def kind_name(kind: ReceiptKind) -> str:
    return KIND_NAMES[kind]


def parse_kind(text: str) -> ReceiptKind:
    try:
        return _KINDS_BY_NAME[text]
    except KeyError:
        names = ", ".join(_KINDS_BY_NAME)
        raise CcspProtocolError(f"receipt type {text!r} is not one of {names}") from None


def parse_number(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 15:
        raise CcspProtocolError(f"{what} {text!r} is not a decimal number")
    return int(text)
