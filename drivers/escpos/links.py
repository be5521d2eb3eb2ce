"""Byte links to a printer: TCP (port 9100), serial, and USB.

A link only moves bytes. Writes and status reads go through one owner (the
printer device), so a status answer can never be mistaken for the answer to
another query.
"""

from __future__ import annotations

import asyncio
import os
import threading
from abc import ABC, abstractmethod
from typing import Any

import serial

from ..device import DeviceUnavailable
from ..usb import claim as claim_usb
from ..usb import release as release_usb

# How long closing waits for the last bytes to leave before dropping the connection.
CLOSE_WAIT_S = 0.5


class PrinterLink(ABC):
    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abstractmethod
    async def read(self, n: int, timeout_s: float) -> bytes:
        """Up to n bytes; b"" when nothing came in time. Raises OSError when the link is gone."""

    @abstractmethod
    async def close(self) -> None: ...


class TcpLink(PrinterLink):
    def __init__(self, host: str, port: int, connect_timeout_s: float = 3.0) -> None:
        self.host, self.port = host, port
        self.connect_timeout_s = connect_timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError as exc:
            raise DeviceUnavailable(f"{self.host}:{self.port} does not answer") from exc

    async def write(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def read(self, n: int, timeout_s: float) -> bytes:
        assert self._reader is not None
        try:
            # Not wait_for: on Python 3.11 it can swallow a cancellation (drivers/device.py).
            async with asyncio.timeout(timeout_s):
                data = await self._reader.read(n)
        except TimeoutError:
            return b""
        if not data:
            raise ConnectionResetError("the printer closed the connection")
        return data

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            # Closing a link that is already dead has nothing left to do; a
            # printer that stopped reading never takes the last bytes, so the
            # connection is dropped rather than waited for.
            try:
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await writer.wait_closed()
            except (OSError, TimeoutError):
                writer.transport.abort()


class SerialLink(PrinterLink):
    """A serial printer; reads are watched on the loop, writes wait for the UART."""

    def __init__(self, port: str, baudrate: int) -> None:
        self.port, self.baudrate = port, baudrate
        self._serial: serial.Serial | None = None
        self._incoming: asyncio.Queue[bytes | OSError] = asyncio.Queue()
        self._writing: asyncio.Future[int] | None = None

    async def open(self) -> None:
        if not os.path.exists(self.port):
            raise DeviceUnavailable(f"{self.port} does not exist (unplugged?)")
        self._serial = await asyncio.to_thread(
            serial.Serial, self.port, self.baudrate, timeout=0, write_timeout=10, exclusive=True
        )
        self._incoming = asyncio.Queue()
        fd = self._serial.fileno()
        asyncio.get_running_loop().add_reader(fd, self._readable, fd)

    def _readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 256)
        except BlockingIOError:
            return
        except OSError as exc:
            self._incoming.put_nowait(exc)
            return
        self._incoming.put_nowait(data if data else ConnectionResetError("port closed"))

    async def write(self, data: bytes) -> None:
        assert self._serial is not None
        # A printer at 19200 baud takes seconds for a receipt with a logo:
        # the write runs in a thread so sales go on meanwhile. Shielded, so
        # that close() can tell when the thread is done with the port.
        self._writing = asyncio.ensure_future(asyncio.to_thread(self._serial.write, data))
        # Its caller may be gone by the time it fails; the failure is then nobody's news.
        self._writing.add_done_callback(_ignore_result)
        written = await asyncio.shield(self._writing)
        if written < len(data):
            raise ConnectionAbortedError(
                f"the port was closed after {written} of {len(data)} bytes"
            )

    async def read(self, n: int, timeout_s: float) -> bytes:
        try:
            async with asyncio.timeout(timeout_s):
                item = await self._incoming.get()
        except TimeoutError:
            return b""
        if isinstance(item, OSError):
            raise item
        return item[:n]

    async def close(self) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        asyncio.get_running_loop().remove_reader(port.fileno())
        writing, self._writing = self._writing, None
        try:
            if writing is not None and not writing.done():
                # pyserial's write waits in select() for room in the UART, which
                # a printer that stopped reading never makes (up to write_timeout);
                # cancel_write() wakes it, so neither a reconnect nor a stopping
                # till waits for that.
                port.cancel_write()
                await asyncio.wait({writing}, timeout=CLOSE_WAIT_S)
        finally:
            port.close()


def _ignore_result(future: asyncio.Future[int]) -> None:
    if not future.cancelled():
        future.exception()


class UsbLink(PrinterLink):
    """A USB printer class device through pyusb; every transfer runs in a thread."""

    def __init__(self, vendor_id: int, product_id: int) -> None:
        self.vendor_id, self.product_id = vendor_id, product_id
        self._out: Any = None
        self._in: Any = None
        self._device: Any = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        await asyncio.to_thread(self._claim)

    def _claim(self) -> None:
        claimed = claim_usb(self.vendor_id, self.product_id, "printer")
        if claimed.endpoint_out is None:
            raise DeviceUnavailable("the printer has no output endpoint")
        self._device, self._in, self._out = (
            claimed.device,
            claimed.endpoint_in,
            claimed.endpoint_out,
        )

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._transfer_out, data)

    def _transfer_out(self, data: bytes) -> None:
        import usb.core

        try:
            self._out.write(data, timeout=10_000)
        except usb.core.USBError as exc:
            raise ConnectionResetError(f"USB write failed: {exc}") from exc

    async def read(self, n: int, timeout_s: float) -> bytes:
        if self._in is None:
            return b""
        return await asyncio.to_thread(self._transfer_in, n, timeout_s)

    def _transfer_in(self, n: int, timeout_s: float) -> bytes:
        import usb.core

        try:
            return bytes(self._in.read(n, timeout=int(timeout_s * 1000)))
        except usb.core.USBTimeoutError:
            return b""
        except usb.core.USBError as exc:
            raise ConnectionResetError(f"USB read failed: {exc}") from exc

    async def close(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            await asyncio.to_thread(release_usb, device)
