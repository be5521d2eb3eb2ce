"""Serial (RS-232 or USB CDC) scanners, read without blocking the event loop.

pyserial opens and configures the port (baud rate, 8N1, exclusive lock);
the event loop then watches its file descriptor, so a scan is handled the
moment its last byte arrives and a silent scanner costs nothing.
"""

from __future__ import annotations

import asyncio
import os

import serial

from ..device import DeviceListener, DeviceUnavailable
from .base import ScanCallback, Scanner
from .decoding import LineFramer, ScanRules


class SerialScanner(Scanner):
    def __init__(
        self,
        name: str,
        listener: DeviceListener,
        on_scan: ScanCallback,
        *,
        port: str,
        baudrate: int,
        rules: ScanRules,
        debounce_s: float,
    ) -> None:
        super().__init__(name, listener, on_scan, rules=rules, debounce_s=debounce_s)
        self.port = port
        self.baudrate = baudrate
        self.framer = LineFramer(rules)
        self._serial: serial.Serial | None = None

    async def _connect(self) -> None:
        if not os.path.exists(self.port):
            raise DeviceUnavailable(f"{self.port} does not exist (unplugged?)")
        # Opening a tty can block on modem lines; keep it off the loop.
        self._serial = await asyncio.to_thread(
            serial.Serial, self.port, self.baudrate, timeout=0, exclusive=True
        )
        self.framer.reset()

    async def _serve(self) -> None:
        assert self._serial is not None
        loop = asyncio.get_running_loop()
        fd = self._serial.fileno()
        lost: asyncio.Future[str] = loop.create_future()

        def readable() -> None:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                return
            except OSError as exc:
                # EIO: the USB adapter was pulled or the pty's other end closed.
                if not lost.done():
                    lost.set_exception(exc)
                return
            if not data:
                if not lost.done():
                    lost.set_result("disconnected")
                return
            for result in self.framer.feed(data):
                self._deliver(result)

        loop.add_reader(fd, readable)
        try:
            await lost
        finally:
            loop.remove_reader(fd)

    async def _disconnect(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            port.close()
