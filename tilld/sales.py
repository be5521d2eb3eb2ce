"""A sale in progress and the records it leaves: pure values, no I/O.

The Till decides when to persist; this module only knows what a sale is: its
lines, its payments, what is still due, the change a cash payment gives back
and the journal body of a completed, voided or refunded sale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .catalog import Article
from .errors import Reason, Refused
from .ids import time_ordered_uuid
from .money import vat_breakdown

MAX_QUANTITY = 999


@dataclass(frozen=True)
class BasketLine:
    """One line of a checkout's basket, as the UI names it: a PLU or a barcode."""

    plu: str | None
    barcode: str | None
    quantity: int = 1


@dataclass(frozen=True)
class Tender:
    """One payment of a checkout, as the cashier took it."""

    method: str
    amount: int
    reference: str | None = None


@dataclass
class Line:
    line_id: int
    plu: str
    name: str
    kind: str
    quantity: int
    unit_price: int
    vat_rate: int
    event_id: str | None = None
    ticket_codes: list[str] = field(default_factory=list)
    reservation_ids: list[str] = field(default_factory=list)

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price

    def as_dict(self) -> dict[str, Any]:
        # Spelt out rather than dataclasses.asdict, which deep-copies field by
        # field: a sale's view is built on every call that changes it.
        data: dict[str, Any] = {
            "line_id": self.line_id,
            "plu": self.plu,
            "name": self.name,
            "kind": self.kind,
            "quantity": self.quantity,
            "unit_price": self.unit_price,
            "vat_rate": self.vat_rate,
        }
        if self.event_id is not None:
            data["event_id"] = self.event_id
        if self.kind != "goods":
            data["ticket_codes"] = list(self.ticket_codes)
        if self.event_id is not None:
            data["reservation_ids"] = list(self.reservation_ids)
        data["amount"] = self.amount
        return data


@dataclass
class Payment:
    payment_id: str
    method: str
    amount: int  # what settles the sale (for cash: tendered minus change)
    tendered: int
    change: int = 0
    reference: str | None = None
    # Integrated Swish is "pending" until the customer pays in the app.
    status: str = "paid"
    swish_id: str | None = None
    swish_token: str | None = None
    # Card: brand, masked PAN and authorisation data only (never a full PAN).
    card: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "payment_id": self.payment_id,
            "method": self.method,
            "amount": self.amount,
        }
        if self.status != "paid":
            data["status"] = self.status
        if self.swish_id:
            data["swish"] = {"id": self.swish_id, "token": self.swish_token}
        if self.method == "cash":
            data["tendered"] = self.tendered
            data["change"] = self.change
        if self.reference:
            data["reference"] = self.reference
        if self.card is not None:
            data["card"] = dict(self.card)
        return data


@dataclass
class Sale:
    sale_id: str
    opened_at: str
    lines: list[Line] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    next_line_id: int = 1
    # A training sale is rung up to learn the till: its receipt says
    # ÖVNINGSKVITTO, it makes no valid tickets and no report counts it as takings.
    training: bool = False

    @classmethod
    def new(cls, opened_at: str, training: bool = False, sale_id: str | None = None) -> Sale:
        return cls(sale_id=sale_id or time_ordered_uuid(), opened_at=opened_at, training=training)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def paid(self) -> int:
        return sum(p.amount for p in self.payments if p.status == "paid")

    @property
    def pending_payment(self) -> Payment | None:
        return next((p for p in self.payments if p.status == "pending"), None)

    def require_no_pending_payment(self) -> None:
        pending = self.pending_payment
        if pending is not None:
            raise Refused(
                Reason.PAYMENT_PENDING,
                f"A {pending.method} payment of {pending.amount} öre is waiting for the "
                "customer. Wait for it, or cancel it with sale.cancel_payment first.",
                payment_id=pending.payment_id,
            )

    @property
    def empty(self) -> bool:
        """Nothing rung up and nothing paid: closing it loses nobody anything."""
        return not self.lines and not self.payments

    @property
    def due(self) -> int:
        return self.total - self.paid

    def require_unpaid(self) -> None:
        # Once money is taken the basket is what the customer paid for; changing
        # it would make the recorded payment wrong. Voiding starts over cleanly.
        if self.payments:
            raise Refused(
                Reason.SALE_HAS_PAYMENTS,
                "This sale has already taken a payment, so its lines are fixed. "
                "Finish paying, or void the sale and start again.",
            )

    def add(self, article: Article, quantity: int) -> Line:
        self.require_unpaid()
        for line in self.lines:
            if line.plu == article.plu and line.unit_price == article.price:
                if line.quantity + quantity > MAX_QUANTITY:
                    raise _too_many(line.quantity + quantity)
                line.quantity += quantity
                return line
        if quantity > MAX_QUANTITY:
            raise _too_many(quantity)
        line = Line(
            line_id=self.next_line_id,
            plu=article.plu,
            name=article.name,
            kind=article.kind,
            quantity=quantity,
            unit_price=article.price,
            vat_rate=article.vat_rate,
            event_id=article.event_id,
        )
        self.next_line_id += 1
        self.lines.append(line)
        return line

    def remove(self, line_id: int) -> Line:
        self.require_unpaid()
        for index, line in enumerate(self.lines):
            if line.line_id == line_id:
                return self.lines.pop(index)
        raise Refused(
            Reason.UNKNOWN_LINE,
            f"Line {line_id} is not on this sale; sale.get lists its lines.",
            line_id=line_id,
        )

    def tender(self, method: str, amount: int, reference: str | None = None) -> Payment:
        """Work out a payment of ``amount`` (not yet recorded: the caller appends it)."""
        if not self.lines:
            raise Refused(Reason.SALE_EMPTY, "This sale has no lines yet; add an article first.")
        self.require_no_pending_payment()
        due = self.due
        if amount == 0 and due != 0:
            raise Refused(Reason.INVALID_AMOUNT, "A payment must be more than 0 öre.")
        change = 0
        if amount > due:
            if method != "cash":
                raise Refused(
                    Reason.AMOUNT_EXCEEDS_DUE,
                    f"Only {due} öre is due; a {method} payment cannot be larger than that.",
                    due=due,
                )
            change = amount - due
        return Payment(
            payment_id=time_ordered_uuid(),
            method=method,
            amount=amount - change,
            tendered=amount,
            change=change,
            reference=reference,
        )

    def vat(self) -> list[dict[str, int]]:
        return [v.as_dict() for v in vat_breakdown((ln.amount, ln.vat_rate) for ln in self.lines)]

    def view(self, state: str = "open") -> dict[str, Any]:
        return {
            "sale_id": self.sale_id,
            "state": state,
            "opened_at": self.opened_at,
            "lines": [line.as_dict() for line in self.lines],
            "total": self.total,
            "paid": self.paid,
            "due": self.due,
            "payments": [p.as_dict() for p in self.payments],
            "vat": self.vat(),
            **self._training_flag(),
        }

    def _training_flag(self) -> dict[str, bool]:
        # Only training sales carry the key, so ordinary bodies stay as they were.
        return {"training": True} if self.training else {}

    def completed_body(self, mode: str) -> dict[str, Any]:
        """The journal body of this sale, fully paid (receipt_no is added by the journal)."""
        return {
            "sale_id": self.sale_id,
            "opened_at": self.opened_at,
            "lines": [line.as_dict() for line in self.lines],
            "payments": [p.as_dict() for p in self.payments],
            "total": self.total,
            "vat": self.vat(),
            "mode": mode,
            **self._training_flag(),
        }

    def void_body(self, reason: str, mode: str) -> dict[str, Any]:
        return {
            "sale_id": self.sale_id,
            "opened_at": self.opened_at,
            "reason": reason,
            "lines": [line.as_dict() for line in self.lines],
            "total": self.total,
            # Money already taken goes back to the customer by the same means.
            "payments_returned": [p.as_dict() for p in self.payments],
            "mode": mode,
            **self._training_flag(),
        }

    def state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Sale:
        return cls(
            sale_id=state["sale_id"],
            opened_at=state["opened_at"],
            lines=[Line(**line) for line in state["lines"]],
            payments=[Payment(**p) for p in state["payments"]],
            next_line_id=state["next_line_id"],
            training=state.get("training", False),
        )


def _too_many(quantity: int) -> Refused:
    return Refused(
        Reason.QUANTITY_TOO_LARGE,
        f"{quantity} of one article on one sale is more than the till allows ({MAX_QUANTITY}).",
    )


@dataclass(frozen=True)
class RefundLine:
    line_id: int
    plu: str
    name: str
    kind: str
    quantity: int
    unit_price: int
    vat_rate: int
    ticket_codes: tuple[str, ...]

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


def plan_refund(
    sale_body: dict[str, Any],
    earlier_refunds: list[dict[str, Any]],
    wanted: dict[int, int | None] | None,
) -> list[RefundLine]:
    """Which quantities of a completed sale to refund, never more than is left.

    ``wanted`` maps line_id to a quantity (None: all that is left); None means
    every line in full. Ticket lines give back their most recent unrefunded codes.
    """
    refunded_qty: dict[int, int] = {}
    refunded_codes: set[str] = set()
    for refund in earlier_refunds:
        for line in refund["lines"]:
            refunded_qty[line["line_id"]] = refunded_qty.get(line["line_id"], 0) + line["quantity"]
            refunded_codes.update(line.get("ticket_codes", ()))
    lines = {line["line_id"]: line for line in sale_body["lines"]}
    if wanted is None:
        wanted = dict.fromkeys(lines)
    unknown = sorted(set(wanted) - set(lines))
    if unknown:
        raise Refused(
            Reason.UNKNOWN_LINE,
            f"Receipt {sale_body['receipt_no']} has no line {unknown[0]}.",
            line_id=unknown[0],
        )
    plan: list[RefundLine] = []
    for line_id, quantity in sorted(wanted.items()):
        line = lines[line_id]
        left = line["quantity"] - refunded_qty.get(line_id, 0)
        count = left if quantity is None else quantity
        if count > left:
            raise Refused(
                Reason.REFUND_EXCEEDS_SALE,
                f"Line {line_id} ({line['name']}) has only {left} left to refund.",
                line_id=line_id,
                left=left,
            )
        if count == 0:
            continue
        codes = [c for c in line.get("ticket_codes", ()) if c not in refunded_codes]
        plan.append(
            RefundLine(
                line_id=line_id,
                plu=line["plu"],
                name=line["name"],
                kind=line["kind"],
                quantity=count,
                unit_price=line["unit_price"],
                vat_rate=line["vat_rate"],
                ticket_codes=tuple(codes[-count:]) if codes else (),
            )
        )
    if not plan:
        raise Refused(
            Reason.NOTHING_TO_REFUND,
            f"Everything on receipt {sale_body['receipt_no']} has already been refunded.",
        )
    return plan


def refund_body(
    sale_body: dict[str, Any], plan: list[RefundLine], method: str, mode: str, reason: str
) -> dict[str, Any]:
    total = sum(line.amount for line in plan)
    lines = []
    for line in plan:
        data = {
            "line_id": line.line_id,
            "plu": line.plu,
            "name": line.name,
            "kind": line.kind,
            "quantity": line.quantity,
            "unit_price": line.unit_price,
            "vat_rate": line.vat_rate,
            "amount": line.amount,
        }
        if line.ticket_codes:
            data["ticket_codes"] = list(line.ticket_codes)
        lines.append(data)
    return {
        "original_receipt_no": sale_body["receipt_no"],
        "original_sale_id": sale_body["sale_id"],
        "reason": reason,
        "lines": lines,
        "payments": [{"method": method, "amount": total}],
        "total": total,
        "vat": [v.as_dict() for v in vat_breakdown((ln.amount, ln.vat_rate) for ln in plan)],
        "mode": mode,
        **({"training": True} if sale_body.get("training") else {}),
    }


def card_refundable(sale_body: dict[str, Any], earlier_refunds: list[dict[str, Any]]) -> int:
    """Öre of a sale's card payments not yet paid back to a card."""
    paid = sum(p["amount"] for p in sale_body["payments"] if p["method"] == "card")
    back = sum(
        p["amount"]
        for refund in earlier_refunds
        for p in refund["payments"]
        if p["method"] == "card"
    )
    return max(0, paid - back)


def refund_ticket_codes(refund: dict[str, Any]) -> list[str]:
    return [code for line in refund["lines"] for code in line.get("ticket_codes", ())]
