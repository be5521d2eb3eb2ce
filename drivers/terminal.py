"""The card terminal as tilld sees it, whatever protocol the terminal speaks.

ZVT (drivers/zvt) is the first implementation; a nexo / Adyen Terminal API
driver implements the same `CardTerminal` so the till never learns which
protocol is on the other end.

The one rule every implementation keeps: an authorisation whose outcome the
driver cannot know (the link broke, the terminal went silent) is reported as
`Outcome.IN_DOUBT`, never as a decline. The caller persists the `InDoubt`
record and calls `resolve_in_doubt` before taking the next card payment, so
a card is never charged twice and a charged card is never forgotten.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class DeclineReason(StrEnum):
    """Why a terminal said no, where the till's rules care, in no protocol's terms."""

    NEEDS_ONLINE = "needs-online"  # the card cannot be authorised offline (Maestro, V PAY...)
    OFFLINE_STORE_FULL = "offline-store-full"  # no room left for offline payments
    OTHER = "other"


class Outcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"  # the terminal or the card issuer said no; nothing charged
    ABORTED = "aborted"  # the customer or cashier cancelled; nothing charged
    IN_DOUBT = "in-doubt"  # unknown: resolve before the next card payment


@dataclass(frozen=True)
class CardTransaction:
    """What a terminal reported about one transaction: only what may be stored.

    Never a full PAN (masked_pan shows at most the first 6 and last 4 digits),
    never track data, CVV or PIN (CONTRACT.md).
    """

    amount: int  # öre
    result_code: int
    result_text: str
    brand: str | None = None  # "visa", "mastercard", "maestro", "visa-electron", "vpay", ...
    card_name: str | None = None
    masked_pan: str | None = None
    trace: int | None = None
    receipt_no: int | None = None
    auth_code: str | None = None
    terminal_id: str | None = None
    offline: bool = False  # approved by the terminal without asking the card network

    @property
    def approved(self) -> bool:
        return self.result_code == 0


@dataclass(frozen=True)
class InDoubt:
    """Enough to find out later whether an authorisation charged the card."""

    amount: int  # öre
    ref: str
    reason: str
    # The terminal's last receipt number seen before the authorisation was
    # sent; a later last-transaction with another number and this amount is
    # this payment. None with receipt_before_known: the terminal had none.
    receipt_before: int | None = None
    receipt_before_known: bool = False
    kind: str = "authorisation"  # or "refund", "reversal"


@dataclass(frozen=True)
class TerminalResult:
    outcome: Outcome
    amount: int  # öre, as asked
    ref: str  # the caller's reference, echoed (ZVT does not carry it)
    result_code: int | None = None
    result_text: str = ""
    transaction: CardTransaction | None = None
    receipt_lines: tuple[str, ...] = ()  # print lines / text blocks for the receipt
    doubt: InDoubt | None = None  # set exactly when outcome is IN_DOUBT
    decline_reason: DeclineReason = DeclineReason.OTHER

    @property
    def approved(self) -> bool:
        return self.outcome is Outcome.APPROVED

    @property
    def offline(self) -> bool:
        return self.transaction is not None and self.transaction.offline


@dataclass(frozen=True)
class IntermediateStatus:
    code: int
    text: str  # for the cashier's screen: "insert card", "enter PIN", "please wait"


@dataclass(frozen=True)
class TerminalState:
    code: int  # 0 = ready
    text: str
    software_version: str = ""

    @property
    def ready(self) -> bool:
        return self.code == 0


@dataclass(frozen=True)
class Settlement:
    """The answer to end of day or send offline transactions."""

    result_code: int
    result_text: str
    count: int = 0  # transactions in the batch (for send-offline: those sent)
    total: int = 0  # öre
    receipt_lines: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.result_code == 0


StatusCallback = Callable[[IntermediateStatus], None]


class TerminalError(Exception):
    """A command failed in a known way (refused, wrong password, protocol error).

    Nothing was charged. Not raised for an authorisation in doubt: that is a
    result, not an error.
    """


class TerminalUnavailable(TerminalError):
    """No link to the terminal now; nothing was sent. The device reconnects by itself."""


class CardTerminal(ABC):
    """A card terminal: one command at a time; calls wait for the terminal's answer."""

    @property
    @abstractmethod
    def ready(self) -> bool:
        """Connected and able to take a command now (nothing would be refused as unavailable)."""

    @abstractmethod
    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until ``ready``, at most ``timeout_s``; False if it did not become ready."""

    @abstractmethod
    def doubt_record(self, amount: int, ref: str, kind: str = "authorisation") -> InDoubt:
        """What to persist *before* sending a payment command, so that if the
        caller itself crashes mid-command, `resolve_in_doubt` can still tell
        whether this payment was booked."""

    @abstractmethod
    async def authorize(
        self, amount: int, ref: str, *, on_status: StatusCallback | None = None
    ) -> TerminalResult:
        """Charge `amount` öre. APPROVED / DECLINED / ABORTED / IN_DOUBT, never raises for
        a lost link once the request may have reached the terminal. Raises
        TerminalUnavailable only when nothing was sent."""

    @abstractmethod
    async def reverse(
        self, receipt_no: int, *, on_status: StatusCallback | None = None
    ) -> TerminalResult:
        """Void an approved payment of this terminal's current batch by its receipt number."""

    @abstractmethod
    async def refund(
        self, amount: int, ref: str = "", *, on_status: StatusCallback | None = None
    ) -> TerminalResult: ...

    @abstractmethod
    async def abort(self) -> None:
        """Ask the terminal to cancel the running command (the authorisation then ends
        ABORTED if the terminal agrees); harmless when nothing runs."""

    @abstractmethod
    async def status_enquiry(self) -> TerminalState: ...

    @abstractmethod
    async def last_transaction(self) -> CardTransaction | None:
        """The terminal's last booked transaction, or None if it has none."""

    @abstractmethod
    async def resolve_in_doubt(self, doubt: InDoubt) -> TerminalResult:
        """APPROVED (with the transaction) if the in-doubt payment charged the card,
        DECLINED if it did not, IN_DOUBT again if the terminal cannot tell yet."""

    @abstractmethod
    async def end_of_day(self) -> Settlement: ...

    @abstractmethod
    async def send_offline_transactions(self) -> Settlement: ...
