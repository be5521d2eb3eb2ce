"""A CCSP link on a non-blocking file descriptor, for both ends of the line.

The driver uses it on the serial port, the simulator on its pty master, so
the simulator is the driver's mirror on the wire (STYLE.md). pyserial only
opens and configures the port (9600 8N1, exclusive); the event loop then
watches the descriptor (loop.add_reader), as drivers/zvt/link.py does, so
nothing blocks the loop and an unplugged port is noticed the moment the
kernel reports it, even while no request runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

from ...device import DeviceUnavailable
from ...fdwrite import write_all
from .framing import Event, FrameDecoder, encode_frame

log = logging.getLogger("tilld.drivers.controlunit")

BAUDRATE = 9600  # controlunit.md "Line": 9600 baud, 8 data bits, no parity, 1 stop bit


class LinkClosed(ConnectionError):
    """The link is gone (port unplugged, closed, or its other end went away)."""


class CcspLink:
    """Frames out, decoder events in: received frames and frame errors queue up."""

    def __init__(self, fd: int, on_close: Callable[[], None] | None = None) -> None:
        self._fd = fd
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._decoder = FrameDecoder()
        self._incoming: asyncio.Queue[Event] = asyncio.Queue()
        self._closed = asyncio.Event()
        self.close_reason = ""
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO: the USB adapter was pulled or the pty's other end closed.
            self.close(exc.strerror.lower() if exc.strerror else str(exc))
            return
        if not data:
            self.close("the port was closed")
            return
        for event in self._decoder.feed(data):
            self._incoming.put_nowait(event)

    def drain(self) -> list[Event]:
        """Events that arrived while nobody listened (late answers, noise)."""
        stale = []
        while not self._incoming.empty():
            stale.append(self._incoming.get_nowait())
        return stale

    async def receive(self, timeout: float) -> Event:
        """The next event; TimeoutError if none within `timeout`, LinkClosed if the link dies."""
        if not self._incoming.empty():
            return self._incoming.get_nowait()
        if self.closed:
            raise LinkClosed(self.close_reason)
        getter = asyncio.ensure_future(self._incoming.get())
        closer = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, closer}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closer.cancel()
            if not getter.done():
                getter.cancel()
        if getter in done:
            return getter.result()
        if closer in done:
            raise LinkClosed(self.close_reason)
        raise TimeoutError(f"no answer within {timeout:g} s")

    async def send(self, message: str, *, corrupt_lrc: bool = False) -> None:
        """Write one framed message; LinkClosed if the port is gone."""
        await self.write(encode_frame(message, corrupt_lrc=corrupt_lrc))

    async def write(self, data: bytes) -> None:
        try:
            sent = await write_all(self._loop, self._fd, data, lambda: self.closed)
        except OSError as exc:
            self.close(exc.strerror.lower() if exc.strerror else str(exc))
            raise LinkClosed(self.close_reason) from exc
        if not sent:
            raise LinkClosed(self.close_reason)

    def close(self, reason: str = "closed") -> None:
        if not self.closed:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._fd)
            self.close_reason = reason
            self._closed.set()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()


class SerialPort:
    """Where the unit is: a serial device path (a udev name such as /dev/tilld/controlunit)."""

    def __init__(self, path: str, baudrate: int = BAUDRATE) -> None:
        self.path = path
        self.baudrate = baudrate

    async def open(self) -> CcspLink:
        """Open the port; raise DeviceUnavailable when it is not there or is taken."""
        import serial  # pyserial

        if not os.path.exists(self.path):
            raise DeviceUnavailable(f"{self.path} does not exist (unplugged?)")

        def open_port() -> serial.Serial:
            port = serial.Serial(
                self.path,
                baudrate=self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=0,
                exclusive=True,
            )
            # Bytes left from before (a late answer to a request of the last
            # connection) must not be read as the answer to the next one.
            port.reset_input_buffer()
            return port

        try:
            # Opening and configuring a tty are blocking ioctls: off the loop.
            port = await asyncio.to_thread(open_port)
        except serial.SerialException as exc:
            raise DeviceUnavailable(
                f"cannot open {self.path}: {exc} (another program may hold it)"
            ) from exc
        return CcspLink(port.fileno(), on_close=port.close)

    def describe(self) -> str:
        return f"cleancash-serial {self.path}"
