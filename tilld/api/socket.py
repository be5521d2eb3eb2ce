"""The Unix-socket adapter: JSON-RPC 2.0, one JSON value per line.

A client can never take the daemon down: over-long lines are discarded up to
the next newline and answered with an error, undecodable input gets a parse
error, a client that vanishes mid-request is simply forgotten, and a
subscriber that stops reading is dropped before its queue grows unbounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from ..errors import StartupError
from ..events import EventBus, Subscription
from .jsonrpc import INVALID_REQUEST, PARSE_ERROR, Dispatcher, error
from .operations import SubscribeParams
from .roles import Caller, Role, RoleMap, peer_caller

log = logging.getLogger("tilld.api")

MAX_REQUEST = 1 << 20  # 1 MiB, CONTRACT.md
READ_CHUNK = 64 * 1024
# At stop, how long connections get to end once their sockets are closed.
HANG_UP_S = 0.25


class SocketServer:
    def __init__(
        self, path: Path, dispatcher: Dispatcher, events: EventBus, roles: RoleMap, max_clients: int
    ) -> None:
        self.path = path
        self.dispatcher = dispatcher
        self.events = events
        self.roles = roles
        self.max_clients = max_clients
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
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

    @contextlib.asynccontextmanager
    async def request_slot(self):
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

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
        if len(self._connections) >= self.max_clients:
            writer.write(_encode(error(None, INVALID_REQUEST, "too many clients; try again")))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        self._connections[task] = writer
        try:
            await Connection(self, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("connection handler failed; the client was disconnected")
        finally:
            self._connections.pop(task, None)
            writer.close()


class Connection:
    def __init__(
        self, server: SocketServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.caller: Caller = peer_caller(writer.get_extra_info("socket"))
        self.role: Role = server.roles.role_of(self.caller)
        self._write_lock = asyncio.Lock()
        self._subscription: Subscription | None = None
        self._pump: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            async for line in self._lines():
                await self._answer(line)
        finally:
            if self._pump is not None:
                self._pump.cancel()
            if self._subscription is not None:
                self.server.events.unsubscribe(self._subscription)

    async def _lines(self):
        """Yield complete lines; an over-long line becomes None (already discarded)."""
        buffer = bytearray()
        discarding = False
        while True:
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

    async def _answer(self, line: bytes | None) -> None:
        if line is None:
            await self._send(error(None, INVALID_REQUEST, "request larger than 1 MiB; not read"))
            return
        if not line.strip():
            return
        try:
            message = json.loads(line)
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
        while not subscription.overflowed:
            event = await subscription.queue.get()
            await self._send({"jsonrpc": "2.0", "method": "event", "params": event})
        notice = {
            "topic": "overflow",
            "message": "events dropped: read faster and call events.subscribe again",
        }
        await self._send({"jsonrpc": "2.0", "method": "event", "params": notice})
        self.writer.close()

    async def _send(self, message: Any) -> None:
        async with self._write_lock:
            self.writer.write(_encode(message))
            await self.writer.drain()


def _encode(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
