"""ZVT (ECR interface of German/Austrian/Swiss card terminals): codec, links, the device.

Layout: errors, bcd, apdu, framing (serial), tlv, bmp, codes, messages (pure
codec); link (TCP and serial APDU links), transport (where the terminal is);
device (ZvtTerminal, a CardTerminal). `open_terminal` builds one from the
values of the `[devices.terminal]` configuration section.
"""

from __future__ import annotations

from ..device import Backoff, DeviceListener
from ..terminal import StatusCallback
from .device import ZvtTerminal, ZvtTimeouts
from .errors import ZvtProtocolError
from .link import SerialTiming
from .transport import SerialTransport, TcpTransport, Transport

KINDS = ("zvt-tcp", "zvt-serial")


def make_transport(kind: str, address: str = "", port: str = "") -> Transport:
    """`kind` zvt-tcp uses `address` ("host:20007"); zvt-serial uses `port` (a device path)."""
    if kind == "zvt-tcp":
        if not address:
            raise ValueError("devices.terminal.address is empty: set it to host:20007")
        return TcpTransport.from_address(address)
    if kind == "zvt-serial":
        if not port:
            raise ValueError("devices.terminal.port is empty: set it to the serial device path")
        return SerialTransport(port)
    raise ValueError(f"unknown terminal kind {kind!r}; the ZVT kinds are {', '.join(KINDS)}")


def open_terminal(
    name: str,
    listener: DeviceListener,
    *,
    kind: str,
    address: str = "",
    port: str = "",
    password: str = "000000",
    on_status: StatusCallback | None = None,
    timeouts: ZvtTimeouts | None = None,
    backoff: Backoff | None = None,
) -> ZvtTerminal:
    """A ZvtTerminal, not yet opened: call `await terminal.open()` to start it."""
    return ZvtTerminal(
        name,
        listener,
        make_transport(kind, address, port),
        password,
        timeouts=timeouts or ZvtTimeouts(),
        on_status=on_status,
        backoff=backoff,
    )


__all__ = [
    "KINDS",
    "SerialTiming",
    "SerialTransport",
    "TcpTransport",
    "ZvtProtocolError",
    "ZvtTerminal",
    "ZvtTimeouts",
    "make_transport",
    "open_terminal",
]
