"""Card payments through the terminal: no double charge, no lost approval.

The order of things is what makes a card payment safe:

1. Before the terminal sees anything, a `card-intent` entry is journaled,
   with the sale kept on disk and the terminal's last receipt number (the
   driver's `doubt_record`). A crash from here on leaves an open intent.
2. The terminal runs the payment; its intermediate texts ("insert card",
   "enter PIN") are `terminal` events for the cashier's screen.
3. The outcome is journaled as `card-result`, closing the intent. An
   approval is added to the sale in the same transaction, so it can never be
   lost even if the sale is not complete yet.
4. An outcome the terminal could not give (link lost, tilld killed) stays
   an open intent. Before any new card payment, every open intent is
   resolved by asking the terminal what it booked; while one cannot be
   resolved, card payments are refused rather than risk charging twice.

Without internet the terminal approves offline and stores the payment. The
count of stored payments is kept with the entries that change it; the limit
is checked before the terminal sees the card, the brand after it has read
it: a brand that must go online, approved offline anyway, is reversed at
once and both are journaled. When the internet returns the terminal is told
to send its stored payments and close the day, and the count is set from
its answer.

The rooms: ``desk.py`` owns the terminal and the lock every terminal
exchange holds, and what they share (doubts, the offline count);
``paying.py`` and ``refunding.py`` run a payment and a refund;
``doubts.py`` resolves what the terminal left unsaid; ``records.py`` writes
their journal entries; ``offline_store.py`` flushes the terminal's store.
This module composes them into the one object the till is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from drivers.terminal import CardTerminal

from ..config import Settings
from ..events import EventBus
from ..journal import Entry, Journal
from ..payment_policy import card_policy
from ..rules import CardFacts, Connectivity
from ..sales import Sale
from ..settlement import Settlement
from .desk import OFFLINE_STORED, TerminalDesk, card_record
from .doubts import DoubtResolver
from .offline_store import OfflineStore
from .paying import CardPaying
from .records import CardRecords
from .refunding import CardRefunding

__all__ = ["OFFLINE_STORED", "CardPayments", "card_record"]


class CardPayments:
    def __init__(
        self,
        terminal: CardTerminal | None,
        journal: Journal,
        events: EventBus,
        settlement: Settlement,
        *,
        connectivity: Callable[[], Connectivity],
        settings: Callable[[], Settings],
    ) -> None:
        """``settlement`` is where an approved payment settles its sale and a
        refund gets its receipt; the rest are the facts the rules need."""
        self.desk = TerminalDesk(terminal, events)
        records = CardRecords(self.desk, journal, settlement)
        self.offline_store = OfflineStore(
            self.desk, journal, events, policy=lambda: card_policy(settings())
        )
        self.doubts = DoubtResolver(
            self.desk, records, self.offline_store, journal, settlement, connectivity
        )
        self.paying = CardPaying(
            self.desk,
            records,
            self.doubts,
            journal,
            settlement,
            connectivity=connectivity,
            settings=settings,
        )
        self.refunding = CardRefunding(self.desk, records, self.doubts, journal)

    @property
    def ready(self) -> bool:
        return self.desk.ready

    async def close_batch(self) -> dict[str, Any]:
        """End of day at the terminal, for a Z report: forward, reconcile, journal."""
        return await self.offline_store.close_batch("z-report")

    @property
    def offline_stored(self) -> int:
        return self.desk.offline_stored

    def card_facts(self) -> CardFacts:
        """What the rules need to say whether card payments are open right now."""
        return replace(self.desk.card_facts(), terminal_ready=self.desk.ready)

    def offline_budget(self) -> dict[str, Any]:
        return self.offline_store.budget()

    def status(self) -> dict[str, Any]:
        return self.desk.status()

    async def start(self) -> None:
        """Read the offline count and the open intents (before the API serves anyone),
        then ask the terminal about the payments in doubt, in the background."""
        await self.doubts.load()
        await self.doubts.start()
        self.offline_store.start()

    async def stop(self) -> None:
        await self.doubts.stop()
        await self.offline_store.stop()

    async def pay(self, sale: Sale, amount: int) -> dict[str, Any]:
        """Charge `amount` to a card (the caller holds the sale's lock and checked the rules)."""
        return await self.paying.pay(sale, amount)

    async def cancel(self, sale_id: str, payment_id: str) -> dict[str, Any] | None:
        """The cashier cancels a card payment waiting at the terminal (None: not ours)."""
        return await self.paying.cancel(sale_id, payment_id)

    async def refund(self, body: dict[str, Any], original_cards: list[str]) -> Entry:
        """Pay a planned refund receipt back to the customer's card."""
        return await self.refunding.refund(body, original_cards)

    def in_doubt_for(self, sale_id: str) -> bool:
        return self.desk.in_doubt_for(sale_id)

    def at_terminal(self, sale_id: str) -> bool:
        """Is a card payment of this sale waiting at the terminal (for the customer)?"""
        return sale_id in self.desk.running

    def internet_back(self) -> None:
        """Flush the terminal's stored offline payments now the internet is back."""
        self.offline_store.internet_back()
