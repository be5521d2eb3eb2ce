"""A CleanCash control unit on a serial port: a supervised device implementing ControlUnit.

Connecting opens the port and asks the unit who it is (IQ) and how it is
(SIQ); a unit that does not answer is `offline` and tried again with
backoff (drivers/device.py). While idle the device asks SIQ every `poll_s`,
so a unit that is switched off behind a USB adapter that stays plugged in
goes `offline` too. The state is `error` when the unit reports an error
condition or a full memory, with the unit's own words as the detail.

One request runs at a time. Protocol v2 registers with one RR, v1 with ST,
RH and SQ, chosen by the version the unit gives in IR.

A request that goes unanswered leaves the driver "behind": the unit may
still answer it late, and a late answer must never be taken for the answer
to the next request (RR answers carry no reference to the request). Before
the next request the driver therefore sends SIQ and reads until its SIR,
reporting whatever came before it; the unit answers in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ...device import Backoff, DeviceListener, DeviceState, DeviceUnavailable, SupervisedDevice
from ..errors import ControlUnitError, ControlUnitUnavailable, RegistrationInDoubt, UnitRefused
from ..unit import (
    ControlUnit,
    MainStatus,
    ReceiptRegistration,
    Registration,
    StorageStatus,
    UnitIdentity,
    UnitStatus,
)
from . import messages
from .errors import CcspProtocolError
from .framing import Event, FrameError
from .link import CcspLink, LinkClosed, SerialPort
from .messages import Message
from .naks import NakError, StorageFull, nak_error

log = logging.getLogger("tilld.drivers.controlunit")

_ERROR_CONDITIONS = {
    MainStatus.PROTOCOL_ERROR: "a protocol error condition",
    MainStatus.NON_FATAL_ERROR: "a non-fatal error condition",
    MainStatus.FATAL_ERROR: "a fatal error condition",
}


@dataclass(frozen=True)
class CcspTimeouts:
    reply_s: float = 3.0  # a request -> its answer
    # After an unanswered request, how long the unit may take to catch up
    # (finish the old request and answer SIQ) before it counts as gone.
    catch_up_s: float = 15.0
    poll_s: float = 5.0  # SIQ while idle: a silent unit is noticed within this


class _NotSent(Exception):
    """The link was gone before the request was written: the unit cannot have acted."""


class _NoAnswer(Exception):
    """The request was written and no answer came in time."""


class _LinkLost(Exception):
    """The link broke after the request was written."""


def _is_status_reply(message: Message) -> bool:
    return message.type == messages.STATUS_REPLY


def _is_identity_reply(message: Message) -> bool:
    return message.type == messages.IDENTITY_REPLY


def _is_answer(message: Message) -> bool:
    # The answers to RR, ST, RH and SQ have types controlunit.md does not
    # name (messages.py), so anything but a status or identity reply is one.
    return message.type not in (messages.STATUS_REPLY, messages.IDENTITY_REPLY)


class CleanCashUnit(SupervisedDevice, ControlUnit):
    kind = "controlunit"

    def __init__(
        self,
        name: str,
        listener: DeviceListener,
        port: SerialPort,
        *,
        timeouts: CcspTimeouts | None = None,
        backoff: Backoff | None = None,
        first_sequence: int = 1,
    ) -> None:
        super().__init__(name, listener, backoff=backoff)
        self.port = port
        self.timeouts = timeouts or CcspTimeouts()
        self._link: CcspLink | None = None
        self._lock = asyncio.Lock()
        self._identity: UnitIdentity | None = None
        self._main = MainStatus.OK
        self._storage = StorageStatus.UNKNOWN
        # RR's message number. It only grows while this object lives, also
        # across reconnections, so a number sent with a receipt in doubt is
        # never reused for another receipt. What a unit requires of it (the
        # open implementation in controlunit.md counts from 1 per connection)
        # is to be checked; NAK 011 says a unit disagrees.
        self._sequence = first_sequence - 1
        # True from sending a request until its answer is read: a request
        # that timed out, lost its link or was cancelled may still be answered.
        self._behind = False
        self._doubt: ReceiptRegistration | None = None  # a registration not answered yet

    @property
    def identity(self) -> UnitIdentity | None:
        """Who the unit said it was when it last connected."""
        return self._identity

    # SupervisedDevice ---------------------------------------------------------

    async def _connect(self) -> None:
        link = await self.port.open()
        try:
            identity = messages.parse_identity_reply(
                await self._ask(link, messages.identity_query(), _is_identity_reply, "IQ")
            )
            main = messages.parse_status_reply(
                await self._ask(link, messages.status_query(), _is_status_reply, "SIQ")
            )
        except (_NotSent, _NoAnswer, _LinkLost, CcspProtocolError, UnitRefused) as exc:
            link.close("no handshake")
            raise DeviceUnavailable(
                f"{self.port.path} opened, but {exc}: is a CleanCash unit connected, "
                "switched on and set to 9600 8N1?"
            ) from exc
        except BaseException:
            link.close("closed while connecting")  # cancelled: the port must not leak
            raise
        if self._identity is not None and identity.unit_id != self._identity.unit_id:
            self._storage = StorageStatus.UNKNOWN  # another unit: the old one's word is void
        self._link, self._identity, self._main = link, identity, main
        self._behind = False  # the port's input was flushed when it opened
        log.info(
            "control unit %s: %s, protocol v%d, firmware %s",
            self.name,
            identity.unit_id,
            identity.protocol_version,
            identity.firmware_version,
        )

    async def _serve(self) -> None:
        link = self._link
        if link is None:
            raise DeviceUnavailable("not connected")
        self._publish()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.wait_closed(), self.timeouts.poll_s)
            if link.closed:
                raise DeviceUnavailable(link.close_reason or "the port was closed")
            if self._lock.locked():
                continue  # a request is running: it checks the unit by itself
            async with self._lock:
                try:
                    self._main = await self._query_status(link)
                except (_NotSent, _NoAnswer, _LinkLost) as exc:
                    raise DeviceUnavailable(
                        f"no answer to the status query ({exc}): unplugged or switched off?"
                    ) from exc
                except (CcspProtocolError, UnitRefused) as exc:
                    self._report_error(f"status query failed: {exc}")
            self._publish()

    async def _disconnect(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close("disconnected")

    # ControlUnit --------------------------------------------------------------

    async def identify(self) -> UnitIdentity:
        async with self._lock:
            link = self._live_link()
            try:
                await self._catch_up(link)
                reply = await self._ask(link, messages.identity_query(), _is_identity_reply, "IQ")
            except (_NotSent, _NoAnswer, _LinkLost) as exc:
                raise ControlUnitUnavailable(f"control unit {self.name}: {exc}") from exc
            try:
                self._identity = messages.parse_identity_reply(reply)
            except CcspProtocolError as exc:
                raise ControlUnitError(f"control unit {self.name}: unreadable IR: {exc}") from exc
            return self._identity

    async def unit_status(self) -> UnitStatus:
        async with self._lock:
            link = self._live_link()
            try:
                self._main = await self._query_status(link)
            except (_NotSent, _NoAnswer, _LinkLost) as exc:
                raise ControlUnitUnavailable(f"control unit {self.name}: {exc}") from exc
            except CcspProtocolError as exc:
                raise ControlUnitError(f"control unit {self.name}: unreadable SIR: {exc}") from exc
        self._publish()
        return UnitStatus(self._main, self._storage)

    async def register(
        self, receipt: ReceiptRegistration, *, sequence: int | None = None
    ) -> Registration:
        async with self._lock:
            link = self._live_link()
            identity = self._identity
            if identity is None or identity.protocol_version >= 2:
                return await self._register_v2(link, receipt, sequence)
            return await self._register_v1(link, identity, receipt)

    async def _register_v2(
        self, link: CcspLink, receipt: ReceiptRegistration, given: int | None
    ) -> Registration:
        # A caller that keeps its own numbers (durably, across restarts) passes
        # one; sending a receipt in doubt again with its first number lets the
        # unit recognise the repeat (docs/controlunit.md "In doubt").
        sequence = self._sequence + 1 if given is None else given
        request = messages.register_receipt(sequence, receipt)  # ReceiptInvalid: nothing sent
        await self._ready(link, receipt)
        self._sequence = max(self._sequence, sequence)
        what = f"RR (receipt {receipt.receipt_number}, sequence {sequence})"
        self._doubt = receipt
        try:
            registration = messages.parse_registration_reply(
                await self._ask(link, request, _is_answer, what)
            )
        except _NotSent as exc:
            self._doubt = None
            raise self._not_sent(receipt, exc) from exc
        except (_NoAnswer, _LinkLost, CcspProtocolError) as exc:
            raise self._in_doubt(receipt, sequence, what, exc) from exc
        except NakError as exc:
            self._refused(exc)
            raise
        self._doubt = None
        if self._identity is not None and registration.unit_id != self._identity.unit_id:
            self._report_error(
                f"the unit answered RR as {registration.unit_id}, but identified as "
                f"{self._identity.unit_id}: the code is printed with {registration.unit_id}"
            )
        self._storage = registration.storage
        self._publish()
        return registration

    async def _register_v1(
        self, link: CcspLink, identity: UnitIdentity, receipt: ReceiptRegistration
    ) -> Registration:
        header = messages.receipt_header(receipt)  # ReceiptInvalid: nothing sent
        await self._ready(link, receipt)
        number = receipt.receipt_number
        try:
            await self._ask(link, messages.start_receipt(), _is_answer, f"ST (receipt {number})")
            await self._ask(link, header, _is_answer, f"RH (receipt {number})")
        except (_NotSent, _NoAnswer, _LinkLost) as exc:
            # The control code is made only on SQ, which was not sent.
            raise self._not_sent(receipt, exc) from exc
        except NakError as exc:
            self._refused(exc)
            raise
        what = f"SQ (receipt {number})"
        self._doubt = receipt
        try:
            reply = await self._ask(link, messages.signature_query(), _is_answer, what)
            code = messages.parse_signature_reply(reply)
        except _NotSent as exc:
            self._doubt = None
            raise self._not_sent(receipt, exc) from exc
        except (_NoAnswer, _LinkLost, CcspProtocolError) as exc:
            raise self._in_doubt(receipt, None, what, exc) from exc
        except NakError as exc:
            self._refused(exc)
            raise
        self._doubt = None
        # v1's answers say nothing of the storage (controlunit.md).
        return Registration(code, identity.unit_id, StorageStatus.UNKNOWN)

    # Requests -----------------------------------------------------------------

    async def _ask(
        self,
        link: CcspLink,
        request: str,
        accept: Callable[[Message], bool],
        what: str,
        *,
        timeout_s: float | None = None,
        catching_up: bool = False,
    ) -> Message:
        """Send `request`, return the first reply `accept` takes; a NAK raises its NakError.

        Anything else that arrives meanwhile is a late answer to an earlier
        request and is reported, not taken. While `catching_up`, NAKs are
        late answers too.
        """
        self._discard(link.drain())
        # Set before writing: a write cut short by a cancel leaves part of a
        # frame on the line, which the unit may answer (NAK 001) too.
        self._behind = True
        try:
            await link.send(request)
        except LinkClosed as exc:
            raise _NotSent(f"{exc} (before {what} was sent)") from exc
        limit = timeout_s if timeout_s is not None else self.timeouts.reply_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            try:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError
                event = await link.receive(remaining)
            except TimeoutError:
                raise _NoAnswer(f"no answer to {what} within {limit:g} s") from None
            except LinkClosed as exc:
                raise _LinkLost(f"{exc} (waiting for the answer to {what})") from exc
            if isinstance(event, FrameError):
                self._report_error(f"damaged frame from the unit ignored: {event.reason}")
                continue
            try:
                message = messages.parse_message(event.message)
            except CcspProtocolError as exc:
                self._report_error(f"unreadable answer ignored: {exc}")
                continue
            if message.type == messages.NAK and not catching_up:
                self._behind = False
                raise nak_error(what, message.fields[0] if message.fields else "")
            if message.type != messages.NAK and accept(message):
                self._behind = False
                return message
            self._late_answer(message)

    async def _catch_up(self, link: CcspLink) -> None:
        """After an unanswered request, read until the unit has answered everything."""
        if not self._behind:
            return
        await self._ask(
            link,
            messages.status_query(),
            _is_status_reply,
            "SIQ (catching up)",
            timeout_s=self.timeouts.catch_up_s,
            catching_up=True,
        )
        self._doubt = None  # its late answer, if any, has been reported by now

    async def _ready(self, link: CcspLink, receipt: ReceiptRegistration) -> None:
        try:
            await self._catch_up(link)
        except (_NotSent, _NoAnswer, _LinkLost) as exc:
            raise self._not_sent(receipt, exc) from exc

    async def _query_status(self, link: CcspLink) -> MainStatus:
        await self._catch_up(link)
        reply = await self._ask(link, messages.status_query(), _is_status_reply, "SIQ")
        return messages.parse_status_reply(reply)

    def _discard(self, events: list[Event]) -> None:
        """What arrived while no request waited: late answers, or noise."""
        for event in events:
            if isinstance(event, FrameError):
                self._report_error(f"damaged frame from the unit ignored: {event.reason}")
                continue
            try:
                self._late_answer(messages.parse_message(event.message))
            except CcspProtocolError as exc:
                self._report_error(f"unreadable late answer ignored: {exc}")

    def _late_answer(self, message: Message) -> None:
        doubt = self._doubt
        if doubt is None or not _is_answer(message):
            log.info("control unit %s: late %s dropped", self.name, message.type)
            return
        # The only request that can still be answered late is the one in
        # doubt: what it says helps whoever resolves that doubt.
        first = message.fields[0] if message.fields else "?"
        if message.type == messages.NAK:
            said = f"NAK {first}: it was not registered"
        else:
            said = f"{message.type} with control code {first}"
        self._report_error(
            f"late answer to the registration in doubt of receipt {doubt.receipt_number}: "
            f"{said}; the answer was not used"
        )

    # Helpers ------------------------------------------------------------------

    def _live_link(self) -> CcspLink:
        link = self._link
        if link is None or link.closed or not self.connected:
            raise ControlUnitUnavailable(
                f"control unit {self.name} is not connected ({self.status.detail or 'offline'}); "
                "nothing was sent: no receipt may be issued until it is back"
            )
        return link

    def _not_sent(self, receipt: ReceiptRegistration, exc: Exception) -> ControlUnitUnavailable:
        return ControlUnitUnavailable(
            f"control unit {self.name}: {exc}; receipt {receipt.receipt_number} was not "
            "registered and has no control code: register it again when the unit answers"
        )

    def _refused(self, exc: NakError) -> None:
        self._doubt = None
        if isinstance(exc, StorageFull):
            self._storage = StorageStatus.MEMORY_FULL
            self._publish()

    def _in_doubt(
        self, receipt: ReceiptRegistration, sequence: int | None, what: str, exc: Exception
    ) -> RegistrationInDoubt:
        message = (
            f"control unit {self.name}: {exc} after {what} was sent; the unit may have "
            f"registered receipt {receipt.receipt_number}. Do not issue it without a control "
            "code; resolve the doubt before the next receipt (docs/controlunit.md)"
        )
        log.warning("%s", message)
        return RegistrationInDoubt(message, receipt, sequence)

    def _publish(self) -> None:
        """The device state from what the unit last said about itself."""
        if not self.connected:
            return
        problems, notes = [], []
        if self._storage is StorageStatus.MEMORY_FULL:
            problems.append(
                "transaction memory full: the unit registers no more receipts; call its supplier"
            )
        elif self._storage is StorageStatus.HIGH_LEVEL_WARNING:
            notes.append(
                "storage high-level warning: the transaction memory is nearly full; "
                "call the unit's supplier soon"
            )
        main, wire = self._main, messages.MAIN_STATUS_WIRE[self._main]
        if main in _ERROR_CONDITIONS:
            problems.append(f"the unit reports {_ERROR_CONDITIONS[main]} (main status {wire})")
        elif main is MainStatus.WARNING:
            notes.append(f"the unit reports a warning condition (main status {wire})")
        elif main is MainStatus.BUSY:
            notes.append(f"the unit is busy (main status {wire})")
        state = DeviceState.ERROR if problems else DeviceState.OK
        self._set_status(state, "; ".join(problems + notes))


__all__ = ["CcspTimeouts", "CleanCashUnit", "NakError"]
