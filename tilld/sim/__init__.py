"""Simulators that speak the real protocols: the reference back-end and the fault proxy."""

from __future__ import annotations

import asyncio
import signal

# sysexits(3), as the daemon uses them.
EX_OK = 0
EX_CANTCREAT = 73
EX_CONFIG = 78


async def stop_requested() -> None:
    """Return when SIGTERM or SIGINT arrives (a simulator's whole life cycle)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
