"""APDU links: TCP (raw APDUs) and serial (framed, ACK/NAK), for both ends.

The driver and the terminal simulator use the same links, so the simulator
is the driver's mirror on the wire (STYLE.md). A link reads continuously in
the background: received APDUs queue up, and a broken connection is noticed
even while no command runs, so the device can reconnect at once.

Serial I/O uses the file descriptor with loop.add_reader/add_writer, not a
thread and not pyserial-asyncio: pyserial only opens and configures the port
(8N2, 9600), the same non-blocking fd code then serves a real serial port and
the simulator's pty master, and nothing blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from ..fdwrite import write_all
from .apdu import Apdu, apdu_size, decode_apdu, encode_apdu
from .framing import ACK, ACK_BYTE, NAK, NAK_BYTE, Frame, FrameDecoder, FrameError, encode_frame

log = logging.getLogger("tilld.drivers.zvt")


class LinkClosed(ConnectionError):
    """The link is gone (peer closed, reset, serial port vanished)."""


class LinkTimeout(TimeoutError):
    """The peer did not acknowledge a frame after the allowed resends."""


class ApduLink(ABC):
    def __init__(self) -> None:
        self._incoming: asyncio.Queue[Apdu] = asyncio.Queue()
        self._closed = asyncio.Event()
        self.close_reason = ""

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def drain(self) -> list[Apdu]:
        """APDUs that arrived while nobody listened (stale answers of an earlier flow)."""
        stale = []
        while not self._incoming.empty():
            stale.append(self._incoming.get_nowait())
        return stale

    async def receive(self, timeout: float) -> Apdu:
        """The next APDU; TimeoutError if none within `timeout`, LinkClosed if the link dies."""
        if not self._incoming.empty():
            return self._incoming.get_nowait()
        if self.closed:
            raise LinkClosed(self.close_reason or "link closed")
        getter = asyncio.ensure_future(self._incoming.get())
        closer = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, closer}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closer.cancel()
            if not getter.done():
                getter.cancel()
        if getter in done:
            return getter.result()
        if closer in done:
            raise LinkClosed(self.close_reason or "link closed")
        raise TimeoutError(f"no answer within {timeout:g} s")

    @abstractmethod
    async def send(self, apdu: Apdu) -> None: ...

    @abstractmethod
    def close(self, reason: str = "closed") -> None: ...

    def _mark_closed(self, reason: str) -> None:
        if not self.closed:
            self.close_reason = reason
            self._closed.set()


class TcpLink(ApduLink):
    """Raw APDUs over TCP: no framing, no CRC, no ACK byte (zvt.md "Transport")."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self._reader = reader
        self._writer = writer
        self._task = asyncio.create_task(self._read_loop(), name="zvt tcp reader")

    async def _read_loop(self) -> None:
        reason = "peer closed the connection"
        try:
            while True:
                buffer = await self._reader.readexactly(3)
                if apdu_size(buffer) is None:
                    buffer += await self._reader.readexactly(2)
                size = apdu_size(buffer) or len(buffer)  # a 5-byte header always has one
                buffer += await self._reader.readexactly(size - len(buffer))
                self._incoming.put_nowait(decode_apdu(buffer))
        except asyncio.IncompleteReadError:
            pass
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
        except asyncio.CancelledError:
            reason = "closed"
        finally:
            self._mark_closed(reason)
            self._writer.close()

    async def send(self, apdu: Apdu) -> None:
        if self.closed:
            raise LinkClosed(self.close_reason or "link closed")
        try:
            self._writer.write(encode_apdu(apdu))
            await self._writer.drain()
        except OSError as exc:
            self._mark_closed(exc.strerror or str(exc))
            raise LinkClosed(self.close_reason) from exc

    def close(self, reason: str = "closed") -> None:
        self._mark_closed(reason)
        self._task.cancel()
        self._writer.close()

    def abort(self) -> None:
        """Drop the connection with a reset (the simulator's "drop the link" fault)."""
        self._mark_closed("aborted")
        self._writer.transport.abort()
        self._task.cancel()


@dataclass(frozen=True)
class SerialTiming:
    ack_timeout_s: float = 2.0  # wait for ACK/NAK after a frame, then resend
    max_resends: int = 3  # zvt.md: resend on NAK "a bounded number of times"
    inter_byte_timeout_s: float = 0.5  # a frame that stalls this long is dropped (NAK)


@dataclass
class SerialCounters:
    frames_sent: int = 0
    resends: int = 0
    naks_sent: int = 0
    naks_received: int = 0


class SerialLink(ApduLink):
    """Framed APDUs on a non-blocking fd: DLE STX ... DLE ETX CRC, each frame ACKed or NAKed."""

    def __init__(
        self,
        fd: int,
        timing: SerialTiming = SerialTiming(),
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._fd = fd
        self.timing = timing
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._decoder = FrameDecoder()
        self._send_lock = asyncio.Lock()
        self._line_reply: asyncio.Future[int] | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self.counters = SerialCounters()
        self.corrupt_next = 0  # the simulator's fault: send this many frames with a bad CRC
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self.close(exc.strerror or str(exc))
            return
        if not data:
            self.close("serial port closed")
            return
        for event in self._decoder.feed(data):
            if isinstance(event, Frame):
                self._write_nowait(ACK_BYTE)
                try:
                    self._incoming.put_nowait(decode_apdu(event.apdu))
                except ValueError as exc:  # ZvtProtocolError: a good CRC around a bad APDU
                    log.warning("serial frame with a malformed APDU dropped: %s", exc)
            elif isinstance(event, FrameError):
                log.info("serial frame rejected (NAK): %s", event.reason)
                self.counters.naks_sent += 1
                self._write_nowait(NAK_BYTE)
            elif event.value in (ACK, NAK):
                if self._line_reply is not None and not self._line_reply.done():
                    self._line_reply.set_result(event.value)
            else:
                log.debug("stray byte %02X outside a frame ignored", event.value)
        self._arm_stall_timer()

    def _arm_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if self._decoder.in_frame:
            self._stall_timer = self._loop.call_later(
                self.timing.inter_byte_timeout_s, self._stalled
            )

    def _stalled(self) -> None:
        # Inter-byte timeout: the rest of the frame is not coming; NAK so the
        # sender repeats it rather than waiting for its own ACK timeout.
        self._stall_timer = None
        self._decoder.reset()
        self.counters.naks_sent += 1
        self._write_nowait(NAK_BYTE)

    def _write_nowait(self, data: bytes) -> None:
        try:
            os.write(self._fd, data)
        except BlockingIOError:
            log.warning("serial output full; %d-byte line reply dropped", len(data))
        except OSError as exc:
            self.close(exc.strerror or str(exc))

    async def _write_all(self, data: bytes) -> None:
        try:
            sent = await write_all(self._loop, self._fd, data, lambda: self.closed)
        except OSError as exc:
            self.close(exc.strerror or str(exc))
            raise LinkClosed(self.close_reason) from exc
        if not sent:
            raise LinkClosed(self.close_reason)

    async def send(self, apdu: Apdu) -> None:
        """Send one framed APDU and wait for ACK; resend on NAK or silence, boundedly."""
        raw = encode_apdu(apdu)
        async with self._send_lock:
            for attempt in range(1 + self.timing.max_resends):
                corrupt = self.corrupt_next > 0
                if corrupt:
                    self.corrupt_next -= 1
                self._line_reply = self._loop.create_future()
                await self._write_all(encode_frame(raw, corrupt_crc=corrupt))
                self.counters.frames_sent += 1
                if attempt:
                    self.counters.resends += 1
                try:
                    # Not wait_for: on Python 3.11 it can swallow a cancellation.
                    async with asyncio.timeout(self.timing.ack_timeout_s):
                        reply = await asyncio.shield(self._line_reply)
                except TimeoutError:
                    reply = None
                finally:
                    self._line_reply = None
                if self.closed:
                    raise LinkClosed(self.close_reason)
                if reply == ACK:
                    return
                if reply == NAK:
                    self.counters.naks_received += 1
            raise LinkTimeout(
                f"frame {apdu.cls:02X} {apdu.instr:02X} not acknowledged after "
                f"{1 + self.timing.max_resends} tries: check the cable and the baud rate"
            )

    def close(self, reason: str = "closed") -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        if not self.closed:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._fd)
            if self._line_reply is not None and not self._line_reply.done():
                self._line_reply.set_result(-1)  # wakes a sender, which sees the link closed
        self._mark_closed(reason)
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()
