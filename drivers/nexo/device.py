"""The nexo Retailer card terminal as a supervised device implementing CardTerminal.

The till is a pure HTTP client of the terminal (SaleCapabilities
"PrinterReceipt" only): each nexo request is one POST and its answer, on a
connection of its own. Payments, reversals, reconciliation and diagnosis go
one at a time; an abort or a transaction status question may go while a
payment waits for the customer.

Connecting means logging in; the supervisor in drivers/device.py logs in
again after the terminal could not be reached, answered LoggedOut, or
failed the idle diagnosis probe.

In doubt: every payment, refund and reversal carries a ServiceID derived
from its kind and the caller's reference, so after a lost answer (or after
tilld itself crashed) `resolve_in_doubt` asks the terminal for that very
request with a TransactionStatusRequest, never by paying again.

Texts for the cashier: the terminal only pushes display texts to a till that
serves HTTP itself, which tilld does not; the driver reports its own status
texts through the same callback as ZVT ("present the card", then "waiting
for the customer").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from ..device import Backoff, DeviceListener, DeviceUnavailable, SupervisedDevice
from ..terminal import (
    CardTerminal,
    CardTransaction,
    InDoubt,
    IntermediateStatus,
    Outcome,
    Settlement,
    StatusCallback,
    TerminalError,
    TerminalResult,
    TerminalState,
    TerminalUnavailable,
)
from . import cards, codec
from .errors import NexoProtocolError
from .http import AnswerLost, ConnectFailed, post
from .messages import (
    KINDS,
    AbortRequest,
    Body,
    DiagnosisRequest,
    DiagnosisResponse,
    LoginRequest,
    LoginResponse,
    PaymentRequest,
    PaymentResponse,
    ReconciliationRequest,
    ReconciliationResponse,
    Result,
    ReversalRequest,
    ReversalResponse,
    TransactionStatusRequest,
    TransactionStatusResponse,
    message,
)
from .outcomes import (
    card_transaction,
    payment_result,
    result_code,
    result_text,
    reversal_result,
    transaction_service_id,
)

log = logging.getLogger("tilld.drivers.nexo")

STATUS_PRESENT_CARD = IntermediateStatus(1, "Present, insert or swipe the card on the terminal")
STATUS_WAITING = IntermediateStatus(2, "Waiting for the customer at the terminal")
REMEMBERED_TRANSACTIONS = 500  # for reversals by receipt number


@dataclass(frozen=True)
class NexoTimeouts:
    connect_s: float = 5.0
    short_s: float = 15.0  # login, abort, status, diagnosis
    payment_s: float = 300.0  # the customer may take long over a PIN
    admin_s: float = 600.0  # reconciliation talks to the acquirer
    busy_s: float = 30.0  # keep asking while the terminal answers Busy
    probe_s: float = 15.0  # idle diagnosis: is the terminal still there and logged in
    waiting_text_s: float = 4.0  # when "waiting for the customer" replaces "present the card"


class _Lost(Exception):
    """The request may have reached the terminal, and its answer did not come back."""


class NexoTerminal(SupervisedDevice, CardTerminal):
    kind = "terminal"

    def __init__(
        self,
        name: str,
        listener: DeviceListener,
        host: str,
        port: int,
        sale_id: str,
        poi_id: str,
        *,
        timeouts: NexoTimeouts = NexoTimeouts(),
        on_status: StatusCallback | None = None,
        backoff: Backoff | None = None,
        software_version: str = "",
    ) -> None:
        super().__init__(name, listener, backoff=backoff)
        if not sale_id or not poi_id:
            raise ValueError("a nexo terminal needs sale_id and poi_id")
        self.host, self.port = host, port
        self.sale_id, self.poi_id = sale_id, poi_id
        self.timeouts = timeouts
        self.on_status = on_status
        self.software_version = software_version or "1.0"
        self._lock = asyncio.Lock()
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._ids = itertools.count(int(time.time()) % 10**6 * 100)
        self._running: tuple[str, str] | None = None  # (ServiceID, category) of the open request
        self._poi: OrderedDict[int, tuple[str, str, int]] = OrderedDict()
        self._poi_software = ""

    # Supervision -----------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.connected and not self._lost.is_set()

    async def _connect(self) -> None:
        self._lost.clear()
        login = LoginRequest(
            date_time=datetime.now().astimezone().isoformat(timespec="seconds"),
            provider="tilld",
            application="tilld",
            version=self.software_version,
        )
        try:
            response = await self._send(login, self._next_service_id(), self.timeouts.short_s)
        except (_Lost, TerminalError) as exc:
            raise DeviceUnavailable(f"login failed: {exc}") from exc
        if not isinstance(response, LoginResponse):
            raise DeviceUnavailable(f"login answered with {type(response).__name__}")
        if not response.response.ok:
            raise DeviceUnavailable(
                f"terminal refused the login: {result_text(response.response)}; "
                "check devices.terminal.sale_id and poi_id"
            )
        self._poi_software = response.poi_software

    async def _serve(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeouts.probe_s):
                    await self._lost.wait()
            if self._lost.is_set():
                raise DeviceUnavailable(self._lost_reason or "link lost")
            if self._lock.locked():
                continue  # a payment is running: the terminal is there
            async with self._lock:
                try:
                    answer = await self._send(
                        DiagnosisRequest(), self._next_service_id(), self.timeouts.short_s
                    )
                except (_Lost, TerminalError) as exc:
                    raise DeviceUnavailable(f"diagnosis unanswered: {exc}") from exc
            if isinstance(answer, DiagnosisResponse) and answer.response.error_condition == (
                "LoggedOut"
            ):
                raise DeviceUnavailable("the terminal logged the till out")

    async def _disconnect(self) -> None:
        self._running = None

    def _mark_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            log.warning("terminal %s: %s; logging in again", self.name, reason)
            self._lost_reason = reason
            self._lost.set()

    # Requests ---------------------------------------------------------------

    def _next_service_id(self) -> str:
        return str(next(self._ids) % 10**9)

    async def _send(self, body: Body, service_id: str, answer_s: float) -> Body:
        """One request and its answer's body.

        TerminalUnavailable: not reachable, nothing sent. _Lost: no usable answer.
        """
        request = message(body, service_id, self.sale_id, self.poi_id)
        try:
            answer = await post(
                self.host,
                self.port,
                codec.encode(request),
                connect_s=self.timeouts.connect_s,
                answer_s=answer_s,
            )
        except ConnectFailed as exc:
            self._mark_lost(str(exc))
            raise TerminalUnavailable(
                f"card terminal {self.name} is not reachable ({exc}); nothing was sent"
            ) from None
        except (AnswerLost, NexoProtocolError) as exc:
            raise _Lost(str(exc)) from None
        try:
            status = answer.status
            if status != 200:
                raise NexoProtocolError(f"HTTP status {status} instead of 200")
            reply = codec.decode(answer.body)
        except NexoProtocolError as exc:
            # The error may quote a piece of the answer: no card number goes to the log.
            why = cards.mask_digit_runs(str(exc))
            self._report_error(f"unusable answer to {type(body).__name__}: {why}")
            raise _Lost(f"unusable answer: {why}") from None
        header = reply.header
        if header.service_id != service_id or header.category != request.header.category:
            raise _Lost(
                f"the terminal answered {reply.header.category} {reply.header.service_id} "
                f"to {request.header.category} {service_id}"
            )
        if getattr(reply.body, "response", Result()).error_condition == "LoggedOut":
            self._mark_lost("the terminal logged the till out")
        return reply.body

    async def _send_locked(self, body: Body, service_id: str, answer_s: float) -> Body:
        """One at a time, and again while the terminal answers Busy (it talks to its host)."""
        async with self._lock:
            if not self.ready:
                raise TerminalUnavailable(
                    f"card terminal {self.name} is not connected "
                    f"({self.status.detail or 'offline'}); nothing was sent"
                )
            busy_until = time.monotonic() + self.timeouts.busy_s
            delay = 0.2
            while True:
                self._running = (service_id, KINDS[type(body)][0])
                try:
                    reply = await self._send(body, service_id, answer_s)
                finally:
                    self._running = None
                busy = getattr(reply, "response", Result()).error_condition == "Busy"
                if not busy or time.monotonic() + delay > busy_until:
                    return reply
                # Busy means the terminal did not take the request: the same
                # request, same ServiceID, is safe to send again.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _tell(self, status: IntermediateStatus, on_status: StatusCallback | None) -> None:
        callback = on_status or self.on_status
        if callback is None:
            return
        try:
            callback(status)
        except Exception:
            log.exception("status callback failed")

    # CardTerminal -------------------------------------------------------------

    def doubt_record(self, amount: int, ref: str, kind: str = "authorisation") -> InDoubt:
        # The ServiceID comes from kind and ref: nothing more need be kept.
        return InDoubt(amount, ref, "not finished", None, True, kind)

    async def authorize(
        self, amount: int, ref: str, *, on_status: StatusCallback | None = None
    ) -> TerminalResult:
        return await self._payment("authorisation", "Normal", amount, ref, on_status)

    async def refund(
        self, amount: int, ref: str = "", *, on_status: StatusCallback | None = None
    ) -> TerminalResult:
        return await self._payment("refund", "Refund", amount, ref, on_status)

    async def _payment(
        self, kind: str, payment_type: str, amount: int, ref: str, on_status: StatusCallback | None
    ) -> TerminalResult:
        service_id = transaction_service_id(kind, ref) if ref else self._next_service_id()
        body = PaymentRequest(
            transaction_id=ref or service_id,
            timestamp=datetime.now().astimezone().isoformat(timespec="seconds"),
            amount=amount,
            payment_type=payment_type,
        )
        if not self.ready:
            raise TerminalUnavailable(
                f"card terminal {self.name} is not connected "
                f"({self.status.detail or 'offline'}); nothing was sent"
            )
        self._tell(STATUS_PRESENT_CARD, on_status)
        reminder = asyncio.create_task(self._remind(on_status))
        try:
            reply = await self._send_locked(body, service_id, self.timeouts.payment_s)
        except _Lost as exc:
            return self._in_doubt(kind, amount, ref, str(exc))
        finally:
            reminder.cancel()
        if not isinstance(reply, PaymentResponse):
            return self._in_doubt(kind, amount, ref, f"answered {type(reply).__name__}")
        return self._payment_result(reply, amount, ref)

    async def _remind(self, on_status: StatusCallback | None) -> None:
        await asyncio.sleep(self.timeouts.waiting_text_s)
        self._tell(STATUS_WAITING, on_status)

    def _in_doubt(self, kind: str, amount: int, ref: str, why: str) -> TerminalResult:
        reason = f"{kind} answer lost: {why}"
        log.warning("terminal %s: %s; the payment is in doubt", self.name, reason)
        return TerminalResult(
            Outcome.IN_DOUBT,
            amount,
            ref,
            result_text=f"{reason}. Resolve it before the next card payment.",
            doubt=InDoubt(amount, ref, reason, None, True, kind),
        )

    def _payment_result(self, reply: PaymentResponse, amount: int, ref: str) -> TerminalResult:
        outcome = payment_result(reply, amount, ref, self.poi_id)
        transaction = outcome.transaction
        if outcome.approved and transaction is not None and transaction.receipt_no is not None:
            # A reversal names the transaction by the terminal's id and time.
            self._poi[transaction.receipt_no] = (
                reply.poi_transaction_id,
                reply.poi_timestamp,
                transaction.amount,
            )
            while len(self._poi) > REMEMBERED_TRANSACTIONS:
                self._poi.popitem(last=False)
        return outcome

    async def reverse(
        self, receipt_no: int, *, on_status: StatusCallback | None = None
    ) -> TerminalResult:
        ref = f"reversal of receipt {receipt_no}"
        # The terminal names a transaction by its id and time; a receipt number
        # from before a restart is sent without the time, and the terminal says.
        poi_id, poi_time, amount = self._poi.get(receipt_no, (str(receipt_no), "", 0))
        body = ReversalRequest(poi_id, poi_time, "MerchantCancel")
        try:
            reply = await self._send_locked(
                body, transaction_service_id("reversal", ref), self.timeouts.payment_s
            )
        except _Lost as exc:
            return self._in_doubt("reversal", amount, ref, str(exc))
        if not isinstance(reply, ReversalResponse):
            return self._in_doubt("reversal", amount, ref, f"answered {type(reply).__name__}")
        return reversal_result(reply, amount, ref, self.poi_id)

    async def abort(self) -> None:
        running = self._running
        if running is None or not self.connected:
            return
        service_id, category = running
        request = message(
            AbortRequest(service_id, category, "Cancelled by the cashier"),
            self._next_service_id(),
            self.sale_id,
            self.poi_id,
        )
        try:
            answer = await post(
                self.host,
                self.port,
                codec.encode(request),
                connect_s=self.timeouts.connect_s,
                answer_s=self.timeouts.short_s,
            )
            status = answer.status
        except (ConnectFailed, AnswerLost, NexoProtocolError) as exc:
            log.info("terminal %s: abort not delivered: %s", self.name, exc)
            return
        # 204 No Content is the answer: the aborted payment answers Failure itself.
        if status not in (200, 204):
            log.info("terminal %s: abort answered HTTP %d", self.name, status)

    async def status_enquiry(self) -> TerminalState:
        try:
            reply = await self._send_locked(
                DiagnosisRequest(), self._next_service_id(), self.timeouts.short_s
            )
        except _Lost as exc:
            raise TerminalUnavailable(f"diagnosis unanswered: {exc}") from exc
        if not isinstance(reply, DiagnosisResponse) or not reply.response.ok:
            text = result_text(reply.response) if hasattr(reply, "response") else "no diagnosis"
            return TerminalState(1, text, self._poi_software)
        ok = reply.global_status in ("", "OK")
        return TerminalState(0 if ok else 1, reply.global_status or "OK", self._poi_software)

    async def _ask_status(self, request: TransactionStatusRequest) -> TransactionStatusResponse:
        if not self.ready:
            raise TerminalUnavailable(f"card terminal {self.name} is not connected")
        try:
            reply = await self._send(request, self._next_service_id(), self.timeouts.short_s)
        except _Lost as exc:
            raise TerminalUnavailable(f"transaction status unanswered: {exc}") from exc
        if not isinstance(reply, TransactionStatusResponse):
            raise TerminalError(f"transaction status answered with {type(reply).__name__}")
        return reply

    async def last_transaction(self) -> CardTransaction | None:
        reply = await self._ask_status(TransactionStatusRequest())
        if not reply.response.ok or reply.repeated is None:
            if reply.response.error_condition in ("Busy", "InProgress"):
                raise TerminalError("a transaction is still running on the terminal")
            return None
        body = reply.repeated.body
        if isinstance(body, PaymentResponse):
            return card_transaction(body, body.authorized_amount or 0, self.poi_id)
        if isinstance(body, ReversalResponse):
            return reversal_result(body, body.reversed_amount or 0, "", self.poi_id).transaction
        return None

    async def resolve_in_doubt(self, doubt: InDoubt) -> TerminalResult:
        def still(why: str) -> TerminalResult:
            return TerminalResult(
                Outcome.IN_DOUBT, doubt.amount, doubt.ref, result_text=why, doubt=doubt
            )

        if not doubt.ref:
            return still("a payment without a reference cannot be looked up: check the terminal")
        category = "Reversal" if doubt.kind == "reversal" else "Payment"
        request = TransactionStatusRequest(transaction_service_id(doubt.kind, doubt.ref), category)
        try:
            reply = await self._ask_status(request)
        except TerminalError as exc:
            return still(str(exc))
        result = reply.response
        if result.error_condition in ("Busy", "InProgress"):
            return still(f"the {doubt.kind} is still running on the terminal")
        if result.error_condition == "NotFound":
            return TerminalResult(
                Outcome.DECLINED,
                doubt.amount,
                doubt.ref,
                None,
                f"not booked: the terminal never took this {doubt.kind}",
            )
        if not result.ok or reply.repeated is None:
            return still(f"the terminal cannot tell yet: {result_text(result)}")
        body = reply.repeated.body
        if isinstance(body, PaymentResponse):
            if body.transaction_id and body.transaction_id != doubt.ref:
                return still("the terminal answered about another payment")
            outcome = self._payment_result(body, doubt.amount, doubt.ref)
        else:
            assert isinstance(body, ReversalResponse)
            outcome = reversal_result(body, doubt.amount, doubt.ref, self.poi_id)
        if outcome.outcome is Outcome.APPROVED:
            return outcome
        return TerminalResult(
            Outcome.DECLINED,
            doubt.amount,
            doubt.ref,
            outcome.result_code,
            f"not booked: the terminal answered {outcome.result_text}",
        )

    async def end_of_day(self) -> Settlement:
        return await self._reconcile("end of day", "SaleReconciliation")

    async def send_offline_transactions(self) -> Settlement:
        # nexo has no "send offline" of its own: synchronising with the acquirer
        # forwards what the terminal stored without closing its period.
        return await self._reconcile("send offline", "AcquirerSynchronisation")

    async def _reconcile(self, what: str, kind: str) -> Settlement:
        try:
            reply = await self._send_locked(
                ReconciliationRequest(kind), self._next_service_id(), self.timeouts.admin_s
            )
        except _Lost as exc:
            raise TerminalUnavailable(f"{what} unanswered: {exc}; run it again") from exc
        if not isinstance(reply, ReconciliationResponse):
            raise TerminalError(f"{what} answered with {type(reply).__name__}")
        result = reply.response
        if not result.ok:
            text = result_text(result)
            if result.error_condition in ("NotAllowed", "MessageFormat"):
                text += " (this terminal may not take nexo reconciliation: close its batch on it)"
            return Settlement(result_code(result), text)
        count = sum(t.count for t in reply.totals)
        total = sum(t.amount for t in reply.totals)
        return Settlement(0, f"{what} done", count, total)
