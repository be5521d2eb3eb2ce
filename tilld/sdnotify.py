"""The sd_notify protocol, spoken directly: one datagram of ``KEY=value`` lines to $NOTIFY_SOCKET.

systemd documents the protocol as stable (sd_notify(3)): an AF_UNIX datagram
socket whose path is in NOTIFY_SOCKET; a leading ``@`` means the Linux
abstract namespace. It is small enough that a dependency buys nothing, and
writing it here lets the watchdog rules (WATCHDOG_PID, half the interval)
live next to it. Without NOTIFY_SOCKET every call is a no-op, so the daemon
runs the same in a terminal, under a test, or under systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping

log = logging.getLogger("tilld.sdnotify")


class Notifier:
    def __init__(self, address: str | None) -> None:
        self.address = _socket_address(address) if address else None
        self._sock: socket.socket | None = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never block the event loop on systemd: a full queue drops a
            # datagram (logged) rather than stalling sales.
            self._sock.setblocking(False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        environ = os.environ if environ is None else environ
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send one datagram with these ``KEY=value`` fields; False if it could not be sent."""
        if self._sock is None or self.address is None:
            return False
        message = "\n".join(fields).encode("utf-8")
        try:
            self._sock.sendto(message, self.address)
        except OSError as exc:
            log.warning("could not tell systemd %s: %s", fields[0].split("=")[0], exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 so it can tell
        # this reload from an older one; older versions ignore the field.
        return self.notify(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(value: str) -> str | bytes:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if not value.startswith("/"):
        raise ValueError(f"NOTIFY_SOCKET={value!r} is neither a path nor an abstract name")
    return value


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None if not asked for.

    WATCHDOG_PID names the process the watchdog is meant for; a child that
    inherited the variables must not ping for its parent.
    """
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000


def forget_environment(environ: MutableMapping[str, str] | None = None) -> None:
    """Drop the notify variables so programs this daemon starts never speak for it."""
    environ = os.environ if environ is None else environ
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        environ.pop(key, None)
