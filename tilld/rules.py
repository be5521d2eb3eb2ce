"""The outage routine as data: which payment methods and articles a till may sell in each mode.

Pure functions over values, no I/O. Every refusal the till makes because of
connectivity, card brand or offline limits is decided here and nowhere else;
``status.get`` reports method availability by asking the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from .errors import Reason
from .money import format_sek


class Mode(StrEnum):
    ONLINE = "online"
    SERVER_UNREACHABLE = "server-unreachable"
    NO_INTERNET = "no-internet"
    SERVER_ONLY = "server-only"


# (server reachable, internet reachable) -> mode, as CONTRACT.md's table.
MODE_TABLE: Mapping[tuple[bool, bool], Mode] = {
    (True, True): Mode.ONLINE,
    (False, True): Mode.SERVER_UNREACHABLE,
    (False, False): Mode.NO_INTERNET,
    (True, False): Mode.SERVER_ONLY,
}

PAYMENT_METHODS = ("cash", "swish-manual", "swish", "card")
# Methods the till itself moves money with; a training sale must not use them.
REAL_MONEY_METHODS = frozenset({"swish", "card"})
ARTICLE_KINDS = ("goods", "ticket", "event-ticket")


class Need(StrEnum):
    """What a payment method or article kind depends on beyond the till itself."""

    NOTHING = "nothing"
    SERVER = "server"
    CARD_AUTHORISATION = "card-authorisation"  # the internet, or the terminal's offline allowance


METHOD_NEEDS: Mapping[str, Need] = {
    "cash": Need.NOTHING,
    "swish-manual": Need.NOTHING,  # static number or QR; the cashier confirms the payment
    "swish": Need.SERVER,  # integrated Swish is proxied by the back-end
    "card": Need.CARD_AUTHORISATION,
}

ARTICLE_NEEDS: Mapping[str, Need] = {
    "goods": Need.NOTHING,
    "ticket": Need.NOTHING,  # sold offline it stays pending (not valid at gates) until synced
    "event-ticket": Need.SERVER,  # seats are reserved by the server
}


@dataclass(frozen=True)
class Connectivity:
    server: bool
    internet: bool

    @property
    def mode(self) -> Mode:
        return MODE_TABLE[(self.server, self.internet)]


@dataclass(frozen=True)
class CardPolicy:
    """The card rules that configuration may change (defaults from the outage routine)."""

    offline_limit: int = 250
    offline_brands: frozenset[str] = frozenset({"visa", "mastercard"})
    offline_max_amount: int = 200_000
    offline_max_total: int = 5_000_000
    offline_max_age_h: float = 72.0
    offline_age_warning: float = 0.75  # the share of the age limit past which tilld warns


@dataclass(frozen=True)
class CardFacts:
    """What is known about a card payment when the rule is asked.

    ``brand`` is None before the terminal has read the card: the offline limit
    can be checked then, the brand only afterwards. ``amount`` is None when
    the question is whether card payments are open at all (status).
    ``offline_age_h`` is how long the oldest payment stored offline has
    waited, None when none is stored.
    """

    offline_stored: int = 0
    brand: str | None = None
    terminal_ready: bool = True
    amount: int | None = None
    offline_amount: int = 0
    offline_age_h: float | None = None


class OfflineAge(StrEnum):
    """How close the oldest stored offline payment is to the age limit."""

    NONE = "none"  # nothing stored offline
    OK = "ok"
    WARNING = "warning"  # past card.offline_age_warning of the limit: get the internet back
    EXPIRED = "expired"  # past the limit: no further offline card payments


def offline_age(age_h: float | None, policy: CardPolicy) -> OfflineAge:
    if age_h is None:
        return OfflineAge.NONE
    if age_h >= policy.offline_max_age_h:
        return OfflineAge.EXPIRED
    if age_h >= policy.offline_max_age_h * policy.offline_age_warning:
        return OfflineAge.WARNING
    return OfflineAge.OK


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: Reason | None = None
    message: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        if self.allowed:
            return {"available": True}
        return {"available": False, "reason": self.reason, "message": self.message}


ALLOWED = Decision(allowed=True)


def _refuse(reason: Reason, message: str, **details: object) -> Decision:
    return Decision(allowed=False, reason=reason, message=message, details=details)


def check_payment(
    method: str,
    connectivity: Connectivity,
    *,
    enabled: Mapping[str, bool] | None = None,
    card: CardFacts | None = None,
    policy: CardPolicy = CardPolicy(),
    training: bool = False,
) -> Decision:
    """May ``method`` be taken now? ``enabled`` is the catalog's per-method switch."""
    need = METHOD_NEEDS.get(method)
    if need is None:
        return _refuse(
            Reason.UNKNOWN_METHOD,
            f"'{method}' is not a payment method; use one of {', '.join(PAYMENT_METHODS)}.",
        )
    if training and method in REAL_MONEY_METHODS:
        return _refuse(
            Reason.TRAINING_REAL_MONEY,
            f"This is a training sale: payment by {method} would move real money. "
            "Take cash or manual Swish, which the till only records.",
        )
    if enabled is not None and not enabled.get(method, False):
        return _refuse(
            Reason.METHOD_DISABLED,
            f"Payment by {method} is switched off for this till in the catalog.",
        )
    if need is Need.SERVER and not connectivity.server:
        return _refuse(
            Reason.METHOD_UNAVAILABLE_OFFLINE,
            f"Payment by {method} goes through the ticket server, which is unreachable. "
            "Take cash, card or manual Swish instead.",
        )
    if need is Need.CARD_AUTHORISATION:
        return _check_card(connectivity, card or CardFacts(), policy)
    return ALLOWED


def _check_card(connectivity: Connectivity, card: CardFacts, policy: CardPolicy) -> Decision:
    if not card.terminal_ready:
        return _refuse(
            Reason.TERMINAL_UNAVAILABLE,
            "No card terminal is connected to this till. Take another payment method "
            "and ask a technician to check the terminal.",
        )
    if connectivity.internet:
        return ALLOWED
    if card.offline_stored >= policy.offline_limit:
        return _refuse(
            Reason.OFFLINE_CARD_LIMIT_REACHED,
            f"The terminal already holds {card.offline_stored} offline card payments "
            f"(limit {policy.offline_limit}). Take cash or manual Swish until the internet "
            "is back.",
            stored=card.offline_stored,
            limit=policy.offline_limit,
        )
    if card.brand is not None and card.brand.lower() not in policy.offline_brands:
        allowed = ", ".join(sorted(policy.offline_brands)) or "none"
        return _refuse(
            Reason.CARD_BRAND_ONLINE_ONLY,
            f"{card.brand} cards need the internet. Without it only these brands work: "
            f"{allowed}. Ask for another card, cash or manual Swish.",
            brand=card.brand,
        )
    return _check_offline_budget(card, policy) or ALLOWED


def _check_offline_budget(card: CardFacts, policy: CardPolicy) -> Decision | None:
    """The offline risk budget: one payment's amount, the sum stored, the oldest's age."""
    if offline_age(card.offline_age_h, policy) is OfflineAge.EXPIRED:
        age_h = round(card.offline_age_h or 0.0, 1)
        return _refuse(
            Reason.OFFLINE_CARDS_TOO_OLD,
            f"The terminal has held offline card payments for {age_h:g} hours (limit "
            f"{policy.offline_max_age_h:g}); they must reach the bank before it takes more. "
            "Take cash or manual Swish, and ask a technician to get the internet back.",
            age_h=age_h,
            limit_h=policy.offline_max_age_h,
        )
    if card.amount is not None and card.amount > policy.offline_max_amount:
        limit = format_sek(policy.offline_max_amount)
        return _refuse(
            Reason.OFFLINE_CARD_AMOUNT_LIMIT,
            f"Without the internet a card payment may be at most {limit} kr; this one is "
            f"{format_sek(card.amount)} kr. Split it with cash or manual Swish.",
            amount=card.amount,
            limit=policy.offline_max_amount,
        )
    # Without an amount (is card open at all?) a full budget still closes it.
    wanted = card.amount if card.amount is not None else 1
    if card.offline_amount + wanted > policy.offline_max_total:
        room = format_sek(max(0, policy.offline_max_total - card.offline_amount))
        return _refuse(
            Reason.OFFLINE_CARD_TOTAL_LIMIT,
            f"The terminal already holds {format_sek(card.offline_amount)} kr in offline card "
            f"payments (limit {format_sek(policy.offline_max_total)} kr); at most {room} kr "
            "more can be taken by card. Take cash or manual Swish for the rest.",
            stored_amount=card.offline_amount,
            amount=card.amount,
            limit=policy.offline_max_total,
        )
    return None


def check_ticket_refund(used: Sequence[str], *, allow_used: bool) -> Decision:
    """May tickets be refunded that were scanned in (``used``) at this till?"""
    if not used or allow_used:
        return ALLOWED
    return _refuse(
        Reason.TICKET_ALREADY_USED,
        f"Ticket {', '.join(used)} was already scanned in at the entrance, so the visit was "
        "used. Refund the other lines only; a manager can allow refunds of used tickets "
        "with refunds.allow_used_tickets.",
        codes=list(used),
    )


def check_refund(
    method: str,
    connectivity: Connectivity,
    *,
    enabled: Mapping[str, bool] | None = None,
    terminal_ready: bool = True,
    training: bool = False,
    amount: int | None = None,
    card_left: int | None = None,
) -> Decision:
    """May ``amount`` öre be paid back by ``method`` now?

    Money goes back the way a till can send it: cash, manual Swish, or to a
    card through the terminal, never more to cards than the receipt took by
    card. ``amount`` and ``card_left`` are None before the refund is planned.
    """
    if method not in METHOD_NEEDS:
        return _refuse(
            Reason.UNKNOWN_METHOD,
            f"'{method}' is not a payment method; use one of {', '.join(PAYMENT_METHODS)}.",
        )
    if method == "swish":
        return _refuse(
            Reason.METHOD_NOT_SUPPORTED,
            "Integrated Swish payments are paid back from the venue's Swish account, not "
            "from the till; refund in cash, by manual Swish or to the card instead.",
        )
    if enabled is not None and not enabled.get(method, False):
        return _refuse(
            Reason.METHOD_DISABLED,
            f"Payment by {method} is switched off for this till in the catalog.",
        )
    if method != "card":
        return ALLOWED
    if training:
        return _refuse(
            Reason.TRAINING_REAL_MONEY,
            "This is a training receipt: a card refund would move real money. Refund it "
            "in cash or by manual Swish, which the till only records.",
        )
    if not terminal_ready:
        return _refuse(
            Reason.TERMINAL_UNAVAILABLE,
            "No card terminal is connected to this till. Refund in cash or by manual "
            "Swish, or wait for the terminal.",
        )
    if not connectivity.internet:
        return _refuse(
            Reason.CARD_REFUND_NEEDS_INTERNET,
            "Money goes back to a card only with the internet, which is down. Refund in "
            "cash or by manual Swish, or keep the receipt and refund when it is back.",
        )
    if amount is not None and amount <= 0:
        return _refuse(
            Reason.INVALID_AMOUNT,
            "Nothing would go back to the card (0 öre); refund it in cash, which records it.",
        )
    if amount is not None and card_left is not None and amount > card_left:
        return _refuse(
            Reason.REFUND_EXCEEDS_CARD_PAYMENT,
            f"Only {card_left} öre of this receipt was paid by card; refund the rest "
            "in cash or by manual Swish.",
            card_left=card_left,
        )
    return ALLOWED


@dataclass(frozen=True)
class Fallback:
    plu: str
    name: str


def check_article(
    kind: str, connectivity: Connectivity, *, name: str = "", fallback: Fallback | None = None
) -> Decision:
    """May an article of ``kind`` be sold now? Event tickets name their fallback article."""
    need = ARTICLE_NEEDS.get(kind)
    if need is None:
        return _refuse(
            Reason.UNKNOWN_ARTICLE_KIND, f"Article kind '{kind}' is not sold by this till."
        )
    if need is Need.SERVER and not connectivity.server:
        label = f"'{name}'" if name else "Event tickets"
        if fallback is None:
            return _refuse(
                Reason.EVENT_TICKET_OFFLINE,
                f"{label} cannot be sold while the ticket server is unreachable, "
                "and no admission ticket is set up to sell instead.",
            )
        return _refuse(
            Reason.EVENT_TICKET_OFFLINE,
            f"{label} cannot be sold while the ticket server is unreachable. "
            f"Sell '{fallback.name}' (PLU {fallback.plu}) instead.",
            fallback_plu=fallback.plu,
            fallback_name=fallback.name,
        )
    return ALLOWED
