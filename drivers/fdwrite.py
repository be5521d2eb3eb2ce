"""Writing a whole buffer to a non-blocking file descriptor without blocking the event loop.

Serial links (ZVT, the control unit) write to a port opened O_NONBLOCK: a
full output buffer waits for the kernel's "writable" instead of stalling
every other device and the APIs behind one slow line.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


async def write_all(
    loop: asyncio.AbstractEventLoop, fd: int, data: bytes, closed: Callable[[], bool]
) -> bool:
    """Write all of ``data``; False if the link was closed before it all went out.

    An OSError of the write itself (the port unplugged) reaches the caller,
    which knows what the link's close reason should say.
    """
    view = memoryview(data)
    while view:
        if closed():
            return False
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            ready = loop.create_future()
            loop.add_writer(fd, ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_writer(fd)
            continue
        view = view[written:]
    return True
