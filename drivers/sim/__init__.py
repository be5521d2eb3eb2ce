"""Simulators that speak the devices' real bytes over ptys and TCP sockets.

Each runs as its own process (`tilld sim printer|scanner|terminal`), announces its
addresses as `key=value` lines on stdout, and takes orders on a small HTTP
control port, so tests and the demo drive them the same way a technician can
with curl.
"""

from __future__ import annotations

import asyncio
import signal

# sysexits(3), as tilld uses them.
EX_OK = 0
EX_CANTCREAT = 73
EX_CONFIG = 78


async def stop_requested() -> None:
    """Return when SIGTERM or SIGINT arrives."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
