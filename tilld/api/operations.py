"""The one table of operations every API serves: name, parameters, role, handler.

Adapters look operations up here and never add behaviour of their own, so
the socket and D-Bus can never disagree about what an operation does or who
may call it. It is one file, a little over 500 lines, on purpose: the table
read top to bottom is the whole API, with each operation's parameters beside
it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from ..catalog import MAX_BARCODE_LENGTH, MAX_PLU_LENGTH
from ..events import TOPICS
from ..fiscal import SETTLE_ACTIONS
from ..jobs import IdsFrom
from ..rules import PAYMENT_METHODS
from ..sales import MAX_QUANTITY, BasketLine, Tender
from ..till import Till
from .roles import Role

# SQLite stores an INTEGER in 64 signed bits: a larger Python int never reaches
# a query (it would fail there as a bug, -32603), so every integer parameter
# has an upper bound no higher than this and a lower bound of 0 or more.
INT64_MAX = 2**63 - 1

# The literals come from the modules that own the names, so there is one list of each.
Method = Literal[PAYMENT_METHODS]  # type: ignore[valid-type]
Topic = Literal[TOPICS]  # type: ignore[valid-type]


class Params(BaseModel):
    # Strict: 10.5 or "100" is not an amount in öre, true is not a quantity.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class NoParams(Params):
    pass


class SearchParams(Params):
    query: str = Field(default="", max_length=200)
    limit: StrictInt = Field(default=50, ge=1, le=500)


class OpenParams(Params):
    training: bool = False


class SaleRef(Params):
    sale_id: str = Field(min_length=1, max_length=64)


class ArticleLine(Params):
    """An article by PLU or barcode, and how many: a `sale.add`, or one line of a checkout."""

    plu: str | None = Field(default=None, min_length=1, max_length=MAX_PLU_LENGTH)
    barcode: str | None = Field(default=None, min_length=1, max_length=MAX_BARCODE_LENGTH)
    quantity: StrictInt = Field(default=1, ge=1, le=MAX_QUANTITY)

    @model_validator(mode="after")
    def _one_article_key(self) -> ArticleLine:
        if (self.plu is None) == (self.barcode is None):
            raise ValueError("give exactly one of plu or barcode")
        return self


class AddParams(ArticleLine, SaleRef):  # sale_id first: the D-Bus argument order
    pass


class RemoveParams(SaleRef):
    line_id: StrictInt = Field(ge=1, le=INT64_MAX)


class VoidParams(SaleRef):
    reason: str = Field(min_length=1, max_length=200)


class Waiting(Params):
    # False: answer at once with the id of what was started; the outcome is a
    # `job` event (tilld/jobs.py). D-Bus always passes false (dbus_schema.NO_WAIT).
    wait: bool = True


class TenderParams(Params):
    method: Method
    amount: StrictInt = Field(ge=0, le=100_000_000)
    reference: str | None = Field(default=None, max_length=100)


class PayParams(TenderParams, SaleRef, Waiting):  # the fields in their D-Bus order
    pass


# A basket a UI sends in one call: larger ones are rung up line by line.
MAX_CHECKOUT_LINES = 200
MAX_CHECKOUT_PAYMENTS = 10


class CheckoutParams(Params):
    lines: list[ArticleLine] = Field(min_length=1, max_length=MAX_CHECKOUT_LINES)
    payments: list[TenderParams] = Field(min_length=1, max_length=MAX_CHECKOUT_PAYMENTS)
    training: bool = False
    # The client's own id for this checkout (it becomes the sale id): sent
    # again after a lost answer, it returns the sale already recorded.
    checkout_id: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )


class RefundLineParams(Params):
    line_id: StrictInt = Field(ge=1, le=INT64_MAX)
    quantity: StrictInt | None = Field(default=None, ge=1, le=MAX_QUANTITY)


class RefundParams(Waiting):
    receipt_no: StrictInt = Field(ge=1, le=INT64_MAX)
    lines: list[RefundLineParams] | None = Field(default=None, min_length=1)
    method: Method
    reason: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _each_line_once(self) -> RefundParams:
        ids = [line.line_id for line in self.lines or ()]
        if len(ids) != len(set(ids)):
            raise ValueError("name each line_id once; give its total quantity")
        return self


class PendingParams(Params):
    limit: StrictInt = Field(default=100, ge=1, le=1000)


class ExportParams(Params):
    since_seq: StrictInt = Field(default=0, ge=0, le=INT64_MAX)
    format: Literal["jsonl", "csv"] = "jsonl"
    limit: StrictInt = Field(default=1000, ge=1, le=10_000)


class ReportParams(Waiting):
    kind: Literal["x", "z"]


class FloatParams(Params):
    amount: int = Field(ge=0, le=100_000_000)  # öre now in the drawer as float
    note: str = Field(default="", max_length=200)


class CancelPaymentParams(SaleRef):
    payment_id: str = Field(min_length=1, max_length=64)


class ScanParams(Params):
    code: str = Field(min_length=1, max_length=512)


class ScansListParams(Params):
    state: Literal["pending", "registered", "rejected"] | None = None
    limit: StrictInt = Field(default=100, ge=1, le=10_000)


class SyncNowParams(Params):
    # The same word as Waiting's, for the same thing (answer when drained),
    # but false by default: D-Bus clients follow the drain by PendingEntries.
    wait: bool = False
    timeout_s: StrictInt = Field(default=60, ge=1, le=3600)


class DemoSwitchParams(Params):
    target: Literal["server", "internet", "printer", "scanner", "card", "controlunit"]
    state: str = Field(min_length=1, max_length=32)  # the demo names what each switch can be


class PrintParams(Waiting):
    sale_id: str | None = Field(default=None, min_length=1, max_length=64)
    receipt_no: StrictInt | None = Field(default=None, ge=1, le=INT64_MAX)
    # "copy" on the wire; BaseModel.copy is taken in Python.
    as_copy: bool = Field(default=False, alias="copy")

    @model_validator(mode="after")
    def _one_receipt_key(self) -> PrintParams:
        if (self.sale_id is None) == (self.receipt_no is None):
            raise ValueError("give exactly one of sale_id or receipt_no")
        return self


class PrinterTestParams(Waiting):
    pass


class ReceiptRef(Params):
    receipt_no: StrictInt = Field(ge=1, le=INT64_MAX)


class AcknowledgeParams(Params):
    technician: str = Field(
        min_length=1, max_length=100, description="Who acknowledges the loss (journaled)."
    )


class SettleParams(ReceiptRef):
    technician: str = Field(min_length=1, max_length=100, description="Who settles it (journaled).")
    action: Literal[SETTLE_ACTIONS]  # type: ignore[valid-type]
    control_code: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="With action registered: the code read from the unit.",
    )
    unit_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="With action registered: the unit's id, if not the one connected.",
    )


class SubscribeParams(Params):
    topics: list[Topic] | None = None


Handler = Callable[[Till, Any], Awaitable[dict[str, Any]] | dict[str, Any]]


@dataclass(frozen=True)
class Operation:
    name: str
    params: type[Params]
    role: Role
    summary: str
    handler: Handler | None  # None: served by the adapter itself (a subscription)


def _card_started(kinds: tuple[str, ...], **match: Any) -> IdsFrom:
    """The terminal event that names the payment a started card flow made: of
    ``kinds``, with the fields in ``match`` (its sale, or the receipt refunded)."""

    def ids(event: dict[str, Any]) -> dict[str, Any] | None:
        if event["topic"] != "terminal" or event.get("event") not in kinds:
            return None
        if any(event.get(key) != value for key, value in match.items()):
            return None
        return {"payment_id": event["payment_id"], "sale_id": event["sale_id"]}

    return ids


def _pay(till: Till, p: PayParams) -> Awaitable[dict[str, Any]]:
    work = till.pay(p.sale_id, p.method, p.amount, p.reference)
    if p.wait or p.method not in ("card", "swish"):
        return work  # cash and manual Swish are journaled at once
    # Integrated Swish asks the back-end for a request first: a slow one must
    # not hold the call either.
    return till.jobs.start("sale.pay", work, _card_started(("started",), sale_id=p.sale_id))


def _checkout(till: Till, p: CheckoutParams) -> Awaitable[dict[str, Any]]:
    lines = [BasketLine(line.plu, line.barcode, line.quantity) for line in p.lines]
    payments = [Tender(t.method, t.amount, t.reference) for t in p.payments]
    return till.checkout(lines, payments, p.training, p.checkout_id)


def _refund(till: Till, p: RefundParams) -> Awaitable[dict[str, Any]]:
    work = till.refund(p.receipt_no, _refund_lines(p), p.method, p.reason)
    if p.wait or p.method != "card":
        return work
    started = _card_started(("refund-started",), original_receipt_no=p.receipt_no)
    return till.jobs.start("sale.refund", work, started)


def _report(till: Till, p: ReportParams) -> Awaitable[dict[str, Any]]:
    work = till.report(p.kind)
    return work if p.wait else till.jobs.start("admin.report", work)


def _print_receipt(till: Till, p: PrintParams) -> Awaitable[dict[str, Any]]:
    work = till.print_receipt(p.sale_id, p.receipt_no, p.as_copy)
    return work if p.wait else till.jobs.start("receipt.print", work)


def _printer_test(till: Till, p: PrinterTestParams) -> Awaitable[dict[str, Any]]:
    work = till.printer_test()
    return work if p.wait else till.jobs.start("admin.printer_test", work)


def _refund_lines(p: RefundParams) -> dict[int, int | None] | None:
    if p.lines is None:
        return None
    return {line.line_id: line.quantity for line in p.lines}


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "status.get",
        NoParams,
        Role.CASHIER,
        "Mode, connectivity, pending counts, payment methods, devices.",
        lambda till, p: till.status(),
    ),
    Operation(
        "catalog.search",
        SearchParams,
        Role.CASHIER,
        "Articles by exact PLU, exact barcode or name (case and diacritics ignored).",
        lambda till, p: till.search(p.query, p.limit),
    ),
    Operation(
        "sale.open",
        OpenParams,
        Role.CASHIER,
        "Open a new sale; training: true for a training sale (ÖVNINGSKVITTO, not takings).",
        lambda till, p: till.open_sale(p.training),
    ),
    Operation(
        "sale.list",
        NoParams,
        Role.CASHIER,
        "Open sales (also those restored after a restart).",
        lambda till, p: till.list_sales(),
    ),
    Operation(
        "sale.add",
        AddParams,
        Role.CASHIER,
        "Add an article by PLU or barcode.",
        lambda till, p: till.add(p.sale_id, plu=p.plu, barcode=p.barcode, quantity=p.quantity),
    ),
    Operation(
        "sale.remove",
        RemoveParams,
        Role.CASHIER,
        "Remove a line from an unpaid sale.",
        lambda till, p: till.remove(p.sale_id, p.line_id),
    ),
    Operation(
        "sale.get",
        SaleRef,
        Role.CASHIER,
        "An open, completed or voided sale.",
        lambda till, p: till.get(p.sale_id),
    ),
    Operation(
        "sale.void",
        VoidParams,
        Role.CASHIER,
        "Cancel an open sale (journaled; money taken is listed to give back).",
        lambda till, p: till.void(p.sale_id, p.reason),
    ),
    Operation(
        "sale.pay",
        PayParams,
        Role.CASHIER,
        "Take a payment in öre; completes the sale when fully paid. A card payment with "
        "wait: false answers at once with its payment_id; the outcome is a job event.",
        _pay,
    ),
    Operation(
        "sale.checkout",
        CheckoutParams,
        Role.CASHIER,
        "A whole basket and its payments in one call: the completed sale in one journal "
        "entry, or a refusal that records nothing (cash and manual Swish only).",
        _checkout,
    ),
    Operation(
        "sale.cancel_payment",
        CancelPaymentParams,
        Role.CASHIER,
        "Cancel a payment still waiting for the customer (card at the terminal, integrated Swish).",
        lambda till, p: till.cancel_payment(p.sale_id, p.payment_id),
    ),
    Operation(
        "sale.refund",
        RefundParams,
        Role.CASHIER,
        "Refund a completed receipt, whole or by line (a new receipt). A card refund with "
        "wait: false answers at once; the outcome is a job event.",
        _refund,
    ),
    Operation(
        "sync.pending",
        PendingParams,
        Role.CASHIER,
        "Entries and tickets not yet accepted by the back-end.",
        lambda till, p: till.pending(p.limit),
    ),
    Operation(
        "scan.submit",
        ScanParams,
        Role.CASHIER,
        "A code scanned by a UI: an article, a ticket passage, or unknown.",
        lambda till, p: till.scan(p.code, source="api"),
    ),
    Operation(
        "scans.list",
        ScansListParams,
        Role.CASHIER,
        "Ticket scans, newest first, with their registration result.",
        lambda till, p: till.scans_list(p.state, p.limit),
    ),
    Operation(
        "events.subscribe",
        SubscribeParams,
        Role.CASHIER,
        "Receive `event` notifications for the given topics on this connection.",
        None,
    ),
    Operation(
        "admin.sync_now",
        SyncNowParams,
        Role.TECH,
        "Sync now; with wait, answer when drained or say why not.",
        lambda till, p: till.sync_now(p.wait, p.timeout_s),
    ),
    Operation(
        "demo.set",
        DemoSwitchParams,
        Role.CASHIER,
        "The demo only: switch its server, internet, printer, scanner or card terminal.",
        lambda till, p: till.demo_set(p.target, p.state),
    ),
    Operation(
        "admin.journal_verify",
        NoParams,
        Role.TECH,
        "Check the journal's hash chain; names the first bad seq.",
        lambda till, p: till.journal_verify(),
    ),
    Operation(
        "admin.acknowledge_rollback",
        AcknowledgeParams,
        Role.TECH,
        "Accept that a rolled-back journal lost its last entries (journaled); sales resume.",
        lambda till, p: till.acknowledge_rollback(p.technician),
    ),
    Operation(
        "admin.journal_export",
        ExportParams,
        Role.TECH,
        "A page of journal entries as JSON lines or CSV.",
        lambda till, p: till.journal_export(p.since_seq, p.format, p.limit),
    ),
    Operation(
        "admin.report",
        ReportParams,
        Role.TECH,
        "X report (a look) or Z report (closes the day, journaled); printed "
        "(wait: false: at once, the report as a job event if the paper takes longer).",
        _report,
    ),
    Operation(
        "receipt.print",
        PrintParams,
        Role.CASHIER,
        "Print a receipt (by sale_id or receipt_no); copy: true prints the one allowed KOPIA "
        "(wait: false: at once, the outcome as a job event if the paper takes longer).",
        _print_receipt,
    ),
    Operation(
        "receipt.get",
        ReceiptRef,
        Role.CASHIER,
        "A receipt as text from the journal, as the printer would print it; prints nothing.",
        lambda till, p: till.receipt_text(p.receipt_no),
    ),
    Operation(
        "drawer.open",
        NoParams,
        Role.CASHIER,
        "Open the cash drawer (journaled).",
        lambda till, p: till.open_drawer(),
    ),
    Operation(
        "float.set",
        FloatParams,
        Role.CASHIER,
        "Register the float (växelkassa) now in the drawer: at the start of the day and at "
        "each change (journaled).",
        lambda till, p: till.register_float(p.amount, p.note),
    ),
    Operation(
        "admin.printer_test",
        PrinterTestParams,
        Role.TECH,
        "Print a test page with Å, Ä, Ö and a QR code; answers the printer's state "
        "(wait: false: at once, the state as a job event).",
        _printer_test,
    ),
    Operation(
        "admin.terminal_flush",
        NoParams,
        Role.TECH,
        "Send the card payments the terminal stored offline now (needs the internet).",
        lambda till, p: till.terminal_flush(),
    ),
    Operation(
        "admin.controlunit_settle",
        SettleParams,
        Role.TECH,
        "Settle a control-unit registration in doubt, as checked at the unit: register-again "
        "sends it again, registered journals the code read from the unit (journaled).",
        lambda till, p: till.settle_control_unit(
            p.receipt_no, p.technician, p.action, p.control_code, p.unit_id
        ),
    ),
    Operation(
        "admin.reload",
        NoParams,
        Role.TECH,
        "Re-read the configuration (as SIGHUP does): what changed, what needs a restart.",
        lambda till, p: till.reload_config(),
    ),
    Operation(
        "admin.devices",
        NoParams,
        Role.TECH,
        "Configured devices and their state.",
        lambda till, p: {"devices": till.status()["devices"]},
    ),
)

BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}
