"""The Unix-socket adapter: JSON-RPC 2.0, one JSON value per line.

A client can never take the daemon down: over-long lines are discarded up to
the next newline and answered with an error, undecodable input gets a parse
error, a client that vanishes mid-request is simply forgotten, and a
subscriber that stops reading is dropped before its queue grows unbounded.

Nor can one local user lock the others out (the socket is 0666, so anyone may
connect): a peer with no role is answered -32001 and hung up on before it
holds a slot, one uid holds at most ``api.max_clients_per_uid`` connections,
``api.tech_reserved_clients`` slots are kept for root and the tech group, and
a line that is started but not finished within ``api.line_timeout_s`` is
answered and closed. A client idle between whole requests (an event
subscriber) is never cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..errors import StartupError
from ..events import EVENTS_PER_TURN, EventBus, Subscription
from .jsonrpc import FORBIDDEN, INVALID_REQUEST, PARSE_ERROR, Dispatcher, error
from .operations import SubscribeParams
from .roles import Caller, Role, RoleMap, peer_caller

log = logging.getLogger("tilld.api")

MAX_REQUEST = 1 << 20  # 1 MiB, CONTRACT.md
READ_CHUNK = 64 * 1024
REFUSAL_NOTE_S = 10.0  # refused connections are logged at most this often (an attack is a flood)
# At stop, how long connections get to end once their sockets are closed.
HANG_UP_S = 0.25


@dataclass(frozen=True)
class ClientLimits:
    """Who may hold how many connections ([api] in the configuration)."""

    max_clients: int
    per_uid: int  # callers below the tech role, per uid
    tech_reserved: int  # of max_clients, only for root and the tech group
    line_timeout_s: float


class RequestSlot:
    """A request in flight (``SocketServer.request_slot``); a class, not a generator:
    it is entered once per request, and costs a third as much."""

    __slots__ = ("server",)

    def __init__(self, server: SocketServer) -> None:
        self.server = server

    async def __aenter__(self) -> None:
        server = self.server
        server._in_flight += 1
        server._idle.clear()

    async def __aexit__(self, *_exc: object) -> None:
        server = self.server
        server._in_flight -= 1
        if server._in_flight == 0:
            server._idle.set()


class LineTimedOut(Exception):
    """A request line was started but not finished in time; the stream cannot be trusted."""


class SocketServer:
    def __init__(
        self,
        path: Path,
        dispatcher: Dispatcher,
        events: EventBus,
        roles: RoleMap,
        limits: ClientLimits,
    ) -> None:
        self.path = path
        self.dispatcher = dispatcher
        self.events = events
        self.roles = roles
        self.limits = limits
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._below_tech = 0  # connections of callers without the tech role
        self._per_uid: Counter[int] = Counter()  # the same, by uid
        self._refused = 0  # since the last log line about refusals
        self._refusal_noted = -REFUSAL_NOTE_S
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        self._claim_path()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        # Anyone may connect; the peer-credential check decides who may do what.
        os.chmod(self.path, 0o666)
        log.info("listening on %s", self.path)

    def _claim_path(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(
                f"cannot create the socket directory {self.path.parent}: {exc}"
            ) from exc
        if not self.path.exists():
            return
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink()  # stale: left by a daemon that was killed
        else:
            raise StartupError(
                f"another tilld is already serving {self.path}; stop it first "
                "(systemctl stop tilld) or set api.socket_path to another path."
            )
        finally:
            probe.close()

    def request_slot(self) -> RequestSlot:
        """Held while a request is answered: stop() waits until none is."""
        return RequestSlot(self)

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop listening, let requests in flight get their answers, then hang up."""
        if self._server is not None:
            self._server.close()
        try:
            async with asyncio.timeout(drain_timeout):
                await self._idle.wait()
        except TimeoutError:
            log.warning(
                "%d request(s) still running after %.0f s; closing", self._in_flight, drain_timeout
            )
        # Hang up: a connection between requests ends by itself once its socket
        # is closed. Only the ones still busy are cancelled (Python 3.11's
        # streams log a spurious error for every cancelled connection).
        for writer in self._connections.values():
            writer.close()
        if self._connections:
            _, busy = await asyncio.wait(set(self._connections), timeout=HANG_UP_S)
            for task in busy:
                task.cancel()
            if busy:
                await asyncio.wait(busy, timeout=HANG_UP_S)
        if self._server is not None:
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            caller = peer_caller(writer.get_extra_info("socket"))
        except OSError:
            writer.close()  # gone before we could ask the kernel who it was
            return
        role = self.roles.role_of(caller)
        # Decided and counted before the first await, so connections are
        # admitted in the order the kernel queued them.
        refusal = self._admission(caller, role)
        if refusal is not None:
            self._refuse(writer, refusal)
            return
        self._connections[task] = writer
        self._count(caller, role, 1)
        try:
            await Connection(self, reader, writer, caller, role).run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("connection handler failed; the client was disconnected")
        finally:
            self._connections.pop(task, None)
            self._count(caller, role, -1)
            writer.close()

    def _count(self, caller: Caller, role: Role, change: int) -> None:
        if role >= Role.TECH:
            return
        self._below_tech += change
        self._per_uid[caller.uid] += change
        if self._per_uid[caller.uid] <= 0:
            del self._per_uid[caller.uid]

    def _admission(self, caller: Caller, role: Role) -> dict[str, Any] | None:
        """None to admit the caller, else the one reply it gets before the hang-up."""
        limits = self.limits
        if role == Role.NONE:
            message = (
                f"{caller.describe()} has no role on this till: only root and members of "
                f"the groups {self.roles.tech_group} and {self.roles.cashier_group} "
                "(api.tech_group, api.cashier_group) may connect. Ask a technician to add "
                "this user to one of them, then connect again."
            )
            return error(None, FORBIDDEN, "forbidden", {"message": message})
        if len(self._connections) >= limits.max_clients:
            return error(
                None,
                INVALID_REQUEST,
                f"too many clients: all {limits.max_clients} connections are taken "
                "(api.max_clients); close idle clients or try again shortly",
            )
        if role >= Role.TECH:
            return None
        open_to_others = limits.max_clients - limits.tech_reserved
        if self._below_tech >= open_to_others:
            return error(
                None,
                INVALID_REQUEST,
                f"too many clients: the {open_to_others} connections open to cashiers are all "
                f"taken; the other {limits.tech_reserved} are kept for root and "
                f"{self.roles.tech_group} (api.max_clients, api.tech_reserved_clients). "
                "Close idle clients or try again shortly",
            )
        if self._per_uid[caller.uid] >= limits.per_uid:
            return error(
                None,
                INVALID_REQUEST,
                f"too many connections from uid {caller.uid}: it has {limits.per_uid} open, "
                "the most one user may hold (api.max_clients_per_uid). Close the ones it "
                "does not need (an idle UI, a forgotten tillctl watch) and try again",
            )
        return None

    def _refuse(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        # No await: a refused peer costs one small write (it fits the fresh
        # socket's buffer) and a close, however it behaves afterwards.
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_noted >= REFUSAL_NOTE_S:
            log.warning(
                "refused %d connection(s) since the last note; the latest: %s",
                self._refused,
                reply["error"].get("data", {}).get("message") or reply["error"]["message"],
            )
            self._refused = 0
            self._refusal_noted = now
        with contextlib.suppress(ConnectionError):
            writer.write(encode_line(reply))
        writer.close()


class Connection:
    def __init__(
        self,
        server: SocketServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        caller: Caller,
        role: Role,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.caller = caller
        self.role = role
        self._write_lock = asyncio.Lock()
        self._subscription: Subscription | None = None
        self._pump: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            async for line in self._lines():
                await self._answer(line)
        except LineTimedOut:
            await self._last_word(self._line_timeout_error())
        finally:
            if self._pump is not None:
                self._pump.cancel()
            if self._subscription is not None:
                self.server.events.unsubscribe(self._subscription)

    async def _lines(self):
        """Yield complete lines; an over-long line becomes None (already discarded).

        Raises LineTimedOut when a line's first byte came api.line_timeout_s
        ago and its newline has not. Waiting between lines is not timed, and
        the clock restarts after each answer, so time spent answering is not
        held against the client.
        """
        loop = asyncio.get_running_loop()
        timeout = self.server.limits.line_timeout_s
        buffer = bytearray()
        discarding = False
        deadline: float | None = None
        while True:
            if buffer or discarding:
                if deadline is None:
                    deadline = loop.time() + timeout
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await self.reader.read(READ_CHUNK)
                except TimeoutError:
                    raise LineTimedOut from None
            else:
                deadline = None
                chunk = await self.reader.read(READ_CHUNK)
            if not chunk:
                return  # a half-written last line from a vanished client is dropped
            buffer += chunk
            while True:
                end = buffer.find(b"\n")
                if end < 0:
                    if len(buffer) > MAX_REQUEST:
                        discarding = True
                        buffer.clear()
                    break
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                if discarding or len(line) > MAX_REQUEST:
                    discarding = False
                    yield None
                else:
                    yield line
                deadline = None

    def _line_timeout_error(self) -> dict[str, Any]:
        timeout = self.server.limits.line_timeout_s
        return error(
            None,
            INVALID_REQUEST,
            f"request line not finished within {timeout:g} s (api.line_timeout_s); "
            "send each request as one line ending in \\n. Closing this connection: "
            "connect again",
        )

    async def _last_word(self, message: dict[str, Any]) -> None:
        """Answer once more before the hang-up, but never wait long on a peer that does not read."""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(self.server.limits.line_timeout_s):
                await self._send(message)

    async def _answer(self, line: bytes | None) -> None:
        if line is None:
            await self._send(error(None, INVALID_REQUEST, "request larger than 1 MiB; not read"))
            return
        if not line.strip():
            return
        try:
            message = decode_line(line)
        except RecursionError:
            # The decoder recurses once per level; 100,000 '[' would otherwise
            # escape as a RecursionError and cost the client its connection.
            await self._send(
                error(
                    None,
                    PARSE_ERROR,
                    "JSON nested too deeply to read (about 1,000 levels or more); "
                    "tilld's requests nest a few levels at most",
                )
            )
            return
        except (UnicodeDecodeError, ValueError) as exc:
            await self._send(error(None, PARSE_ERROR, f"not valid JSON: {exc}"))
            return
        async with self.server.request_slot():
            reply = await self.server.dispatcher.handle(
                message, self.caller, self.role, self._subscribe
            )
            if reply is not None:
                await self._send(reply)

    def _subscribe(self, params: SubscribeParams) -> dict[str, Any]:
        # A new subscription replaces the old one, queue and pump together.
        if self._pump is not None:
            self._pump.cancel()
        if self._subscription is not None:
            self.server.events.unsubscribe(self._subscription)
        self._subscription = self.server.events.subscribe(params.topics)
        self._pump = asyncio.create_task(self._pump_events(self._subscription))
        return {"topics": sorted(self._subscription.topics)}

    async def _pump_events(self, subscription: Subscription) -> None:
        # An overflowed queue is full, so get() never waits once it happens.
        sent = 0
        while not subscription.overflowed:
            event = await subscription.queue.get()
            await self._send({"jsonrpc": "2.0", "method": "event", "params": event})
            sent += 1
            # Neither get() nor the write waits while events are queued and
            # the client reads: a burst would hold the loop to the end.
            if sent % EVENTS_PER_TURN == 0:
                await asyncio.sleep(0)
        notice = {
            "topic": "overflow",
            "message": "events dropped: read faster and call events.subscribe again",
        }
        await self._send({"jsonrpc": "2.0", "method": "event", "params": notice})
        self.writer.close()

    async def _send(self, message: Any) -> None:
        async with self._write_lock:
            self.writer.write(encode_line(message))
            await self.writer.drain()


_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def decode_line(line: bytes) -> Any:
    """One request line as a JSON value; raises as ``json.loads`` does.

    orjson reads a request in a fifth of the time. It is stricter (lone
    surrogate escapes, integers past 64 bits, NaN, nesting past 1,024 levels,
    other encodings than UTF-8): a line it refuses is read again by ``json``,
    so what is accepted, and the error for what is not, stay the standard
    library's. So is a line with a number of 19 digits or more: orjson reads
    an integer past 64 bits as a float, where json keeps it an integer.
    """
    if _LONG_NUMBER.search(line) is None:
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass
    return json.loads(line)


def encode_line(message: Any) -> bytes:
    """One message as one line of UTF-8 JSON, as the framing wants it."""
    try:
        # The same bytes as json.dumps(ensure_ascii=False, compact), ten times
        # sooner; what orjson will not write (a lone surrogate, a key that is
        # not a string, an integer past 64 bits) goes the standard way.
        return orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        pass
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (from a \ud800 escape) has no UTF-8 form; JSON's own
        # escapes carry it (RFC 8259, section 8.2), so the answer still goes out.
        return json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode() + b"\n"
