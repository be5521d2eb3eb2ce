"""Where a ZVT terminal is: a TCP address or a serial port. Each opens an ApduLink."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from ..device import DeviceUnavailable
from .link import ApduLink, SerialLink, SerialTiming, TcpLink

DEFAULT_TCP_PORT = 20007  # zvt.md "Transport"
SERIAL_BAUDRATE = 9600


class Transport(ABC):
    @abstractmethod
    async def open(self) -> ApduLink:
        """Connect; raise DeviceUnavailable or OSError when the terminal is not there."""

    @abstractmethod
    def describe(self) -> str: ...


class TcpTransport(Transport):
    def __init__(self, host: str, port: int = DEFAULT_TCP_PORT, connect_timeout_s: float = 5.0):
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s

    @classmethod
    def from_address(cls, address: str, connect_timeout_s: float = 5.0) -> TcpTransport:
        """`host:port` or `host` (port 20007), as config `devices.terminal.address` holds it."""
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            host, port = address, str(DEFAULT_TCP_PORT)
        if not host:
            raise ValueError(f"terminal address {address!r} has no host; write host:20007")
        return cls(host.strip("[]"), int(port), connect_timeout_s)

    async def open(self) -> ApduLink:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError as exc:
            raise DeviceUnavailable(f"no answer from {self.describe()}") from exc
        return TcpLink(reader, writer)

    def describe(self) -> str:
        return f"zvt-tcp {self.host}:{self.port}"


class SerialTransport(Transport):
    """A serial port, 9600 8N2 (zvt.md), opened with pyserial and driven by fd."""

    def __init__(
        self, path: str, baudrate: int = SERIAL_BAUDRATE, timing: SerialTiming | None = None
    ):
        self.path = path
        self.baudrate = baudrate
        self.timing = timing or SerialTiming()

    async def open(self) -> ApduLink:
        import serial  # pyserial; imported here so TCP-only installs never need it

        try:
            # Opening and configuring the port are blocking ioctls: off the event loop.
            port = await asyncio.to_thread(
                serial.Serial,
                self.path,
                baudrate=self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_TWO,
                timeout=0,
                exclusive=True,
            )
        except serial.SerialException as exc:
            raise DeviceUnavailable(f"cannot open {self.path}: {exc}") from exc
        return SerialLink(port.fileno(), self.timing, on_close=port.close)

    def describe(self) -> str:
        return f"zvt-serial {self.path}"
