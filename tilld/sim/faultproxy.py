"""A fault-injecting TCP proxy: the outages the till must survive, switchable at run time.

Tests and the demo put it between the till and its back-end, and in front of a
stand-in for the internet probe target, then switch its mode while the till runs:

    python -m tilld.sim.faultproxy --listen 127.0.0.1:0 --target 127.0.0.1:8080 \\
        --control 127.0.0.1:0 [--mode pass]

It prints ``listening=HOST:PORT`` and ``control=HOST:PORT`` on stdout once both
accept connections (port 0 picks a free port; the real one is printed) and
stops on SIGTERM or SIGINT. Without ``--target`` it is a switch for
connect-only probes: in ``pass`` it accepts each connection and closes it at once.

Modes (``FaultProxy.set_mode(name, **options)`` or ``POST /mode``)
    pass       Forward bytes both ways.
    refuse     Nothing listens: connects get ECONNREFUSED and open connections
               are reset. The port stays bound (not listening) meanwhile, so
               nothing else takes it and leaving refuse listens on it again.
    blackhole  Accept connections but move nothing either way, not even a
               close; open connections stall as well. What was held moves on
               once the mode leaves blackhole, as on a network path that heals
               under TCP's retransmissions.
    halfdead   A half-dead server: connections open when the mode began go on
               forwarding both ways, but new ones are accepted and then held
               like blackhole's, never reaching the target. A client with a
               pool of keep-alive connections sees some requests answered and
               others hang. What was held moves on once the mode leaves
               halfdead; a connection accepted under halfdead counts as open
               (it passes) if halfdead is left and entered again.
    reset      Forward the request, then reset the connection (SO_LINGER 0,
               so RST) once ``after_bytes`` (default 10) bytes of the response
               have reached the client. A response no longer than that passes.
    slow       Forward, holding every chunk either way for ``delay_s`` (1.0).
    http500    Answer each request with ``500 Internal Server Error``, a JSON
    http401    body and ``Connection: close`` (401 adds ``WWW-Authenticate``),
               without contacting the target.

Which connections a change reaches
    Every connection looks at the current mode for each chunk it moves, so a
    change reaches open keep-alive connections too, not only new ones: refuse
    resets them at once, blackhole stalls them, slow delays their next chunk,
    http500/http401 answer their next request, reset cuts the response to
    their next request. Only halfdead leaves them be, which is its point: it
    holds the connections accepted after it began, and those alone. The
    proxy does not parse HTTP while forwarding, so "next request" means the
    next bytes the client sends; with pipelined requests an error answer can
    follow a half-sent response.

Control API (HTTP/1.1 on its own port, JSON, ``Connection: close``)
    GET  /mode   200 ``{"mode": "slow", "delay_s": 1.0}`` (the mode's options included)
    POST /mode   body ``{"mode": "reset", "after_bytes": 5}``; 200 with the new
                 mode as GET /mode shows it; 400 ``{"error": "invalid-mode", ...}``
                 for an unknown mode or option; 503 ``cannot-listen`` if the port
                 cannot be listened on again after refuse (the mode stays refuse)
    GET  /stats  the mode, open connections and, per mode, connections
                 accepted and bytes moved to the target and to the client
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import struct
import sys
from dataclasses import asdict, dataclass, fields
from typing import Any

from aiohttp import web

from drivers.sim.control import serve_control

from ..logs import setup_logging
from . import stop_requested

log = logging.getLogger("tilld.sim.faultproxy")


HTTP_ERRORS = {
    "http500": (500, "Internal Server Error", "internal-error"),
    "http401": (401, "Unauthorized", "unauthorized"),
}
MODES = ("pass", "refuse", "blackhole", "halfdead", "reset", "slow", *HTTP_ERRORS)
MODE_OPTIONS = {"slow": ("delay_s",), "reset": ("after_bytes",)}
DEFAULT_DELAY_S = 1.0
DEFAULT_AFTER_BYTES = 10

CHUNK = 65536
BACKLOG = 128
ACCEPTS_PER_WAKEUP = 64  # let forwarding run between bursts of connects
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0  # for a request the proxy answers itself
MAX_REQUEST_HEAD = 65536
MAX_CONTROL_BODY = 65536
RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class InvalidMode(ValueError):
    """A mode or option the proxy does not know; the control API answers 400."""


@dataclass(frozen=True)
class Mode:
    """A mode and its options; only ``slow`` and ``reset`` take any."""

    name: str
    delay_s: float = DEFAULT_DELAY_S
    after_bytes: int = DEFAULT_AFTER_BYTES

    @classmethod
    def parse(cls, name: object, **options: object) -> Mode:
        if not isinstance(name, str) or name not in MODES:
            raise InvalidMode(f"unknown mode {name!r}; the modes are {', '.join(MODES)}")
        unknown = sorted(set(options) - set(MODE_OPTIONS.get(name, ())))
        if unknown:
            allowed = ", ".join(MODE_OPTIONS.get(name, ())) or "no options"
            raise InvalidMode(
                f"mode {name} does not take {', '.join(unknown)} (it takes {allowed})"
            )
        delay_s = options.get("delay_s", DEFAULT_DELAY_S)
        if (
            isinstance(delay_s, bool)
            or not isinstance(delay_s, int | float)
            or not math.isfinite(delay_s)
            or delay_s < 0
        ):
            raise InvalidMode(f"delay_s must be a number of seconds, 0 or more, not {delay_s!r}")
        after_bytes = options.get("after_bytes", DEFAULT_AFTER_BYTES)
        if isinstance(after_bytes, bool) or not isinstance(after_bytes, int) or after_bytes < 0:
            raise InvalidMode(f"after_bytes must be a whole number, 0 or more, not {after_bytes!r}")
        return cls(name, float(delay_s), after_bytes)

    def describe(self) -> dict[str, Any]:
        """The mode as ``POST /mode`` takes it, so an answer can be posted back."""
        described: dict[str, Any] = {"mode": self.name}
        for option in MODE_OPTIONS.get(self.name, ()):
            described[option] = getattr(self, option)
        return described


@dataclass
class Traffic:
    connections: int = 0  # accepted while the mode was in force
    to_target: int = 0  # bytes forwarded to the target
    to_client: int = 0  # bytes sent to clients, forwarded or answered by the proxy


class Link:
    """One client connection and, once made, its connection to the target."""

    def __init__(self, sock: socket.socket, peer: Any) -> None:
        self.sock = sock
        self.peer = peer
        self.client_reader: asyncio.StreamReader | None = None
        self.client_writer: asyncio.StreamWriter | None = None
        self.target_reader: asyncio.StreamReader | None = None
        self.target_writer: asyncio.StreamWriter | None = None
        self.response_bytes = 0  # sent to the client since it last sent anything
        self.opening = False  # the client transport is being made around sock
        self.new_in_halfdead = False  # accepted under halfdead: held while it lasts
        self.task: asyncio.Task[None] | None = None
        self.pumps: list[asyncio.Task[None]] = []

    def end(self, *, reset: bool) -> None:
        """Close both sides, with RST if ``reset``, and stop the link's other tasks.

        The client socket is closed here and now, not on the transport's next
        loop turn, so whoever switched to refuse knows the connection is gone.
        """
        if reset:
            for sock in (self.sock, _socket_of(self.target_writer)):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        for writer in (self.client_writer, self.target_writer):
            if writer is not None:
                if reset:
                    writer.transport.abort()
                else:
                    writer.close()
        if self.client_writer is None:
            # While the transport is being made, cancelling the task closes it.
            if not self.opening:
                self.sock.close()
        elif reset:
            # abort() has stopped the loop watching the socket; the transport's
            # own close() later is a no-op on the closed socket.
            self.sock.close()
        self.cancel_tasks(pumps_only=False)

    def cancel_tasks(self, *, pumps_only: bool) -> None:
        """Cancel the link's tasks but the calling one (the handler too unless pumps_only)."""
        current = asyncio.current_task()
        for task in self.pumps if pumps_only else (self.task, *self.pumps):
            if task is not None and task is not current:
                task.cancel()


def _socket_of(writer: asyncio.StreamWriter | None) -> Any:
    return None if writer is None else writer.get_extra_info("socket")


class FaultProxy:
    """A TCP listener that forwards to a target, or fails the way ``mode`` says.

    With no target it accepts each connection and closes it (``pass``), which
    is all a connect-only probe looks at. Everything runs on one event loop;
    ``set_mode`` must be called from it once the proxy has started.
    """

    def __init__(
        self,
        listen_host: str,
        listen_port: int,
        target_host: str | None = None,
        target_port: int | None = None,
    ) -> None:
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.target = None if target_host is None else (target_host, target_port)
        self.host = listen_host
        self.port = listen_port
        self.mode = Mode("pass")
        self.traffic = {name: Traffic() for name in MODES}
        self._mode_changed = asyncio.Event()
        self._bind_to: tuple[int, tuple[Any, ...]] | None = None  # family, resolved address
        self._sock: socket.socket | None = None  # listening, or only bound while refusing
        self._listening = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._links: set[Link] = set()

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._mode_changed = asyncio.Event()
        # Resolved once, here, so that re-binding in set_mode never blocks the loop on DNS.
        family, _, _, _, address = (
            await self._loop.getaddrinfo(
                self.listen_host, self.listen_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        )[0]
        self._bind_to = (family, address)
        self._sock = self._bind()
        self.host, self.port = self._sock.getsockname()[:2]
        if self.mode.name != "refuse":
            self._listen()
        target = "nothing (accept and close)" if self.target is None else _address(*self.target)
        log.info(
            "proxy on %s to %s, mode %s",
            _address(self.host, self.port),
            target,
            _describe(self.mode),
        )

    async def stop(self) -> None:
        self._stop_listening(hold_port=False)
        links = list(self._links)
        for link in links:
            link.end(reset=False)
        tasks = [link.task for link in links if link.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._loop = None

    def set_mode(self, mode: str, /, **options: Any) -> Mode:
        """Switch to ``mode``; new and open connections follow (see the module doc).

        Raises InvalidMode for an unknown mode or option, and OSError if the
        port cannot be listened on again after refuse (the mode then stays).
        """
        new = Mode.parse(mode, **options)
        old = self.mode
        if self._loop is not None:
            if new.name == "refuse" and old.name != "refuse":
                self._stop_listening(hold_port=True)
                for link in list(self._links):
                    link.end(reset=True)
            elif new.name != "refuse" and old.name == "refuse":
                self._listen()
        if new.name != "halfdead":
            for link in self._links:
                link.new_in_halfdead = False  # from now on an open connection like any
        self.mode = new
        changed, self._mode_changed = self._mode_changed, asyncio.Event()
        changed.set()
        if self._loop is not None:
            log.info("mode %s -> %s", _describe(old), _describe(new))
        return new

    def stats(self) -> dict[str, Any]:
        total = {
            f.name: sum(getattr(t, f.name) for t in self.traffic.values()) for f in fields(Traffic)
        }
        return {
            **self.mode.describe(),
            "open_connections": len(self._links),
            "total": total,
            "by_mode": {name: asdict(traffic) for name, traffic in self.traffic.items()},
        }

    # -- the listening socket --------------------------------------------------

    def _bind(self) -> socket.socket:
        """A socket bound to the listen address and, once known, the port first chosen."""
        assert self._bind_to is not None
        family, address = self._bind_to
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address[0], self.port, *address[2:]))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _listen(self) -> None:
        assert self._loop is not None
        if self._sock is None:  # the port could not be held while refusing
            self._sock = self._bind()
        self._sock.listen(BACKLOG)
        self._loop.add_reader(self._sock, self._accept_ready)
        self._listening = True

    def _stop_listening(self, *, hold_port: bool) -> None:
        """Close the listening socket: connects, queued ones too, are refused from now on."""
        if self._sock is None:
            return
        if self._listening and self._loop is not None:
            self._loop.remove_reader(self._sock)
        self._sock.close()
        self._sock = None
        self._listening = False
        if hold_port:
            # A bound socket that does not listen still refuses connects, and
            # keeps the port from being handed out to anyone else meanwhile.
            try:
                self._sock = self._bind()
            except OSError as exc:
                log.warning("cannot hold port %d while refusing: %s", self.port, exc)

    def _accept_ready(self) -> None:
        assert self._loop is not None and self._sock is not None
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("cannot accept a connection: %s", exc)
                return
            sock.setblocking(False)
            self.traffic[self.mode.name].connections += 1
            link = Link(sock, peer)
            link.new_in_halfdead = self.mode.name == "halfdead"
            self._links.add(link)
            link.task = self._loop.create_task(self._serve(link))

    # -- one connection --------------------------------------------------------

    async def _serve(self, link: Link) -> None:
        try:
            link.opening = True
            link.client_reader, link.client_writer = await asyncio.open_connection(sock=link.sock)
            mode = await self._moving(link)
            if mode.name in HTTP_ERRORS:
                await self._answer(link, mode, b"")
            elif mode.name == "refuse":  # switched while this one was being set up
                link.end(reset=True)
            elif self.target is None:
                if mode.name == "slow":
                    await self._changes_within(self._mode_changed, mode.delay_s)
                link.end(reset=mode.name == "reset")
            elif await self._connect_target(link):
                link.pumps = [
                    asyncio.create_task(self._pump(link, upstream=True)),
                    asyncio.create_task(self._pump(link, upstream=False)),
                ]
                await asyncio.wait(link.pumps)
        except OSError as exc:
            log.debug("connection from %s: %s", link.peer, exc)
        except Exception:
            log.exception("connection from %s failed", link.peer)
        finally:
            link.end(reset=False)
            self._links.discard(link)

    async def _connect_target(self, link: Link) -> bool:
        assert self.target is not None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                link.target_reader, link.target_writer = await asyncio.open_connection(*self.target)
        except (OSError, TimeoutError) as exc:
            log.debug(
                "cannot reach the target %s: %s", _address(*self.target), str(exc) or "timeout"
            )
            # The client sees the target's failure as a reset, as through a real proxy.
            link.end(reset=True)
            return False
        return True

    async def _pump(self, link: Link, *, upstream: bool) -> None:
        reader = link.client_reader if upstream else link.target_reader
        writer = link.target_writer if upstream else link.client_writer
        assert reader is not None and writer is not None
        try:
            while data := await reader.read(CHUNK):
                if not await self._deliver(link, data, upstream=upstream):
                    return
            # Pass the half-close on: a client may end its request with EOF.
            await self._moving(link)
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
        except OSError as exc:
            log.debug("connection from %s, %s: %s", link.peer, _side(upstream), exc)
            await self._moving(link)
            link.end(reset=True)
        except Exception:
            log.exception("connection from %s, %s failed", link.peer, _side(upstream))
            link.end(reset=True)

    async def _deliver(self, link: Link, data: bytes, *, upstream: bool) -> bool:
        """Move one chunk as the mode says; False once the link is finished."""
        while True:
            mode = self.mode
            if self._holds(link):
                await self._mode_changed.wait()
                continue
            if mode.name == "slow" and await self._changes_within(self._mode_changed, mode.delay_s):
                continue  # decide again under the new mode
            if mode.name == "refuse":
                link.end(reset=True)
                return False
            if mode.name in HTTP_ERRORS and upstream:
                await self._answer(link, mode, data)
                return False
            if mode.name == "reset" and not upstream:
                room = mode.after_bytes - link.response_bytes
                if len(data) > room:
                    if room > 0:
                        await self._send(link, data[:room], upstream=False, mode=mode)
                    log.debug("reset %s after %d response bytes", link.peer, mode.after_bytes)
                    link.end(reset=True)
                    return False
            await self._send(link, data, upstream=upstream, mode=mode)
            return True

    async def _send(self, link: Link, data: bytes, *, upstream: bool, mode: Mode) -> None:
        writer = link.target_writer if upstream else link.client_writer
        assert writer is not None
        # Counted before writing, so a client that has seen the bytes sees them counted.
        traffic = self.traffic[mode.name]
        if upstream:
            traffic.to_target += len(data)
            link.response_bytes = 0
        else:
            traffic.to_client += len(data)
            link.response_bytes += len(data)
        writer.write(data)
        await writer.drain()

    async def _answer(self, link: Link, mode: Mode, received: bytes) -> None:
        """Answer the client's request with the mode's HTTP error and close the link."""
        assert link.client_reader is not None and link.client_writer is not None
        # Stop the response pump first, lest the target's close reach the client
        # before the answer; the handler waits for this pump and then cleans up.
        link.cancel_tasks(pumps_only=True)
        if link.target_writer is not None:
            link.target_writer.close()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                # Read the whole request: closing with unread bytes would send RST, not FIN.
                await read_request(link.client_reader, received)
        except TimeoutError:
            log.debug("no complete request from %s; answering anyway", link.peer)
        response = fault_response(mode.name)
        self.traffic[mode.name].to_client += len(response)
        link.client_writer.write(response)
        await link.client_writer.drain()
        link.end(reset=False)

    def _holds(self, link: Link) -> bool:
        """Whether the mode lets nothing move on this connection (blackhole, halfdead's new)."""
        name = self.mode.name
        return name == "blackhole" or (name == "halfdead" and link.new_in_halfdead)

    async def _moving(self, link: Link) -> Mode:
        """The mode, once it lets this connection move."""
        while self._holds(link):
            await self._mode_changed.wait()
        return self.mode

    @staticmethod
    async def _changes_within(changed: asyncio.Event, delay_s: float) -> bool:
        try:
            await asyncio.wait_for(changed.wait(), delay_s)
        except TimeoutError:
            return False
        return True


# -- HTTP, as little as the fault answers need ------------------------------


def http_response(status: int, reason: str, body: Any, headers: tuple[str, ...] = ()) -> bytes:
    content = json.dumps(body, ensure_ascii=False).encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(content)}",
        "Connection: close",
        *headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + content


def fault_response(mode: str) -> bytes:
    """The whole answer of an ``http500`` or ``http401`` proxy to any request."""
    status, reason, error = HTTP_ERRORS[mode]
    # RFC 9110 section 11.6.1: a 401 carries at least one challenge.
    headers = ('WWW-Authenticate: Bearer realm="tilld"',) if status == 401 else ()
    body = {"error": error, "message": f"HTTP {status} injected by the fault proxy ({mode})"}
    return http_response(status, reason, body, headers)


def request_body_length(head: bytes) -> int | None:
    """Content-Length of a request head; None for a chunked body; 0 if neither."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return None
        if name == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    return length


async def read_request(reader: asyncio.StreamReader, received: bytes = b"") -> bytes:
    """Read one HTTP/1.1 request (``received`` is what was read already); returns its head."""
    buffer = received
    while b"\r\n\r\n" not in buffer and len(buffer) <= MAX_REQUEST_HEAD:
        chunk = await reader.read(CHUNK)
        if not chunk:
            return buffer
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    if b"100-continue" in head.lower():
        return head  # the client sends no body until told to (RFC 9110 section 10.1.1)
    length = request_body_length(head)
    if length is None:  # chunked: read on to the last chunk
        while not (body.startswith(b"0\r\n\r\n") or b"\r\n0\r\n\r\n" in body[-CHUNK:]):
            chunk = await reader.read(CHUNK)
            if not chunk:
                break
            body += chunk
        return head
    remaining = length - len(body)
    while remaining > 0:
        chunk = await reader.read(min(CHUNK, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
    return head


class ControlApi:
    """The proxy's control API (see the module doc); it translates, the proxy decides.

    Served by drivers.sim.control like the device simulators' control ports;
    every answer is JSON with ``Connection: close``, errors as
    ``{"error": code, "message": ...}``.
    """

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_CONTROL_BODY, middlewares=[control_errors])
        app.router.add_get("/mode", self.get_mode, allow_head=False)
        app.router.add_post("/mode", self.post_mode)
        app.router.add_get("/stats", self.get_stats, allow_head=False)
        return app

    async def get_mode(self, _request: web.Request) -> web.Response:
        return control_answer(200, self.proxy.mode.describe())

    async def get_stats(self, _request: web.Request) -> web.Response:
        return control_answer(200, self.proxy.stats())

    async def post_mode(self, request: web.Request) -> web.Response:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            length = request.headers.get("Content-Length", "")
            return control_error(
                400,
                "bad-request",
                f"not an HTTP request: bad or too large Content-Length {length!r}",
            )
        try:
            document = json.loads(raw)
        except ValueError:
            return control_error(400, "bad-request", "the body is not JSON")
        if not isinstance(document, dict) or "mode" not in document:
            return control_error(400, "bad-request", 'expected a JSON object like {"mode": "pass"}')
        name = document.pop("mode")
        try:
            mode = self.proxy.set_mode(name, **document)
        except InvalidMode as exc:
            return control_error(400, "invalid-mode", str(exc))
        except OSError as exc:
            log.error("cannot listen on port %d again: %s", self.proxy.port, exc)
            return control_error(
                503, "cannot-listen", f"cannot listen on port {self.proxy.port}: {exc}"
            )
        return control_answer(200, mode.describe())


@web.middleware
async def control_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown paths and methods answered in the control API's JSON, not aiohttp's text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return control_error(404, "not-found", f"no {request.path}; try /mode or /stats")
    except web.HTTPMethodNotAllowed:
        return control_error(405, "method-not-allowed", f"{request.method} {request.path}")


def control_answer(status: int, body: Any) -> web.Response:
    response = web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/json",
    )
    response.force_close()  # Connection: close, as the fault answers
    return response


def control_error(status: int, code: str, message: str) -> web.Response:
    return control_answer(status, {"error": code, "message": message})


# -- command line ------------------------------------------------------------


def _address(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(mode: Mode) -> str:
    options = ", ".join(f"{k}={v}" for k, v in mode.describe().items() if k != "mode")
    return f"{mode.name} ({options})" if options else mode.name


def _side(upstream: bool) -> str:
    return "client side" if upstream else "target side"


def parse_address(value: str) -> tuple[str, int]:
    """HOST:PORT (``[::1]:PORT`` for IPv6) for argparse."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdecimal() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


async def serve(
    listen: tuple[str, int],
    target: tuple[str, int] | None,
    control: tuple[str, int],
    mode: str,
    options: dict[str, Any],
) -> None:
    """Start-up reads like a list; shutdown is the same list in reverse (STYLE 16)."""
    proxy = FaultProxy(*listen, *(target or (None, None)))
    proxy.set_mode(mode, **options)
    await proxy.start()
    try:
        control_runner, control_bound = await serve_control(ControlApi(proxy).app(), *control)
        try:
            print(f"listening={_address(proxy.host, proxy.port)}", flush=True)
            print(f"control={_address(*control_bound)}", flush=True)
            await stop_requested()
            log.info("stopping")
        finally:
            await control_runner.cleanup()
    finally:
        await proxy.stop()


def add_proxy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", type=parse_address, default="127.0.0.1:0", help="HOST:PORT (port 0: any free)"
    )
    parser.add_argument(
        "--target",
        type=parse_address,
        help="HOST:PORT to forward to; without it, connections are accepted and closed",
    )
    parser.add_argument(
        "--control",
        type=parse_address,
        default="127.0.0.1:0",
        help="HOST:PORT of the control API (port 0: any free)",
    )
    parser.add_argument("--mode", choices=MODES, default="pass", help="the mode at start")
    parser.add_argument(
        "--delay-s", type=float, default=DEFAULT_DELAY_S, help="slow: seconds each chunk waits"
    )
    parser.add_argument(
        "--after-bytes",
        type=int,
        default=DEFAULT_AFTER_BYTES,
        help="reset: response bytes let through before the RST",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def add_proxy_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``proxy`` to an argparse subparsers object (e.g. ``tilld sim proxy``)."""
    parser = subparsers.add_parser(
        "proxy",
        help="run the fault-injecting TCP proxy",
        description="A TCP proxy that refuses, black-holes (all connections or only new "
        "ones), resets, slows or answers HTTP errors on command, for outage tests and the demo.",
    )
    add_proxy_arguments(parser)
    parser.set_defaults(run=run_proxy)
    return parser


def run_proxy(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    options = {
        "slow": {"delay_s": args.delay_s},
        "reset": {"after_bytes": args.after_bytes},
    }.get(args.mode, {})
    try:
        Mode.parse(args.mode, **options)
    except InvalidMode as exc:
        log.critical("cannot start the proxy: %s", exc)
        return os.EX_CONFIG
    try:
        asyncio.run(serve(args.listen, args.target, args.control, args.mode, options))
    except OSError as exc:
        log.critical("cannot start the proxy: %s", exc)
        return os.EX_CANTCREAT
    return os.EX_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tilld.sim.faultproxy", description="The tilld fault-injecting TCP proxy."
    )
    add_proxy_arguments(parser)
    return run_proxy(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
