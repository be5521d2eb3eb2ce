"""What a nexo answer means for tilld: outcomes, card data and ServiceIDs (pure).

Kept apart from device.py so the mapping from nexo's Result/ErrorCondition
to tilld's Outcome and DeclineReason can be read (and tested) on its own.
"""

from __future__ import annotations

import hashlib

from ..terminal import CardTransaction, DeclineReason, Outcome, TerminalResult
from . import cards
from .messages import ERROR_CONDITIONS, PaymentResponse, Result, ReversalResponse

RESULT_UNKNOWN = 255


def transaction_service_id(kind: str, ref: str) -> str:
    """The ServiceID of a payment, refund or reversal: ten digits from its kind and ref.

    The same on every run, so a restarted till can ask about a request it
    sent before it crashed. Other requests use shorter ids (_next_service_id),
    so the two never meet.
    """
    digest = hashlib.sha256(f"{kind}:{ref}".encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**10:010d}"


def result_code(result: Result) -> int:
    if result.ok:
        return 0
    if result.error_condition in ERROR_CONDITIONS:
        return ERROR_CONDITIONS.index(result.error_condition) + 1
    return RESULT_UNKNOWN


def result_text(result: Result) -> str:
    if result.ok:
        return "approved"
    text = result.error_condition or result.result
    return f"{text}: {result.additional}" if result.additional else text


def decline_reason(result: Result) -> DeclineReason:
    if result.error_condition == "UnreachableHost":
        return DeclineReason.NEEDS_ONLINE  # the card may not be authorised offline
    if "store full" in (result.additional or "").lower():
        return DeclineReason.OFFLINE_STORE_FULL
    return DeclineReason.OTHER


def receipt_number(poi_transaction_id: str) -> int | None:
    """The terminal's transaction id as tilld's receipt number, when it is one."""
    if poi_transaction_id.isdigit() and len(poi_transaction_id) <= 18:
        return int(poi_transaction_id)
    return None


def card_transaction(reply: PaymentResponse, amount: int, poi_id: str) -> CardTransaction:
    brand, card_name = cards.brand_of(reply.payment_brand)
    receipt_no = receipt_number(reply.poi_transaction_id)
    charged = reply.authorized_amount if reply.authorized_amount is not None else amount
    return CardTransaction(
        amount=charged,
        result_code=result_code(reply.response),
        result_text=result_text(reply.response),
        brand=brand,
        card_name=card_name,
        masked_pan=reply.masked_pan or None,
        receipt_no=receipt_no,
        auth_code=reply.approval_code or None,
        terminal_id=poi_id,
        offline=reply.online is False,
    )


def payment_result(reply: PaymentResponse, amount: int, ref: str, poi_id: str) -> TerminalResult:
    result = reply.response
    transaction = card_transaction(reply, amount, poi_id)
    lines = reply.customer_receipt
    if result.ok:
        return TerminalResult(Outcome.APPROVED, amount, ref, 0, "approved", transaction, lines)
    aborted = result.error_condition in ("Aborted", "Cancel")
    return TerminalResult(
        Outcome.ABORTED if aborted else Outcome.DECLINED,
        amount,
        ref,
        result_code(result),
        result_text(result),
        transaction if reply.poi_transaction_id else None,
        lines,
        decline_reason=decline_reason(result),
    )


def reversal_result(reply: ReversalResponse, amount: int, ref: str, poi_id: str) -> TerminalResult:
    result = reply.response
    if reply.reversed_amount is not None:
        amount = reply.reversed_amount
    transaction = CardTransaction(
        amount=amount,
        result_code=result_code(result),
        result_text=result_text(result),
        receipt_no=receipt_number(reply.poi_transaction_id),
        terminal_id=poi_id,
    )
    outcome = Outcome.APPROVED if result.ok else Outcome.DECLINED
    return TerminalResult(
        outcome,
        amount,
        ref,
        result_code(result),
        result_text(result),
        transaction,
        reply.customer_receipt,
    )
