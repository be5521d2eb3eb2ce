"""One proxied connection: the client's side, the target's, and how both end."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class Link:
    """One client connection and, once made, its connection to the target."""

    def __init__(self, sock: socket.socket, peer: Any) -> None:
        self.sock = sock
        self.peer = peer
        self.client_reader: asyncio.StreamReader | None = None
        self.client_writer: asyncio.StreamWriter | None = None
        self.target_reader: asyncio.StreamReader | None = None
        self.target_writer: asyncio.StreamWriter | None = None
        self.response_bytes = 0  # sent to the client since it last sent anything
        self.opening = False  # the client transport is being made around sock
        self.new_in_halfdead = False  # accepted under halfdead: held while it lasts
        self.task: asyncio.Task[None] | None = None
        self.pumps: list[asyncio.Task[None]] = []
        self.lines: list[Any] = []  # latency's delay lines (delay.DelayLine), one per direction

    def end(self, *, reset: bool) -> None:
        """Close both sides, with RST if ``reset``, and stop the link's other tasks.

        The client socket is closed here and now, not on the transport's next
        loop turn, so whoever switched to refuse knows the connection is gone.
        """
        if reset:
            for sock in (self.sock, _socket_of(self.target_writer)):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
        for writer in (self.client_writer, self.target_writer):
            if writer is not None:
                if reset:
                    writer.transport.abort()
                else:
                    writer.close()
        if self.client_writer is None:
            # While the transport is being made, cancelling the task closes it.
            if not self.opening:
                self.sock.close()
        elif reset:
            # abort() has stopped the loop watching the socket; the transport's
            # own close() later is a no-op on the closed socket.
            self.sock.close()
        self.cancel_tasks(pumps_only=False)

    def cancel_tasks(self, *, pumps_only: bool) -> None:
        """Cancel the link's tasks but the calling one (the handler too unless pumps_only)."""
        current = asyncio.current_task()
        tasks = [*self.pumps, *(line.task for line in self.lines)]
        for task in tasks if pumps_only else (self.task, *tasks):
            if task is not None and task is not current:
                task.cancel()


def _socket_of(writer: asyncio.StreamWriter | None) -> Any:
    return None if writer is None else writer.get_extra_info("socket")
