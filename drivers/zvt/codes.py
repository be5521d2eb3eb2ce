"""Code tables: result codes (BMP 27), intermediate statuses (04 FF), card types (BMP 8A),
terminal status (status enquiry). Texts are short and say what to do where it helps.

Sources: zvt.md "Status information" and "Card type ids"; where zvt.md lists
no text, the public ZVT spec's error-message and intermediate-status tables.
"""

from __future__ import annotations

RESULT_TEXTS: dict[int, str] = {
    0x00: "approved",
    0x05: "declined by the card issuer",
    0x64: "card not readable",
    0x65: "card data not present",
    0x66: "processing error",
    0x67: "function not permitted for this card",
    0x68: "function not permitted for credit cards",
    0x6A: "turnover file full: run end of day",
    0x6B: "function deactivated in the terminal",
    0x6C: "aborted by the customer or the cashier",
    0x6E: "card on the blocked list",
    0x6F: "wrong currency",
    0x71: "credit not sufficient",
    0x72: "chip error",
    0x73: "card data incorrect",
    0x77: "end of day not possible",
    0x78: "card expired",
    0x79: "card not yet valid",
    0x7A: "card unknown",
    0x7D: "communication error",
    0x83: "function not possible",
    0x85: "key missing",
    0x89: "PIN pad defective",
    0x9A: "ZVT protocol error",
    0x9C: "please wait",
    0xA0: "receiver not ready",
    0xA1: "remote station does not respond",
    0xA3: "no connection to the card network",
    0xB1: "memory full: send offline transactions / run end of day",
    0xB2: "merchant journal full",
    0xB4: "already reversed",
    0xB5: "reversal not possible",
    0xC2: "diagnosis required",
    0xC3: "maximum amount exceeded",
    0xC5: "payment method not supported",
    0xC6: "currency not applicable",
    0xC8: "amount too small",
    0xCC: "printer not ready",
    0xDC: "card inserted",
    0xE4: "terminal activation required",
    0xF0: "open end-of-day batch present",
    0xF1: "offline error: this card needs the terminal to be online",
    0xFA: "error sending offline transactions",
    0xFF: "system error",
}

RESULT_APPROVED = 0x00
RESULT_ABORTED = 0x6C
RESULT_MEMORY_FULL = 0xB1
RESULT_OFFLINE_ERROR = 0xF1
RESULT_FUNCTION_NOT_POSSIBLE = 0x83


def result_text(code: int) -> str:
    return RESULT_TEXTS.get(code, f"terminal error {code:02X} (see the terminal's manual)")


INTERMEDIATE_TEXTS: dict[int, str] = {
    0x00: "waiting for amount confirmation",
    0x01: "enter PIN (watch the PIN pad)",
    0x02: "enter PIN (watch the PIN pad)",
    0x03: "not accepted",
    0x04: "waiting for the card network",
    0x05: "sending auto-reversal",
    0x06: "sending post-bookings",
    0x07: "card not admitted",
    0x08: "card unknown",
    0x09: "card expired",
    0x0A: "insert card",
    0x0B: "remove card",
    0x0C: "card not readable",
    0x0D: "processing error",
    0x0E: "please wait",
    0x0F: "automatic end of day starting",
    0x10: "invalid card",
    0x12: "system malfunction",
    0x13: "payment not possible",
    0x14: "credit not sufficient",
    0x15: "incorrect PIN",
    0x16: "limit not sufficient",
    0x17: "please wait",
    0x18: "PIN try limit exceeded",
    0x19: "card data incorrect",
    0x1D: "declined",
    0x2C: "application selection, please wait",
    0xE0: "waiting for application selection",
    0xF1: "offline",
    0xF2: "online",
    0xF3: "offline transaction",
}

STATUS_INSERT_CARD = 0x0A
STATUS_ENTER_PIN = 0x01
STATUS_PLEASE_WAIT = 0x17
STATUS_OFFLINE = 0xF1
STATUS_ONLINE = 0xF2
STATUS_OFFLINE_TRANSACTION = 0xF3


def intermediate_text(code: int) -> str:
    return INTERMEDIATE_TEXTS.get(code, f"terminal status {code:02X}")


# BMP 8A card type ids (zvt.md "Card type ids") to tilld's brand names, the
# names the offline allow-list in CONTRACT.md uses.
CARD_BRANDS: dict[int, str] = {
    0x05: "girocard",
    0x06: "mastercard",
    0x08: "amex",
    0x0A: "visa",
    0x0B: "visa-electron",
    0x0D: "vpay",
    0x2E: "maestro",
    0xC4: "dankort",
}
BRAND_IDS = {brand: code for code, brand in CARD_BRANDS.items()}
CARD_TYPE_SEE_TLV = 0xFF  # "see TLV tag 41"
TLV_CARD_TYPE = 0x41


def brand_of(card_type: int) -> str:
    return CARD_BRANDS.get(card_type, f"card-type-{card_type:02x}")


TERMINAL_STATUS_TEXTS: dict[int, str] = {
    0x00: "ready",
    0x51: "initialisation needed",
    0xB1: "memory full: send offline transactions / run end of day",
    0xDF: "out of order",
}


def terminal_status_text(code: int) -> str:
    return TERMINAL_STATUS_TEXTS.get(code, f"terminal status {code:02X}")


# BMP 19 payment type in status information (zvt.md).
PAYMENT_TYPE_OFFLINE = 0x40
PAYMENT_TYPE_ONLINE = 0x60
PAYMENT_TYPE_PIN = 0x70
