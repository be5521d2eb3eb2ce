"""A simulated ZVT card terminal: what a real one does with each ECR command.

It holds a full test PAN (as a card would present it) and masks it in what
it sends, keeps an offline store that fills up, and records every booked
transaction so tests can prove a card was charged once. Its behaviour for
the next transactions is a `Script` changed at run time through the control
channel (terminal.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..zvt import codes, messages
from ..zvt.apdu import (
    ABORT,
    ACK,
    AUTHORISATION,
    DIAGNOSIS,
    END_OF_DAY,
    POSITIVE_ACK,
    REFUND,
    REGISTRATION,
    REPEAT_RECEIPT,
    REVERSAL,
    SEND_OFFLINE,
    STATUS_ENQUIRY,
    Apdu,
)
from ..zvt.bcd import encode_bcd
from ..zvt.bmp import (
    decode_amount,
    decode_bcd_number,
    encode_amount,
    encode_pan,
    mask_pan,
    parse_bmps,
)
from ..zvt.errors import ZvtProtocolError
from ..zvt.link import ApduLink, LinkClosed, LinkTimeout
from .terminal_script import ONLINE_ONLY, Booked, TerminalBook

log = logging.getLogger("drivers.sim.terminal")

ACK_TIMEOUT_S = 5.0
RESULT_DECLINED = 0x05
NEGATIVE_PASSWORD = Apdu(0x84, 0x83)
BUSY = Apdu(0x84, 0x9C)  # our choice for a wrong password; zvt.md is silent


class _Aborted(Exception):
    """The ECR sent 06 B0 while the terminal waited."""


class _Dropped(Exception):
    """The script dropped the link mid-flow."""


@dataclass
class SimTerminal(TerminalBook):
    password: str = "000000"
    terminal_id: str = "52500001"
    software_version: str = "tilld-sim 1.0"
    next_receipt: int = 1
    next_trace: int = 1

    def reset(self) -> None:
        super().reset()
        self.next_receipt = self.next_trace = 1

    # One ECR connection -------------------------------------------------------

    async def serve(self, link: ApduLink, drop: Callable[[], None]) -> None:
        handlers = {
            REGISTRATION: self._registration,
            AUTHORISATION: self._authorisation,
            REVERSAL: self._reversal,
            REFUND: self._refund,
            STATUS_ENQUIRY: self._status_enquiry,
            END_OF_DAY: self._end_of_day,
            SEND_OFFLINE: self._send_offline,
            REPEAT_RECEIPT: self._repeat_receipt,
            DIAGNOSIS: self._diagnosis,
            ABORT: self._idle_abort,
        }
        while True:
            try:
                apdu = await link.receive(3600)
            except TimeoutError:
                continue
            except LinkClosed:
                return
            if apdu.command == ACK:
                continue  # a late acknowledgement of an earlier flow
            handler = handlers.get(apdu.command)
            self.commands[f"{apdu.cls:02X} {apdu.instr:02X}"] += 1
            try:
                if handler is None:
                    await link.send(Apdu(0x84, codes.RESULT_FUNCTION_NOT_POSSIBLE))
                    continue
                await handler(link, apdu, drop)
            except _Dropped:
                log.info("link dropped mid-flow, as scripted")
                if link.closed:
                    return
            except (LinkClosed, LinkTimeout):
                return
            except ZvtProtocolError as exc:
                log.warning("bad command %r: %s", apdu, exc)
                await link.send(Apdu(0x84, 0x9A))  # ZVT protocol error

    async def _send_wait_ack(self, link: ApduLink, apdu: Apdu) -> None:
        await link.send(apdu)
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while True:
            try:
                answer = await link.receive(max(0.0, deadline - time.monotonic()))
            except TimeoutError as exc:
                raise _Dropped("the ECR did not acknowledge") from exc
            if answer.command == ACK:
                return
            await self._busy(link, answer)

    async def _busy(self, link: ApduLink, answer: Apdu) -> None:
        """A message that is not the awaited one, in the middle of a flow."""
        if answer.command == ABORT:
            raise _Aborted()
        if answer.command != ACK:
            # A new command while busy: refuse it (84 9C "please wait"), as the
            # terminal cannot run two commands at once.
            log.info("busy: %r refused", answer)
            await link.send(BUSY)

    async def _check_password(self, link: ApduLink, apdu: Apdu) -> bool:
        if messages.decode_password(apdu.data) == self.password:
            return True
        await link.send(NEGATIVE_PASSWORD)
        return False

    # Commands ---------------------------------------------------------------

    async def _registration(self, link: ApduLink, apdu: Apdu, drop) -> None:
        if not await self._check_password(link, apdu):
            return
        await link.send(POSITIVE_ACK)
        currency = apdu.data[4:6]
        data = bytes((0x19, 0x00, 0x29)) + bytes.fromhex(self.terminal_id)
        if len(currency) == 2:
            data += b"\x49" + currency
        await self._send_wait_ack(link, Apdu(0x06, 0x0F, data))

    async def _authorisation(self, link: ApduLink, apdu: Apdu, drop) -> None:
        bmps = parse_bmps(apdu.data)
        if 0x04 not in bmps:
            await link.send(Apdu(0x84, 0x9A))
            return
        amount = decode_amount(bmps[0x04])
        await link.send(POSITIVE_ACK)
        script = self.script
        try:
            online = script.online
            await self._send_wait_ack(
                link,
                messages.intermediate_status(
                    codes.STATUS_ONLINE if online else codes.STATUS_OFFLINE
                ),
            )
            await self._send_wait_ack(link, messages.intermediate_status(codes.STATUS_INSERT_CARD))
            await self._hold(link)
            if not online and len(self.offline_store) >= script.offline_limit:
                await self._send_wait_ack(
                    link, messages.abort_from_terminal(codes.RESULT_MEMORY_FULL)
                )
                return
            if (
                not online
                and script.brand in ONLINE_ONLY
                and not script.approve_online_only_offline
            ):
                await self._send_wait_ack(
                    link, messages.abort_from_terminal(codes.RESULT_OFFLINE_ERROR)
                )
                return
            await self._send_wait_ack(link, messages.intermediate_status(codes.STATUS_ENTER_PIN))
            if script.delay_s:
                await self._wait_or_abort(link, script.delay_s)
            await self._send_wait_ack(link, messages.intermediate_status(codes.STATUS_PLEASE_WAIT))
            if script.decision == "customer-abort":
                await self._send_wait_ack(link, messages.abort_from_terminal(codes.RESULT_ABORTED))
                return
        except _Aborted:
            await link.send(POSITIVE_ACK)
            await self._send_wait_ack(link, messages.abort_from_terminal(codes.RESULT_ABORTED))
            return
        if script.decision == "decline":
            info = self._status_bmps(
                RESULT_DECLINED,
                amount,
                self._take_trace(),
                None,
                online,
                script.brand,
                script.card_pan,
            )
            await self._send_wait_ack(link, messages.status_information(info))
            await self._send_wait_ack(link, messages.abort_from_terminal(RESULT_DECLINED))
            return
        if script.drop == "before-approval":
            script.drop = None
            drop()
            raise _Dropped()
        booked = self._book("authorisation", amount, offline=not online)
        if script.drop == "after-approval":
            script.drop = None
            drop()
            raise _Dropped()
        await self._send_booked(link, booked)

    async def _hold(self, link: ApduLink) -> None:
        """While scripted to "hold", keep waiting for the card (and repeat the prompt)."""
        repeat_at = time.monotonic() + 1.0
        while self.script.decision == "hold":
            await self._wait_or_abort(link, 0.1)
            if time.monotonic() > repeat_at:
                await self._send_wait_ack(
                    link, messages.intermediate_status(codes.STATUS_INSERT_CARD)
                )
                repeat_at = time.monotonic() + 1.0

    async def _wait_or_abort(self, link: ApduLink, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                answer = await link.receive(remaining)
            except TimeoutError:
                return
            await self._busy(link, answer)

    async def _reversal(self, link: ApduLink, apdu: Apdu, drop) -> None:
        if not await self._check_password(link, apdu):
            return
        bmps = parse_bmps(apdu.data[3:])
        receipt = decode_bcd_number(bmps.get(0x87, b""), 2, "receipt no (BMP 87)")
        await link.send(POSITIVE_ACK)
        original = next(
            (b for b in self.booked if b.receipt_no == receipt and b.kind == "authorisation"), None
        )
        if original is None or original.reversed:
            code = 0xB4 if original is not None else 0xB5
            await self._send_wait_ack(link, messages.abort_from_terminal(code))
            return
        original.reversed = True
        if original in self.offline_store:
            self.offline_store.remove(original)
        booked = self._book("reversal", original.amount, offline=original.offline, reverses=receipt)
        await self._send_booked(link, booked)

    async def _refund(self, link: ApduLink, apdu: Apdu, drop) -> None:
        if not await self._check_password(link, apdu):
            return
        amount = decode_amount(parse_bmps(apdu.data[3:]).get(0x04, b""))
        await link.send(POSITIVE_ACK)
        script = self.script
        try:
            await self._send_wait_ack(link, messages.intermediate_status(codes.STATUS_INSERT_CARD))
            await self._hold(link)
            if not script.online:
                # Money back to a card is always authorised online.
                await self._send_wait_ack(
                    link, messages.abort_from_terminal(codes.RESULT_OFFLINE_ERROR)
                )
                return
            if script.delay_s:
                await self._wait_or_abort(link, script.delay_s)
            if script.decision == "customer-abort":
                await self._send_wait_ack(link, messages.abort_from_terminal(codes.RESULT_ABORTED))
                return
        except _Aborted:
            await link.send(POSITIVE_ACK)
            await self._send_wait_ack(link, messages.abort_from_terminal(codes.RESULT_ABORTED))
            return
        if script.decision == "decline":
            await self._send_wait_ack(link, messages.abort_from_terminal(RESULT_DECLINED))
            return
        if script.drop == "before-approval":
            script.drop = None
            drop()
            raise _Dropped()
        booked = self._book("refund", amount, offline=False)
        if script.drop == "after-approval":
            script.drop = None
            drop()
            raise _Dropped()
        await self._send_booked(link, booked)

    async def _status_enquiry(self, link: ApduLink, apdu: Apdu, drop) -> None:
        if not await self._check_password(link, apdu):
            return
        await link.send(POSITIVE_ACK)
        full = len(self.offline_store) >= self.script.offline_limit
        status = codes.RESULT_MEMORY_FULL if full else 0x00
        await self._send_wait_ack(
            link, messages.status_enquiry_completion(self.software_version, status)
        )

    async def _end_of_day(self, link: ApduLink, apdu: Apdu, drop) -> None:
        if not await self._check_password(link, apdu):
            return
        await link.send(POSITIVE_ACK)
        if not self.script.online:
            await self._send_wait_ack(link, messages.abort_from_terminal(0xA3))  # no connection
            return
        self.offline_store.clear()  # end of day submits what was stored offline
        batch, self.batch = self.batch, []
        await self._send_totals(link, batch)

    async def _send_offline(self, link: ApduLink, apdu: Apdu, drop) -> None:
        if not await self._check_password(link, apdu):
            return
        await link.send(POSITIVE_ACK)
        if not self.script.online:
            await self._send_wait_ack(link, messages.abort_from_terminal(0xFA))
            return
        sent, self.offline_store = self.offline_store, []
        await self._send_totals(link, sent)

    async def _send_totals(self, link: ApduLink, records: list[Booked]) -> None:
        charged = [b for b in records if b.kind == "authorisation" and not b.reversed]
        total = sum(b.amount for b in charged)
        first = min((b.receipt_no for b in records), default=0)
        last = max((b.receipt_no for b in records), default=0)
        info = [
            (0x27, b"\x00"),
            (0x04, encode_amount(total)),
            (0x60, messages.encode_totals(first, last, [(0, 0)] * 6 + [(len(charged), total)])),
        ]
        await self._send_wait_ack(link, messages.status_information(info))
        await self._send_wait_ack(link, Apdu(0x06, 0x0F))

    async def _repeat_receipt(self, link: ApduLink, apdu: Apdu, drop) -> None:
        if not await self._check_password(link, apdu):
            return
        await link.send(POSITIVE_ACK)
        if not self.booked:
            await self._send_wait_ack(
                link, messages.abort_from_terminal(codes.RESULT_FUNCTION_NOT_POSSIBLE)
            )
            return
        await self._send_booked(link, self.booked[-1])

    async def _diagnosis(self, link: ApduLink, apdu: Apdu, drop) -> None:
        await link.send(POSITIVE_ACK)
        await self._send_wait_ack(link, Apdu(0x06, 0x0F))

    async def _idle_abort(self, link: ApduLink, apdu: Apdu, drop) -> None:
        await link.send(POSITIVE_ACK)  # nothing runs: nothing to abort

    # Helpers ----------------------------------------------------------------

    def _take_trace(self) -> int:
        trace, self.next_trace = self.next_trace, self.next_trace % 999999 + 1
        return trace

    def _book(
        self, kind: str, amount: int, *, offline: bool, reverses: int | None = None
    ) -> Booked:
        receipt, self.next_receipt = self.next_receipt, self.next_receipt % 9999 + 1
        booked = Booked(
            kind=kind,
            amount=amount,
            receipt_no=receipt,
            trace=self._take_trace(),
            brand=self.script.brand,
            masked_pan=mask_pan(self.script.card_pan),
            offline=offline,
            reverses=reverses,
        )
        self.booked.append(booked)
        self.batch.append(booked)
        if offline and kind == "authorisation":
            self.offline_store.append(booked)
        return booked

    def _status_bmps(
        self,
        result: int,
        amount: int,
        trace: int,
        receipt: int | None,
        online: bool,
        brand: str,
        pan: str,
    ) -> list[tuple[int, bytes]]:
        now = time.localtime()
        bmps = [
            (0x27, bytes((result,))),
            (0x04, encode_amount(amount)),
            (0x0B, encode_bcd(trace, 3)),
            (0x0C, bytes.fromhex(time.strftime("%H%M%S", now))),
            (0x0D, bytes.fromhex(time.strftime("%m%d", now))),
            (0x0E, bytes.fromhex("2812")),
            (0x19, bytes((codes.PAYMENT_TYPE_ONLINE if online else codes.PAYMENT_TYPE_OFFLINE,))),
            (0x22, encode_pan(pan, mask=True)),  # the full PAN never leaves the terminal
            (0x29, bytes.fromhex(self.terminal_id)),
            (0x49, encode_bcd(messages.CURRENCY_SEK, 2)),
            (0x8A, bytes((codes.BRAND_IDS.get(brand, 0x08),))),
            (0x8B, brand.upper().encode() + b"\x00"),
        ]
        if receipt is not None:
            bmps += [(0x87, encode_bcd(receipt, 2)), (0x3B, f"A{receipt:05d}".ljust(8).encode())]
        return bmps

    async def _send_booked(self, link: ApduLink, booked: Booked) -> None:
        info = self._status_bmps(
            0x00,
            booked.amount,
            booked.trace,
            booked.receipt_no,
            not booked.offline,
            booked.brand,
            booked.masked_pan,
        )
        await self._send_wait_ack(link, messages.status_information(info))
        lines = [
            "tilld terminal simulator",
            f"{booked.kind.upper()}  {booked.amount // 100},{booked.amount % 100:02d} SEK",
            f"{booked.brand}  {booked.masked_pan}",
            f"receipt {booked.receipt_no:04d}  trace {booked.trace:06d}",
            "OFFLINE" if booked.offline else "ONLINE",
        ]
        await self._send_wait_ack(link, messages.text_block(lines))
        await self._send_wait_ack(link, Apdu(0x06, 0x0F))
