"""The error taxonomy that crosses every API boundary, and the registry of refusal reasons.

A domain refusal is a value with a stable reason code and a message in plain
words for the cashier or technician. The JSON-RPC adapter turns it into error
-32010 with ``data.reason``; the D-Bus adapter into the reason's error name;
so the code never has to be parsed back out of message text.

``Reason`` is the one list of those codes. Each says when it is used (the
table in docs/api.md is written from it by ``make api-docs``) and carries its
D-Bus error name, made by the naming rule in ``api/dbus_names.py`` (the one
home of every D-Bus name; it imports nothing from tilld). A code is never
renamed: UIs and scripts match on it (CONTRACT.md).
"""

from __future__ import annotations

import logging
from enum import StrEnum

from .api.dbus_names import error_name

log = logging.getLogger("tilld")


class Reason(StrEnum):
    """Every refusal reason a client can see, with when it is used.

    A member is its code (``Reason.SOLD_OUT == "sold-out"``), so it goes into
    JSON and D-Bus as the code itself. tests/test_reasons.py fails when code
    in tilld/ refuses with a code that is not here.
    """

    when: str
    dbus_error: str

    def __new__(cls, code: str, when: str) -> Reason:
        member = str.__new__(cls, code)
        member._value_ = code
        member.when = when
        member.dbus_error = error_name(code)
        return member

    METHOD_UNAVAILABLE_OFFLINE = (
        "method-unavailable-offline",
        "integrated Swish while the server is unreachable",
    )
    CARD_BRAND_ONLINE_ONLY = (
        "card-brand-online-only",
        "without internet, a card brand not in `card.offline_brands` (Visa Electron, Maestro,"
        " V PAY, ...)",
    )
    OFFLINE_CARD_LIMIT_REACHED = (
        "offline-card-limit-reached",
        "without internet, the terminal already holds `card.offline_limit` offline payments "
        "(`data.stored`, `data.limit`)",
    )
    OFFLINE_CARD_AMOUNT_LIMIT = (
        "offline-card-amount-limit",
        "without internet, a card payment above `card.offline_max_amount` öre (`data.amount`, "
        "`data.limit`)",
    )
    OFFLINE_CARD_TOTAL_LIMIT = (
        "offline-card-total-limit",
        "without internet, a card payment that would take the amount the terminal stores "
        "offline past `card.offline_max_total` öre (`data.stored_amount`, `data.amount`, "
        "`data.limit`)",
    )
    OFFLINE_CARDS_TOO_OLD = (
        "offline-cards-too-old",
        "without internet, the oldest payment the terminal stores offline is older than "
        "`card.offline_max_age_h` hours (`data.age_h`, `data.limit_h`)",
    )
    TERMINAL_UNAVAILABLE = (
        "terminal-unavailable",
        "a card payment or card refund with no card terminal configured or connected (nothing "
        "was sent to it)",
    )
    TERMINAL_BUSY = "terminal-busy", "the card terminal is running another payment"
    CARD_DECLINED = (
        "card-declined",
        "the terminal or the issuer declined the card; nothing was charged (`data.result_code`)",
    )
    CARD_ABORTED = (
        "card-aborted",
        "the customer or the cashier cancelled at the terminal; nothing was charged",
    )
    CARD_PAYMENT_IN_DOUBT = (
        "card-payment-in-doubt",
        "the terminal did not say whether the card was charged (link lost); do not charge "
        "again: tilld asks the terminal and adds the payment if it went through. Card "
        "payments are refused with this reason until every such payment is resolved",
    )
    CARD_PAYMENT_RECOVERED = (
        "card-payment-recovered",
        "an earlier card payment of this sale, in doubt, turned out to be approved and was "
        "added; `data.due` is what is left",
    )
    METHOD_DISABLED = (
        "method-disabled",
        "the method is switched off by the catalog or `payments.enabled`",
    )
    METHOD_NOT_SUPPORTED = (
        "method-not-supported",
        "this build has no flow for the method (a refund by integrated Swish: the venue's "
        "Swish account pays those back)",
    )
    CARD_REFUND_NEEDS_INTERNET = (
        "card-refund-needs-internet",
        "a refund to a card without the internet: refund in cash or manual Swish, or later",
    )
    REFUND_EXCEEDS_CARD_PAYMENT = (
        "refund-exceeds-card-payment",
        "more would go back to cards than the receipt took by card (`data.card_left`): refund"
        " the rest in cash or manual Swish",
    )
    CARD_REFUND_NOT_BOOKED = (
        "card-refund-not-booked",
        "the link to the terminal broke during a card refund, and asking the terminal at once"
        " showed it booked nothing: refund again",
    )
    CARD_PAYMENT_RUNNING = (
        "card-payment-running",
        "a change to a sale (add, remove, void, pay) while its card payment is at the terminal:"
        " wait for the payment's outcome, or cancel it",
    )
    REFUND_IN_PROGRESS = (
        "refund-in-progress",
        "a card refund of the same receipt is at the terminal now: wait for it",
    )
    CATALOG_DAMAGED = (
        "catalog-damaged",
        "the till's catalog file (`catalog.sqlite`) is damaged: restart tilld, which sets it "
        "aside and reads the catalog again",
    )
    TRAINING_REAL_MONEY = (
        "training-real-money",
        "card or integrated Swish on a training sale or receipt: they would move real money",
    )
    UNKNOWN_METHOD = "unknown-method", "not a payment method"
    PAYMENT_PENDING = (
        "payment-pending",
        "a payment (integrated Swish) is still waiting for the customer: wait, or cancel it "
        "with `sale.cancel_payment`",
    )
    UNKNOWN_PAYMENT = "unknown-payment", "the sale has no payment with that id waiting"
    SWISH_FAILED = (
        "swish-failed",
        "the back-end would not start or cancel the Swish request (not an outage)",
    )
    SOLD_OUT = "sold-out", "the event has no seats left for the quantity asked"
    RESERVATION_FAILED = (
        "reservation-failed",
        "the server refused the seat reservation for another reason",
    )
    NOT_A_DEMO = "not-a-demo", "`demo.set` outside `tilld demo`"
    UNKNOWN_SWITCH = "unknown-switch", "`demo.set` with a switch the demo does not have"
    NO_BACKEND = "no-backend", "`admin.sync_now` with no `backend.url` configured"
    EVENT_TICKET_OFFLINE = (
        "event-ticket-offline",
        "an event ticket while the server is unreachable; `data.fallback_plu` and "
        "`data.fallback_name` name the admission ticket to sell instead, when the catalog has"
        " one",
    )
    UNKNOWN_ARTICLE_KIND = "unknown-article-kind", "an article kind this till does not sell"
    UNKNOWN_ARTICLE = "unknown-article", "no article with that PLU or barcode in the catalog"
    UNKNOWN_SALE = "unknown-sale", "no open sale with that id (completed, voided or never opened)"
    TOO_MANY_OPEN_SALES = (
        "too-many-open-sales",
        "`sale.open` while `sales.max_open` sales are open (`data.open_sales`, "
        "`data.max_open`): complete or void open sales (`sale.list`), or raise "
        "`sales.max_open`",
    )
    UNKNOWN_LINE = "unknown-line", "the sale or receipt has no such line"
    UNKNOWN_RECEIPT = "unknown-receipt", "no sale with that receipt number in this till's journal"
    SALE_EMPTY = "sale-empty", "paying a sale without lines"
    CHECKOUT_NOT_COVERED = (
        "checkout-not-covered",
        "`sale.checkout` whose payments come to less than its total (`data.total`, "
        "`data.paid`, `data.due`); nothing was journaled",
    )
    CHECKOUT_OVERPAID = (
        "checkout-overpaid",
        "`sale.checkout` with a payment after the ones before it already covered the total "
        "(`data.payment`: its place in the list, from 1); nothing was journaled",
    )
    CHECKOUT_ID_IN_USE = (
        "checkout-id-in-use",
        "`sale.checkout` whose `checkout_id` is the id of an open or voided sale; send a new id",
    )
    CHECKOUT_NEEDS_STEPS = (
        "checkout-needs-steps",
        "`sale.checkout` with a `card` or integrated `swish` payment, which waits for the "
        "customer at a terminal or in an app: use `sale.open`, `sale.add` and `sale.pay`",
    )
    SALE_HAS_PAYMENTS = (
        "sale-has-payments",
        "changing the lines of a sale that has taken a payment (void it instead)",
    )
    QUANTITY_TOO_LARGE = "quantity-too-large", "more than 999 of one article on a sale"
    INVALID_AMOUNT = (
        "invalid-amount",
        "a zero payment while something is due, or a card refund of 0 öre",
    )
    AMOUNT_EXCEEDS_DUE = (
        "amount-exceeds-due",
        "a non-cash payment larger than what is due (cash gives change)",
    )
    REFUND_EXCEEDS_SALE = (
        "refund-exceeds-sale",
        "refunding more of a line than is left (`data.left`)",
    )
    NOTHING_TO_REFUND = "nothing-to-refund", "everything on the receipt is already refunded"
    TICKET_ALREADY_USED = (
        "ticket-already-used",
        "a refund of a ticket scanned in at this till's entrance (`data.codes`): refund the "
        "other lines, or allow it with `refunds.allow_used_tickets`",
    )
    TICKET_PATTERN_UNSUPPORTED = (
        "ticket-pattern-unsupported",
        "the catalog in use has a ticket code pattern outside the supported subset (one "
        "stored by an older tilld; a new catalog with such a pattern is refused when loaded),"
        " so no ticket codes can be made",
    )
    STORAGE_FULL = "storage-full", "the disk is full: nothing was recorded; free space and retry"
    STORAGE_FAILED = (
        "storage-failed",
        "the journal could not be written (I/O error): nothing was recorded",
    )
    SHUTTING_DOWN = "shutting-down", "the daemon is stopping and takes no new sales"
    JOURNAL_ROLLED_BACK = (
        "journal-rolled-back",
        "the journal went backwards (its last entries are lost, e.g. a deleted WAL or an old "
        "copy restored): every sale, refund and scan is refused so that no receipt number is "
        "issued twice. Restore the journal, or acknowledge with `admin.acknowledge_rollback`",
    )
    JOURNAL_NOT_ROLLED_BACK = (
        "journal-not-rolled-back",
        "`admin.acknowledge_rollback` while the journal has not gone backwards",
    )
    CONTROL_UNIT_UNAVAILABLE = (
        "control-unit-unavailable",
        "`sale.open`, `sale.add`, `sale.pay`, `sale.refund` or a copy while the control unit "
        "(kontrollenhet) is not working, or `receipt.print` of a receipt still waiting for its "
        "control code: no receipt may be issued without one (`data.detail` is the unit's own "
        "error)",
    )
    VAT_RATE_NOT_REGISTRABLE = (
        "vat-rate-not-registrable",
        "`sale.add` of an article whose VAT rate a control unit cannot register (only 25, 12, 6 "
        "and 0 %): its receipt could never be issued; fix the article's rate in the catalog",
    )
    CONTROL_UNIT_NO_DOUBT = (
        "control-unit-no-doubt",
        "`admin.controlunit_settle` of a receipt whose registration is not in doubt (never "
        "made, already registered, or waiting to be sent): there is nothing to settle; "
        "`status.get`'s `control_unit.doubts` lists those that are",
    )
    CONTROL_CODE_MALFORMED = (
        "control-code-malformed",
        "`admin.controlunit_settle` with action `registered` and a control code (or unit id) "
        "that is missing or not as the unit shows one: capitals and digits, no spaces",
    )
    PRINTER_NOT_CONFIGURED = (
        "printer-not-configured",
        "`receipt.print`, `drawer.open` or `admin.printer_test` on a till without "
        "`[devices.printer]`",
    )
    PRINTER_NOT_READY = (
        "printer-not-ready",
        "the printer is offline or reports a fault (`data.detail`: `paper-out`, `cover-open`,"
        " ...); tilld reconnects by itself",
    )
    RECEIPT_ALREADY_PRINTED = (
        "receipt-already-printed",
        "`receipt.print` of an original that was printed: ask for the copy (`copy: true`)",
    )
    COPY_ALREADY_PRINTED = (
        "copy-already-printed",
        "the one copy (KOPIA) of that receipt has been printed already",
    )
    RECEIPT_PRINTING = (
        "receipt-printing",
        "a copy was asked for while the original is still waiting for the printer",
    )
    SALE_NOT_COMPLETED = (
        "sale-not-completed",
        "`receipt.print` by `sale_id` of a sale that is open or voided",
    )
    CONFIG_INVALID = (
        "config-invalid",
        "`admin.reload` found the configuration file invalid; nothing changed (`data.problems`)",
    )
    RELOAD_UNAVAILABLE = (
        "reload-unavailable",
        "`admin.reload` in a daemon not started from a file (the demo)",
    )
    REFUSED = (
        "refused",
        "a rule refused without naming its reason: not expected, a bug to report with the "
        "tilld log",
    )


class TillError(Exception):
    """Base of every error tilld reports on purpose (never a bug)."""


class Refused(TillError):
    """The till refuses a request: the reason code is stable, the message says what to do.

    ``reason`` is a ``Reason``. The code in tilld/ always passes a member
    (tests/test_reasons.py fails on a string literal); a string is still
    accepted for a code that arrives as data, and is turned into its member.
    Should an unregistered string reach a till anyway,
    the refusal still goes out under that code and the log names the bug:
    a misspelt code must not turn a refusal into a crash at the till.
    """

    def __init__(self, reason: Reason | str, message: str, **details: object) -> None:
        super().__init__(message)
        self.reason = registered(reason)
        self.message = message
        self.details = details

    @property
    def dbus_error(self) -> str:
        """The D-Bus error name this refusal is answered with."""
        if isinstance(self.reason, Reason):
            return self.reason.dbus_error
        return error_name(self.reason)

    def __repr__(self) -> str:
        return f"Refused({str(self.reason)!r}, {self.message!r})"


def registered(reason: Reason | str) -> Reason | str:
    """The registered ``Reason`` for a code; an unregistered one is kept and logged as a bug."""
    try:
        return Reason(reason)
    except ValueError:
        log.error("refusal reason %r is not in tilld.errors.Reason; add it there", reason)
        return reason


class ConfigError(TillError):
    """The configuration cannot be used; ``problems`` lists each bad key and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class StartupError(TillError):
    """The daemon cannot start safely; the message names the cause and the fix."""
