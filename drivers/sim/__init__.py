"""Simulators that speak the devices' real bytes over ptys and TCP sockets.

Each runs as its own process (`tilld sim printer|scanner|terminal`), announces its
addresses as `key=value` lines on stdout, and takes orders on a small HTTP
control port, so tests and the demo drive them the same way a technician can
with curl. They exit with sysexits(3) codes from `os` (`os.EX_CONFIG` for bad
arguments, `os.EX_CANTCREAT` when they cannot listen), as tilld does.
"""

from __future__ import annotations

import asyncio
import signal


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
