"""Serial framing (zvt.md "Transport"): DLE STX, doubled DLEs, DLE ETX, CRC-16/KERMIT.

Pure functions plus an incremental decoder that turns a byte stream into
frames, ACK/NAK bytes and errors; the serial link (link.py) does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ZvtProtocolError

DLE = 0x10
STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15
ACK_BYTE = bytes((ACK,))
NAK_BYTE = bytes((NAK,))
# Largest APDU (5-byte header + 65535 data) with every byte doubled, plus framing:
# anything longer is noise, and bounding it keeps a stuck stream from eating memory.
MAX_FRAME_APDU = 5 + 0xFFFF


def crc16_kermit(data: bytes) -> int:
    """CRC-16/KERMIT: reflected polynomial 0x8408, init 0, no final xor."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def frame_crc(apdu: bytes) -> int:
    # The CRC covers the unescaped APDU plus the ETX byte (zvt.md "Transport").
    return crc16_kermit(apdu + bytes((ETX,)))


def encode_frame(apdu: bytes, *, corrupt_crc: bool = False) -> bytes:
    """`apdu` framed for the serial line; `corrupt_crc` is for the simulator's fault mode."""
    crc = frame_crc(apdu)
    if corrupt_crc:
        crc ^= 0xFFFF
    escaped = apdu.replace(bytes((DLE,)), bytes((DLE, DLE)))
    # The CRC bytes are sent low byte first and are not escaped.
    return bytes((DLE, STX)) + escaped + bytes((DLE, ETX, crc & 0xFF, crc >> 8))


def decode_frame(frame: bytes) -> bytes:
    """One complete frame to its APDU bytes; raises ZvtProtocolError naming the fault."""
    decoder = FrameDecoder()
    events = decoder.feed(frame)
    if decoder.in_frame:
        raise ZvtProtocolError(f"truncated frame: {len(frame)} bytes and no DLE ETX + CRC")
    frames = [e for e in events if isinstance(e, Frame)]
    errors = [e for e in events if isinstance(e, FrameError)]
    if errors:
        raise ZvtProtocolError(errors[0].reason)
    if len(frames) != 1 or len(events) != 1:
        raise ZvtProtocolError(f"expected exactly one frame in {frame.hex(' ')}")
    return frames[0].apdu


@dataclass(frozen=True)
class Frame:
    apdu: bytes


@dataclass(frozen=True)
class FrameError:
    """A frame that arrived broken (bad CRC, bad escape, too long): answer NAK."""

    reason: str


@dataclass(frozen=True)
class LineByte:
    """ACK or NAK, or a stray byte outside any frame (`value` says which)."""

    value: int


Event = Frame | FrameError | LineByte


class FrameDecoder:
    """Feed bytes as they arrive; get back the frames and line bytes they complete.

    Work is linear in the input and state is bounded by MAX_FRAME_APDU, so no
    input can make it hang or grow without limit.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget a partial frame (the inter-byte timeout expired)."""
        self._state = "idle"
        self._buffer = bytearray()
        self._crc = bytearray()

    @property
    def in_frame(self) -> bool:
        return self._state != "idle"

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for byte in data:
            event = self._step(byte)
            if event is not None:
                events.append(event)
        return events

    def _step(self, byte: int) -> Event | None:
        state = self._state
        if state == "idle":
            if byte == DLE:
                self._state = "start"
                return None
            return LineByte(byte)
        if state == "start":
            if byte == STX:
                self._state = "data"
                self._buffer.clear()
                return None
            self._state = "idle"
            return FrameError(f"DLE followed by {byte:02X}, not STX, outside a frame")
        if state == "data":
            if byte == DLE:
                self._state = "escape"
                return None
            return self._append(byte)
        if state == "escape":
            if byte == DLE:
                self._state = "data"
                return self._append(DLE)
            if byte == ETX:
                self._state = "crc"
                self._crc.clear()
                return None
            if byte == STX:
                # A new frame began inside this one: the sender restarted.
                self._buffer.clear()
                self._state = "data"
                return FrameError("frame restarted (DLE STX) before DLE ETX")
            self._state = "idle"
            return FrameError(f"invalid escape DLE {byte:02X} inside a frame")
        # state == "crc"
        self._crc.append(byte)
        if len(self._crc) < 2:
            return None
        self._state = "idle"
        apdu = bytes(self._buffer)
        received = self._crc[0] | self._crc[1] << 8
        expected = frame_crc(apdu)
        if received != expected:
            return FrameError(
                f"bad CRC: frame says {received:04X}, data gives {expected:04X} "
                f"({len(apdu)}-byte APDU)"
            )
        return Frame(apdu)

    def _append(self, byte: int) -> Event | None:
        if len(self._buffer) >= MAX_FRAME_APDU:
            self._state = "idle"
            self._buffer.clear()
            return FrameError(f"frame longer than {MAX_FRAME_APDU} bytes without DLE ETX")
        self._buffer.append(byte)
        return None
