"""The ZVT card terminal as a supervised device implementing CardTerminal.

The ECR (we) sends a command; the terminal acknowledges (80 00 00, or 84 xx
to refuse), may send intermediate status, status information and print
lines, each of which we acknowledge, and ends with completion (06 0F) or
abort (06 1E) (zvt.md "Flow"). One command runs at a time.

Connecting means opening the transport and registering (06 00) with the
configured password; the supervisor in drivers/device.py reconnects after a
broken link. An authorisation whose answer is lost is IN_DOUBT, never a
decline: see drivers/terminal.py.

One class on purpose, though it runs past 500 lines: it is one state
machine (connected, registered, one command in flight) and every command
goes through the same exchange (_exchange, _handle), which decides what a
lost link means for the command running. The bytes are elsewhere: framing
in link.py and transport.py, messages in messages.py and bmp.py, codes in
codes.py. What is left is the flow, and a flow split across files would
hide the one rule that matters here: what counts as in doubt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from ..device import Backoff, DeviceListener, DeviceUnavailable, SupervisedDevice
from ..terminal import (
    CardTerminal,
    CardTransaction,
    DeclineReason,
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
from . import codes, messages
from .apdu import (
    ABORT_FROM_PT,
    ACK,
    COMPLETION,
    INTERMEDIATE_STATUS,
    NEGATIVE_ACK_CLASS,
    POSITIVE_ACK,
    PRINT_LINE,
    PRINT_TEXT_BLOCK,
    STATUS_INFORMATION,
    Apdu,
)
from .bmp import mask_card_numbers, parse_bmps
from .errors import ZvtProtocolError
from .link import ApduLink, LinkClosed, LinkTimeout
from .transport import Transport

log = logging.getLogger("tilld.drivers.zvt")

# ZVT result codes the till's card rules act on, in the interface's terms.
DECLINE_REASONS = {
    codes.RESULT_OFFLINE_ERROR: DeclineReason.NEEDS_ONLINE,
    codes.RESULT_MEMORY_FULL: DeclineReason.OFFLINE_STORE_FULL,
}


@dataclass(frozen=True)
class ZvtTimeouts:
    ack_s: float = 5.0  # command -> 80 00 00
    # Between two messages of a running flow: the customer may be typing a PIN
    # and terminals do not always send intermediate status meanwhile.
    idle_s: float = 120.0
    flow_s: float = 300.0  # a whole command, start to completion
    admin_s: float = 600.0  # end of day / send offline talk to the host for long


class _LinkLost(Exception):
    """The flow broke after the command may have reached the terminal."""


class _Refused(TerminalError):
    """84 xx: the terminal refused the command; nothing was done."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Flow:
    end: tuple[int, int] | None = None
    code: int = 0
    transactions: list[CardTransaction] = field(default_factory=list)
    totals: list[tuple[int, int]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    completion: bytes = b""
    offline_seen: bool = False


class ZvtTerminal(SupervisedDevice, CardTerminal):
    kind = "terminal"

    def __init__(
        self,
        name: str,
        listener: DeviceListener,
        transport: Transport,
        password: str,
        *,
        currency: int = messages.CURRENCY_SEK,
        timeouts: ZvtTimeouts = ZvtTimeouts(),
        on_status: StatusCallback | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(name, listener, backoff=backoff)
        messages.encode_password(password)  # a bad password is a config error: fail now
        self.transport = transport
        self._password = password
        self.currency = currency
        self.timeouts = timeouts
        self.on_status = on_status
        self._link: ApduLink | None = None
        self._lock = asyncio.Lock()
        self._running: str | None = None
        self._last_receipt: int | None = None
        self._receipt_known = False

    # Supervision -----------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Connected, registered and the link alive: commands will be sent."""
        return self._link is not None and not self._link.closed and self.connected

    async def _connect(self) -> None:
        link = await self.transport.open()
        try:
            flow = await self._exchange(
                link, messages.registration(self._password, currency=self.currency), None
            )
        except (_LinkLost, TerminalError) as exc:
            link.close("registration failed")
            raise DeviceUnavailable(f"registration (06 00) failed: {exc}") from exc
        if flow.end == ABORT_FROM_PT:
            link.close("registration refused")
            raise DeviceUnavailable(
                f"terminal refused registration: {codes.result_text(flow.code)}; "
                "check devices.terminal.password"
            )
        self._link = link
        await self._learn_last_receipt(link)

    async def _serve(self) -> None:
        link = self._link
        if link is not None:
            await link.wait_closed()
            raise DeviceUnavailable(f"link lost: {link.close_reason}")

    async def _disconnect(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close("disconnected")

    async def _learn_last_receipt(self, link: ApduLink) -> None:
        # Remember the terminal's last receipt number, so that an authorisation
        # that ends in doubt can later be told apart from an older payment.
        try:
            flow = await self._exchange(link, messages.repeat_receipt(self._password), None)
        except (_LinkLost, TerminalError) as exc:
            log.warning("terminal %s: last receipt unknown (%s)", self.name, exc)
            return
        booked = [t for t in flow.transactions if t.receipt_no is not None]
        self._last_receipt = booked[-1].receipt_no if booked else None
        self._receipt_known = True

    # The flow engine --------------------------------------------------------

    async def _exchange(
        self,
        link: ApduLink,
        command: Apdu,
        on_status: StatusCallback | None,
        flow_timeout_s: float | None = None,
    ) -> _Flow:
        """Send `command`, then serve the terminal until completion or abort.

        Raises TerminalError when the terminal refuses (84 xx) or answers
        nonsense, _LinkLost when the link breaks or the terminal goes silent.
        """
        for stale in link.drain():
            # Class/instruction and size only: a terminal's data may hold a PAN.
            log.debug(
                "terminal %s: stale %02X %02X (%d bytes) dropped",
                self.name,
                stale.cls,
                stale.instr,
                len(stale.data),
            )
        limit_s = flow_timeout_s or self.timeouts.flow_s
        deadline = time.monotonic() + limit_s
        try:
            await link.send(command)
            answer = await link.receive(self.timeouts.ack_s)
        except (LinkClosed, LinkTimeout, TimeoutError) as exc:
            raise _LinkLost(f"{exc} (waiting for the acknowledgement)") from exc
        flow = _Flow()
        if answer.cls == NEGATIVE_ACK_CLASS:
            raise _Refused(
                f"terminal refused {command.cls:02X} {command.instr:02X}: "
                f"{codes.result_text(answer.instr)} (84 {answer.instr:02X})",
                answer.instr,
            )
        if answer.command not in (ACK, ABORT_FROM_PT, COMPLETION):
            # Not a refusal: whether the command runs is unknown, so it is doubt.
            raise _LinkLost(
                f"terminal answered {answer.cls:02X} {answer.instr:02X} instead of 80 00 00"
            )
        message: Apdu | None = answer if answer.command != ACK else None
        while True:
            if message is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _LinkLost(f"the terminal did not finish within {limit_s:g} s")
                try:
                    message = await link.receive(min(self.timeouts.idle_s, remaining))
                except (LinkClosed, TimeoutError) as exc:
                    raise _LinkLost(str(exc)) from exc
            done = self._handle(message, flow, on_status)
            if message.command != ACK:  # an ACK (of our abort) is not itself acknowledged
                try:
                    await link.send(POSITIVE_ACK)
                except (LinkClosed, LinkTimeout) as exc:
                    if not done:
                        raise _LinkLost(f"{exc} (acknowledging)") from exc
            if done:
                return flow
            message = None

    def _handle(self, message: Apdu, flow: _Flow, on_status: StatusCallback | None) -> bool:
        """Take in one terminal message; True when it ends the flow."""
        command = message.command
        try:
            if command == INTERMEDIATE_STATUS:
                status = messages.decode_intermediate_status(message)
                if status.code in (codes.STATUS_OFFLINE, codes.STATUS_OFFLINE_TRANSACTION):
                    flow.offline_seen = True
                self._tell(status, on_status)
            elif command == STATUS_INFORMATION:
                transaction = messages.decode_status_information(message.data)
                flow.transactions.append(transaction)
                bmps = parse_bmps(message.data)
                if 0x60 in bmps:
                    flow.totals.append(messages.decode_totals(bmps[0x60]))
            elif command == PRINT_LINE:
                flow.lines.append(mask_card_numbers(messages.decode_print_line(message)))
            elif command == PRINT_TEXT_BLOCK:
                flow.lines += map(mask_card_numbers, messages.decode_text_block(message))
            elif command == COMPLETION:
                flow.end, flow.completion = COMPLETION, message.data
                return True
            elif command == ABORT_FROM_PT:
                flow.end, flow.code = ABORT_FROM_PT, messages.decode_abort_code(message)
                return True
            elif command != ACK:
                log.info(
                    "terminal %s: %02X %02X not used, acknowledged",
                    self.name,
                    message.cls,
                    message.instr,
                )
        except ZvtProtocolError as exc:
            # One bad message must not lose a payment's outcome: report and go on.
            self._report_error(f"unreadable {message.cls:02X} {message.instr:02X}: {exc}")
        return False

    def _tell(self, status: IntermediateStatus, on_status: StatusCallback | None) -> None:
        callback = on_status or self.on_status
        if callback is None:
            return
        try:
            callback(status)
        except Exception:
            log.exception("intermediate status callback failed")

    def _live_link(self) -> ApduLink:
        link = self._link
        if link is None or link.closed or not self.connected:
            raise TerminalUnavailable(
                f"card terminal {self.name} is not connected ({self.status.detail or 'offline'}); "
                "nothing was sent"
            )
        return link

    async def _command(
        self,
        what: str,
        command: Apdu,
        on_status: StatusCallback | None = None,
        flow_timeout_s: float | None = None,
    ) -> _Flow:
        async with self._lock:
            link = self._live_link()
            self._running = what
            try:
                return await self._exchange(link, command, on_status, flow_timeout_s)
            finally:
                self._running = None

    # CardTerminal -------------------------------------------------------------

    def doubt_record(self, amount: int, ref: str, kind: str = "authorisation") -> InDoubt:
        return InDoubt(
            amount=amount,
            ref=ref,
            reason="not finished",
            receipt_before=self._last_receipt,
            receipt_before_known=self._receipt_known,
            kind=kind,
        )

    async def authorize(
        self, amount: int, ref: str, *, on_status: StatusCallback | None = None
    ) -> TerminalResult:
        command = messages.authorisation(amount, currency=self.currency)
        doubt = InDoubt(
            amount=amount,
            ref=ref,
            reason="",
            receipt_before=self._last_receipt,
            receipt_before_known=self._receipt_known,
        )
        return await self._payment("authorisation", command, amount, ref, doubt, on_status)

    async def refund(
        self, amount: int, ref: str = "", *, on_status: StatusCallback | None = None
    ) -> TerminalResult:
        command = messages.refund(self._password, amount)
        doubt = InDoubt(amount, ref, "", self._last_receipt, self._receipt_known, kind="refund")
        return await self._payment("refund", command, amount, ref, doubt, on_status)

    async def reverse(
        self, receipt_no: int, *, on_status: StatusCallback | None = None
    ) -> TerminalResult:
        command = messages.reversal(self._password, receipt_no)
        ref = f"reversal of receipt {receipt_no}"
        doubt = InDoubt(0, ref, "", self._last_receipt, self._receipt_known, kind="reversal")
        return await self._payment("reversal", command, 0, ref, doubt, on_status)

    async def _payment(
        self,
        what: str,
        command: Apdu,
        amount: int,
        ref: str,
        doubt: InDoubt,
        on_status: StatusCallback | None,
    ) -> TerminalResult:
        try:
            flow = await self._command(what, command, on_status)
        except _LinkLost as exc:
            reason = f"{what} answer lost: {exc}"
            log.warning("terminal %s: %s; the payment is in doubt", self.name, reason)
            return TerminalResult(
                Outcome.IN_DOUBT,
                amount,
                ref,
                result_text=f"{reason}. Resolve it before the next card payment.",
                doubt=InDoubt(
                    doubt.amount,
                    doubt.ref,
                    reason,
                    doubt.receipt_before,
                    doubt.receipt_before_known,
                    doubt.kind,
                ),
            )
        except _Refused as exc:
            return TerminalResult(Outcome.DECLINED, amount, ref, exc.code, str(exc))
        return self._result(flow, amount, ref)

    def _result(self, flow: _Flow, amount: int, ref: str) -> TerminalResult:
        transaction = flow.transactions[-1] if flow.transactions else None
        if transaction is not None and flow.offline_seen and not transaction.offline:
            # Trust the terminal's own word (F1/F3) that it worked offline (zvt.md).
            transaction = _with_offline(transaction)
        lines = tuple(flow.lines)
        if not amount and transaction is not None:
            amount = transaction.amount  # a reversal names the receipt, not the amount
        if flow.end == ABORT_FROM_PT:
            code = flow.code
            outcome = Outcome.ABORTED if code == codes.RESULT_ABORTED else Outcome.DECLINED
            return TerminalResult(
                outcome,
                amount,
                ref,
                code,
                codes.result_text(code),
                transaction,
                lines,
                decline_reason=DECLINE_REASONS.get(code, DeclineReason.OTHER),
            )
        code = transaction.result_code if transaction is not None else codes.RESULT_APPROVED
        outcome = Outcome.APPROVED if code == codes.RESULT_APPROVED else Outcome.DECLINED
        if outcome is Outcome.APPROVED and transaction is not None and transaction.receipt_no:
            self._last_receipt, self._receipt_known = transaction.receipt_no, True
        return TerminalResult(
            outcome, amount, ref, code, codes.result_text(code), transaction, lines
        )

    async def abort(self) -> None:
        link = self._link
        if link is None or link.closed:
            return
        # Sent at once, even in the middle of a flow: the terminal then ends the
        # running command with 06 1E 6C. zvt.md lists 06 B0 without saying when;
        # the public spec lets the ECR send it while the terminal waits for the card.
        try:
            await link.send(messages.abort())
        except (LinkClosed, LinkTimeout) as exc:
            log.info("terminal %s: abort not delivered: %s", self.name, exc)

    async def status_enquiry(self) -> TerminalState:
        try:
            flow = await self._command("status enquiry", messages.status_enquiry(self._password))
        except _LinkLost as exc:
            raise TerminalUnavailable(f"status enquiry unanswered: {exc}") from exc
        if flow.end == ABORT_FROM_PT:
            raise TerminalError(f"status enquiry refused: {codes.result_text(flow.code)}")
        try:
            return messages.decode_status_enquiry_completion(flow.completion)
        except ZvtProtocolError as exc:
            raise TerminalError(f"status enquiry answer unreadable: {exc}") from exc

    async def last_transaction(self) -> CardTransaction | None:
        try:
            flow = await self._command("last transaction", messages.repeat_receipt(self._password))
        except _LinkLost as exc:
            raise TerminalUnavailable(f"last transaction unanswered: {exc}") from exc
        if flow.end == ABORT_FROM_PT or not flow.transactions:
            return None
        return flow.transactions[-1]

    async def resolve_in_doubt(self, doubt: InDoubt) -> TerminalResult:
        if not doubt.receipt_before_known:
            return TerminalResult(
                Outcome.IN_DOUBT,
                doubt.amount,
                doubt.ref,
                result_text="the terminal's receipt number before the payment is unknown: "
                "check the terminal's journal by hand",
                doubt=doubt,
            )
        try:
            last = await self.last_transaction()
        except TerminalError as exc:
            return TerminalResult(
                Outcome.IN_DOUBT, doubt.amount, doubt.ref, result_text=str(exc), doubt=doubt
            )
        charged = (
            last is not None
            and last.approved
            and last.receipt_no != doubt.receipt_before
            and (doubt.kind == "reversal" or last.amount == doubt.amount)
        )
        if charged and last is not None:
            if last.receipt_no:
                self._last_receipt, self._receipt_known = last.receipt_no, True
            return TerminalResult(
                Outcome.APPROVED, doubt.amount, doubt.ref, last.result_code, last.result_text, last
            )
        return TerminalResult(
            Outcome.DECLINED,
            doubt.amount,
            doubt.ref,
            None,
            f"not booked: the terminal's last transaction is not this {doubt.kind}",
        )

    async def end_of_day(self) -> Settlement:
        return await self._settle("end of day", messages.end_of_day(self._password))

    async def send_offline_transactions(self) -> Settlement:
        return await self._settle("send offline", messages.send_offline(self._password))

    async def _settle(self, what: str, command: Apdu) -> Settlement:
        try:
            flow = await self._command(what, command, None, self.timeouts.admin_s)
        except _LinkLost as exc:
            raise TerminalUnavailable(f"{what} unanswered: {exc}; run it again") from exc
        lines = tuple(flow.lines)
        if flow.end == ABORT_FROM_PT:
            return Settlement(flow.code, codes.result_text(flow.code), receipt_lines=lines)
        code = flow.transactions[-1].result_code if flow.transactions else 0
        count = sum(c for c, _ in flow.totals)
        total = sum(t for _, t in flow.totals)
        return Settlement(code, codes.result_text(code), count, total, lines)


def _with_offline(transaction: CardTransaction) -> CardTransaction:
    from dataclasses import replace

    return replace(transaction, offline=True)
