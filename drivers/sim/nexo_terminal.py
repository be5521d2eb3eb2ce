"""A simulated nexo Retailer terminal: Swedbank Pay's PAX form of nexo 3.1, XML over HTTP.

    tilld sim terminal --protocol nexo --listen 127.0.0.1:11000 --control 127.0.0.1:0

It serves POST /EPASSaleToPOI/3.1 on loopback, one request per connection,
and takes the same script and control channel as the ZVT simulator
(terminal.py): brand, online/offline, approve/decline/customer-abort/hold,
delay, drop before/after approval, the offline store's limit,
approve_online_only_offline. It holds a full test PAN and sends only the
masked one, keeps every answer by ServiceID for TransactionStatus, and
records every booked transaction so tests can prove a card was charged once.
A scripted drop cuts the connection without the answer and then acts as a
terminal that restarted: it answers LoggedOut until the till logs in again,
so the till cannot learn the outcome in the same breath.

Its conventions where the public nexo pages are silent: a card that needs
the card network while the terminal is offline is refused with
ErrorCondition UnreachableHost; a full offline store with UnavailableService
and AdditionalResponse "offline store full"; an unknown ServiceID asked
about with NotFound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..nexo import codec
from ..nexo.cards import mask_pan
from ..nexo.errors import NexoProtocolError
from ..nexo.http import PATH, read_message, response_bytes
from ..nexo.messages import (
    AbortRequest,
    Body,
    DiagnosisRequest,
    DiagnosisResponse,
    LoginRequest,
    LoginResponse,
    Message,
    PaymentRequest,
    PaymentResponse,
    ReconciliationRequest,
    ReconciliationResponse,
    Result,
    ReversalRequest,
    ReversalResponse,
    Totals,
    TransactionStatusRequest,
    TransactionStatusResponse,
)
from ..nexo.messages import message as make_message
from .terminal_script import ONLINE_ONLY, Booked, ScriptError, TerminalBook, follow_control

log = logging.getLogger("drivers.sim.nexo")
MAX_CONTROL_LINE = 65536
REMEMBERED = 1000
BRAND_NAMES = {
    "visa": "02,Visa",
    "mastercard": "01,Mastercard",
    "maestro": "03,Maestro",
    "visa-electron": "04,Visa Electron",
    "vpay": "05,V PAY",
    "amex": "06,American Express",
}


class _Drop(Exception):
    """The script cuts the connection without an answer."""


@dataclass
class SimNexoTerminal(TerminalBook):
    poi_id: str = "SIM00001"
    software_version: str = "tilld-sim nexo 1.0"
    next_id: int = 8778880001
    answers: OrderedDict[tuple[str, str], Message] = field(default_factory=OrderedDict)
    last: Message | None = None
    running: dict[str, asyncio.Event] = field(default_factory=dict)  # ServiceID -> abort
    logged_out: bool = False  # after a scripted drop: the terminal restarted

    def reset(self) -> None:
        super().reset()
        self.answers.clear()
        self.last = None

    # One request --------------------------------------------------------------

    async def handle(self, request: Message) -> Message | None:
        """The answer to `request`, None for 204 No Content; _Drop to cut the connection."""
        header = request.header
        body = request.body
        self.commands[type(body).__name__] += 1

        def answer(reply: Body) -> Message:
            return make_message(reply, header.service_id, header.sale_id, self.poi_id)

        if header.poi_id and header.poi_id != self.poi_id:
            return answer(_failure_for(body, "NotAllowed", f"this is POIID {self.poi_id}"))
        if self.logged_out and not isinstance(body, LoginRequest | AbortRequest):
            return answer(_failure_for(body, "LoggedOut", "log in first"))
        match body:
            case LoginRequest():
                self.logged_out = False
                return answer(LoginResponse(Result(), "SIM-0001", self.software_version, "OK"))
            case DiagnosisRequest():
                return answer(DiagnosisResponse(Result(), "OK"))
            case AbortRequest():
                event = self.running.get(body.service_id)
                if event is not None:
                    event.set()
                return None
            case TransactionStatusRequest():
                return answer(self._status(body))
            case PaymentRequest():
                if self.running:
                    return answer(PaymentResponse(Result("Failure", "Busy")))
                abort = self.running[header.service_id] = asyncio.Event()
                try:
                    reply = await self._payment(body, abort)
                except _Drop as drop:
                    self._remember("Payment", answer(drop.args[0]))
                    self.logged_out = True
                    raise
                finally:
                    self.running.pop(header.service_id, None)
                return self._remember("Payment", answer(reply))
            case ReversalRequest():
                return self._remember("Reversal", answer(self._reversal(body)))
            case ReconciliationRequest():
                return answer(self._reconcile(body))
        return answer(_failure_for(body, "MessageFormat", "not supported by the simulator"))

    def _remember(self, category: str, reply: Message) -> Message:
        self.answers[(category, reply.header.service_id)] = reply
        while len(self.answers) > REMEMBERED:
            self.answers.popitem(last=False)
        self.last = reply
        return reply

    def _status(self, body: TransactionStatusRequest) -> TransactionStatusResponse:
        if body.service_id is None:
            if self.running:
                return TransactionStatusResponse(Result("Failure", "Busy"))
            if self.last is None:
                return TransactionStatusResponse(Result("Failure", "NotFound"))
            return TransactionStatusResponse(Result(), self.last)
        if body.service_id in self.running:
            return TransactionStatusResponse(Result("Failure", "Busy"))
        found = self.answers.get((body.category, body.service_id))
        if found is None:
            return TransactionStatusResponse(Result("Failure", "NotFound"))
        return TransactionStatusResponse(Result(), found)

    async def _payment(self, body: PaymentRequest, abort: asyncio.Event) -> PaymentResponse:
        script = self.script
        refund = body.payment_type == "Refund"
        kind = "refund" if refund else "authorisation"

        def failed(condition: str, text: str | None = None) -> PaymentResponse:
            return PaymentResponse(
                Result("Failure", condition, text),
                body.transaction_id,
                body.timestamp,
                payment_type=body.payment_type,
            )

        while script.decision == "hold" and not abort.is_set():
            await _wait(abort, 0.05)
        if not abort.is_set() and script.delay_s:
            await _wait(abort, script.delay_s)
        if abort.is_set() or script.decision == "customer-abort":
            return failed("Aborted", "cancelled")
        online = script.online
        if not online:
            if refund or (script.brand in ONLINE_ONLY and not script.approve_online_only_offline):
                return failed("UnreachableHost", "the card needs the card network")
            if len(self.offline_store) >= script.offline_limit:
                return failed("UnavailableService", "offline store full")
        if script.decision == "decline":
            return failed("Refusal", "declined by the card issuer")
        if script.drop == "before-approval":
            script.drop = None
            raise _Drop(failed("Aborted", "the connection to the till was lost"))
        booked = self._book(kind, body.amount, offline=not online)
        reply = self._approved(body, booked)
        if script.drop == "after-approval":
            script.drop = None
            raise _Drop(reply)
        return reply

    def _approved(self, body: PaymentRequest, booked: Booked) -> PaymentResponse:
        lines = (
            "tilld terminal simulator",
            f"{'REFUND' if booked.kind == 'refund' else 'PURCHASE'}  "
            f"{booked.amount // 100},{booked.amount % 100:02d} SEK",
            f"{BRAND_NAMES.get(booked.brand, booked.brand).partition(',')[2]}",
            "*" * (len(booked.masked_pan) - 4) + booked.masked_pan[-4:],
            f"RRN: {booked.receipt_no}",
            "OFFLINE" if booked.offline else "ONLINE",
        )
        return PaymentResponse(
            Result(),
            body.transaction_id,
            body.timestamp,
            str(booked.receipt_no),
            _now(),
            body.payment_type,
            BRAND_NAMES.get(booked.brand, booked.brand),
            booked.masked_pan,
            "Contactless",
            booked.amount,
            body.currency,
            f"{booked.trace:06d}",
            not booked.offline,
            lines,
            lines,
        )

    def _reversal(self, body: ReversalRequest) -> ReversalResponse:
        original = next(
            (
                b
                for b in self.booked
                if str(b.receipt_no) == body.poi_transaction_id and b.kind == "authorisation"
            ),
            None,
        )
        if original is None:
            return ReversalResponse(Result("Failure", "NotFound", "no such transaction"))
        if original.reversed:
            return ReversalResponse(Result("Failure", "NotAllowed", "reversed already"))
        original.reversed = True
        if original in self.offline_store:
            self.offline_store.remove(original)
        booked = self._book(
            "reversal", original.amount, offline=original.offline, reverses=original.receipt_no
        )
        return ReversalResponse(
            Result(),
            str(booked.receipt_no),
            _now(),
            original.amount,
            ("tilld terminal simulator", "REVERSAL", f"RRN: {booked.receipt_no}"),
        )

    def _reconcile(self, body: ReconciliationRequest) -> ReconciliationResponse:
        kind = body.reconciliation_type
        if not self.script.online:
            return ReconciliationResponse(Result("Failure", "UnreachableHost"), kind)
        if kind == "AcquirerSynchronisation":
            records, self.offline_store = self.offline_store, []
        else:
            self.offline_store.clear()  # closing the period forwards what was stored
            records, self.batch = self.batch, []
        charged = [b for b in records if b.kind == "authorisation" and not b.reversed]
        totals = (Totals(len(charged), sum(b.amount for b in charged)),)
        return ReconciliationResponse(Result(), kind, totals)

    def _book(
        self, kind: str, amount: int, *, offline: bool, reverses: int | None = None
    ) -> Booked:
        number, self.next_id = self.next_id, self.next_id + 1
        booked = Booked(
            kind=kind,
            amount=amount,
            receipt_no=number,
            trace=number % 1000000,
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


def _failure_for(body: Body, condition: str, text: str) -> Body:
    result = Result("Failure", condition, text)
    replies: dict[type, Body] = {
        LoginRequest: LoginResponse(result),
        PaymentRequest: PaymentResponse(result),
        ReversalRequest: ReversalResponse(result),
        TransactionStatusRequest: TransactionStatusResponse(result),
        ReconciliationRequest: ReconciliationResponse(result),
    }
    return replies.get(type(body), DiagnosisResponse(result))


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


class NexoSimulator:
    """The HTTP listener and the line-JSON control port around one SimNexoTerminal."""

    def __init__(self, terminal: SimNexoTerminal) -> None:
        self.terminal = terminal
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()

    async def listen(self, host: str, port: int) -> str:
        return await self._listen(self._on_till, host, port)

    async def listen_control(self, host: str, port: int) -> str:
        return await self._listen(self._on_control, host, port, limit=MAX_CONTROL_LINE)

    async def _listen(self, handler: Any, host: str, port: int, **kwargs: Any) -> str:
        server = await asyncio.start_server(handler, host, port, **kwargs)
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        return f"{sockname[0]}:{sockname[1]}"

    async def _on_till(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            request = await read_message(reader)
            path = request.start.split(" ")[1:2]
            if not request.start.startswith("POST ") or path != [PATH]:
                writer.write(response_bytes(404))
                return
            try:
                message = codec.decode(request.body)
            except NexoProtocolError as exc:
                log.warning("unreadable request: %s", exc)
                writer.write(response_bytes(400, str(exc).encode()))
                return
            try:
                reply = await self.terminal.handle(message)
            except _Drop:
                writer.transport.abort()  # the answer is lost on the way
                return
            writer.write(
                response_bytes(204) if reply is None else response_bytes(200, codec.encode(reply))
            )
            await writer.drain()
        except (NexoProtocolError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(self.control(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def control(self, line: bytes) -> dict[str, Any]:
        try:
            follow_control(self.terminal, json.loads(line))
        except (ScriptError, ValueError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, **self.terminal.state()}

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()


async def serve(listen: tuple[str, int], control: tuple[str, int], poi_id: str) -> None:
    from . import stop_requested

    simulator = NexoSimulator(SimNexoTerminal(poi_id=poi_id))
    try:
        print(f"listening={await simulator.listen(*listen)}", flush=True)
        print(f"control={await simulator.listen_control(*control)}", flush=True)
        await stop_requested()
    finally:
        await simulator.close()


__all__ = ["NexoSimulator", "SimNexoTerminal", "serve"]
