"""How the demo ends its child processes: politely, then firmly."""

from __future__ import annotations

import asyncio
import contextlib

STOP_TIMEOUT_S = 5


async def stop_process(proc: asyncio.subprocess.Process | None) -> None:
    """SIGTERM, then SIGKILL if the child has not gone within a few seconds."""
    if proc is None or proc.returncode is not None:
        return
    proc.terminate()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
