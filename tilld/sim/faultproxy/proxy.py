"""The proxy itself: a TCP listener that forwards to a target, or fails as its mode says.

How each mode behaves and which connections a change reaches is in the
package's docstring (tilld/sim/faultproxy/__init__.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import asdict, fields
from typing import Any

from .answers import CHUNK, fault_response, read_request
from .delay import DelayLine
from .link import Link
from .modes import HTTP_ERRORS, MODES, Mode, Traffic

log = logging.getLogger("tilld.sim.faultproxy")

BACKLOG = 128
ACCEPTS_PER_WAKEUP = 64  # let forwarding run between bursts of connects
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0  # for a request the proxy answers itself


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
        target = "nothing (accept and close)" if self.target is None else host_port(*self.target)
        log.info(
            "proxy on %s to %s, mode %s",
            host_port(self.host, self.port),
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
            "in_flight": sum(line.pending_bytes for link in self._links for line in link.lines),
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
            elif await self._handshake(link, mode) and await self._connect_target(link):
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

    async def _handshake(self, link: Link, mode: Mode) -> bool:
        """Over a long link a new connection costs a round trip before its first request.

        The kernel has already completed the client's connect to the proxy, so
        the round trip is spent here instead: the first request reaches the
        target, and its answer the client, as late as through a real
        handshake. A mode change cuts the wait short.
        """
        if mode.name == "latency":
            await self._changes_within(self._mode_changed, mode.up_s + mode.down_s)
        return True

    async def _connect_target(self, link: Link) -> bool:
        assert self.target is not None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                link.target_reader, link.target_writer = await asyncio.open_connection(*self.target)
        except (OSError, TimeoutError) as exc:
            log.debug(
                "cannot reach the target %s: %s", host_port(*self.target), str(exc) or "timeout"
            )
            # The client sees the target's failure as a reset, as through a real proxy.
            link.end(reset=True)
            return False
        return True

    async def _pump(self, link: Link, *, upstream: bool) -> None:
        reader = link.client_reader if upstream else link.target_reader
        writer = link.target_writer if upstream else link.client_writer
        assert reader is not None and writer is not None
        line: DelayLine | None = None  # made on the first chunk read in latency
        try:
            while data := await reader.read(CHUNK):
                mode = self.mode
                if mode.name == "latency" or (line is not None and line.in_flight):
                    # Once chunks are in flight, later ones queue behind them
                    # whatever the mode, so a change never reorders the stream.
                    if line is None:
                        line = self._delay_line(link, upstream=upstream)
                    delay_s = (mode.up_s if upstream else mode.down_s) * (mode.name == "latency")
                    jitter_s = mode.jitter_s * (mode.name == "latency")
                    await line.put(data, delay_s, jitter_s)
                    if line.finished:
                        return
                elif not await self._deliver(link, data, upstream=upstream):
                    return
            if line is not None:
                await line.drained()  # the end of the stream arrives after its last bytes
                if line.finished:
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

    def _delay_line(self, link: Link, *, upstream: bool) -> DelayLine:
        async def deliver(data: bytes) -> bool:
            try:
                return await self._deliver(link, data, upstream=upstream)
            except OSError as exc:
                log.debug("connection from %s, %s: %s", link.peer, _side(upstream), exc)
                link.end(reset=True)
                return False

        line = DelayLine(deliver)
        link.lines.append(line)
        return line

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


def host_port(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(mode: Mode) -> str:
    options = ", ".join(f"{k}={v}" for k, v in mode.describe().items() if k != "mode")
    return f"{mode.name} ({options})" if options else mode.name


def _side(upstream: bool) -> str:
    return "client side" if upstream else "target side"
