"""Which payment and refund methods are open right now, asked of rules.py with today's facts.

The facts come from their owners: the configuration and the catalog's
payment switches, the connectivity monitor, and the card terminal's state
(ready, and the payments it stores offline: how many, their sum, the oldest's
age).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .catalog import Catalog
from .config import Settings
from .errors import Reason, Refused
from .rules import (
    PAYMENT_METHODS,
    CardFacts,
    CardPolicy,
    Connectivity,
    Decision,
    check_payment,
    check_refund,
)


class CardState(Protocol):
    @property
    def ready(self) -> bool: ...

    def card_facts(self) -> CardFacts: ...


def card_policy(settings: Settings) -> CardPolicy:
    return CardPolicy(
        offline_limit=settings.card.offline_limit,
        offline_brands=frozenset(settings.card.offline_brands),
        offline_max_amount=settings.card.offline_max_amount,
        offline_max_total=settings.card.offline_max_total,
        offline_max_age_h=settings.card.offline_max_age_h,
        offline_age_warning=settings.card.offline_age_warning,
    )


def raise_if_refused(decision: Decision) -> None:
    if not decision.allowed:
        raise Refused(decision.reason or Reason.REFUSED, decision.message or "", **decision.details)


class PaymentPolicy:
    def __init__(
        self,
        settings: Callable[[], Settings],
        catalog: Catalog,
        connectivity: Callable[[], Connectivity],
        card: CardState,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.connectivity = connectivity
        self.card = card

    def enabled_methods(self) -> dict[str, bool]:
        till_switch = set(self.settings().payments.enabled)
        return {
            m: m in till_switch and self.catalog.payment_methods.get(m, False)
            for m in PAYMENT_METHODS
        }

    @property
    def card_policy(self) -> CardPolicy:
        return card_policy(self.settings())

    def payment_decision(self, method: str, *, training: bool = False) -> Decision:
        return check_payment(
            method,
            self.connectivity(),
            enabled=self.enabled_methods(),
            card=self.card.card_facts(),
            policy=self.card_policy,
            training=training,
        )

    def refund_decision(
        self,
        method: str,
        *,
        training: bool = False,
        amount: int | None = None,
        card_left: int | None = None,
    ) -> Decision:
        return check_refund(
            method,
            self.connectivity(),
            enabled=self.enabled_methods(),
            terminal_ready=self.card.ready,
            training=training,
            amount=amount,
            card_left=card_left,
        )
