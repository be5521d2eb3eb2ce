"""What a nexo answer says about the card, in the terms tilld keeps.

PaymentBrand comes as "<code>,<name>" ("01,Mastercard Debit"); tilld's card
rules know brands by short names ("mastercard", "maestro"). A masked PAN is
masked again here (first 6 and last 4 digits at most), and receipt lines
have any long digit run masked, so a terminal that sends too much cannot
put a card number into tilld's journal or log.

Receipts travel as base64 of a JSON document whose
<Cardholder|Merchant>.Optional.ReceiptString is the list of lines to print.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from .errors import NexoProtocolError

MAX_RECEIPT_LINES = 200
MAX_RECEIPT_BYTES = 64 * 1024

# Checked in order: the more specific names first.
_BRANDS = (
    ("electron", "visa-electron"),
    ("v pay", "vpay"),
    ("vpay", "vpay"),
    ("maestro", "maestro"),
    ("mastercard", "mastercard"),
    ("visa", "visa"),
    ("american express", "amex"),
    ("amex", "amex"),
)
_LONG_DIGITS = re.compile(r"\d[\d ]{11,}\d")


def brand_of(payment_brand: str) -> tuple[str | None, str | None]:
    """ "01,Mastercard Debit" -> ("mastercard", "Mastercard Debit"); "" -> (None, None)."""
    name = payment_brand.partition(",")[2] if "," in payment_brand else payment_brand
    name = name.strip()
    if not name:
        return None, None
    lowered = name.lower()
    for needle, brand in _BRANDS:
        if needle in lowered:
            return brand, name
    return re.sub(r"[^a-z0-9]+", "-", lowered).strip("-") or None, name


def mask_pan(pan: str) -> str:
    """At most the first 6 and the last 4 digits of what a terminal calls the masked PAN."""
    chars = [c for c in pan if c.isdigit() or c in "*Xx#"]
    if len(chars) < 10:
        return "*" * max(0, len(chars) - 4) + "".join(chars[-4:]) if chars else ""
    keep = {*range(6), *range(len(chars) - 4, len(chars))}
    return "".join(c if i in keep and c.isdigit() else "*" for i, c in enumerate(chars))


def mask_digit_runs(line: str) -> str:
    """A receipt line with every run of 13+ digits masked like a PAN."""

    def masked(match: re.Match[str]) -> str:
        digits = match.group().replace(" ", "")
        return mask_pan(digits) if len(digits) >= 13 else match.group()

    return _LONG_DIGITS.sub(masked, line)


def decode_receipt(text: str) -> tuple[str, ...]:
    """The printable lines of a base64 JSON receipt (masked); NexoProtocolError if unreadable."""
    if len(text) > MAX_RECEIPT_BYTES:
        raise NexoProtocolError(f"receipt of {len(text)} characters is over the cap")
    try:
        document = json.loads(base64.b64decode(text.strip(), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise NexoProtocolError(f"receipt is not base64 JSON: {exc}") from None
    if not isinstance(document, dict) or len(document) != 1:
        raise NexoProtocolError("receipt JSON has no single Cardholder/Merchant part")
    (part,) = document.values()
    optional = part.get("Optional") if isinstance(part, dict) else None
    lines = optional.get("ReceiptString") if isinstance(optional, dict) else None
    if lines is None:
        return ()
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise NexoProtocolError("receipt ReceiptString is not a list of strings")
    if len(lines) > MAX_RECEIPT_LINES:
        raise NexoProtocolError(f"receipt of {len(lines)} lines is over the cap")
    return tuple(mask_digit_runs(line) for line in lines)


def encode_receipt(lines: tuple[str, ...], part: str = "Cardholder") -> str:
    """Base64 JSON as the terminal sends it (`part`: Cardholder or Merchant)."""
    document = {part: {"Optional": {"ReceiptString": list(lines)}}}
    return base64.b64encode(json.dumps(document, ensure_ascii=False).encode()).decode("ascii")
