"""nexo Retailer (Swedbank Pay's PAX terminals: nexo 3.1 as XML over HTTP).

Layout: errors, xmlsafe, messages, cards, codec (pure codec), outcomes (what
an answer means for tilld, pure); http (one POST per connection on asyncio
streams); device (NexoTerminal, a CardTerminal).
`open_terminal` builds one from the values of the `[devices.terminal]`
configuration section.
"""

from __future__ import annotations

from ..device import Backoff, DeviceListener
from ..terminal import StatusCallback
from .device import NexoTerminal, NexoTimeouts
from .errors import NexoProtocolError

KINDS = ("nexo",)


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"devices.terminal.address {address!r} is not host:port (the samples use port 11000)"
        )
    return host.strip("[]"), int(port)


def open_terminal(
    name: str,
    listener: DeviceListener,
    *,
    address: str,
    sale_id: str,
    poi_id: str,
    on_status: StatusCallback | None = None,
    timeouts: NexoTimeouts | None = None,
    backoff: Backoff | None = None,
    software_version: str = "",
) -> NexoTerminal:
    """A NexoTerminal, not yet opened: call `await terminal.open()` to start it."""
    host, port = split_address(address)
    return NexoTerminal(
        name,
        listener,
        host,
        port,
        sale_id,
        poi_id,
        timeouts=timeouts or NexoTimeouts(),
        on_status=on_status,
        backoff=backoff,
        software_version=software_version,
    )


__all__ = ["KINDS", "NexoProtocolError", "NexoTerminal", "NexoTimeouts", "open_terminal"]
