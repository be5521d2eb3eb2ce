"""CCSP framing (controlunit.md "CleanCash serial protocol"): `#!#`, length, message, LRC, CR.

    #!#LLL#<message>#CC<CR>

LLL is the message length plus 11, as 3 uppercase hex digits; the 11 are the
framing characters, so LLL is the length of the whole frame, CR included. CC
is the LRC: the XOR of every character from the first `#` up to and
including the `#` before it, as 2 uppercase hex digits. Requests and replies
are framed alike; messages are printable ASCII, fields separated by `#`.

Pure functions plus an incremental decoder that turns a byte stream into
frames and errors; link.py does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CcspProtocolError

START = b"#!#"
CR = 0x0D
FRAMING_CHARACTERS = 11
MAX_FRAME = 0xFFF  # the largest length 3 hex digits can say
MAX_MESSAGE = MAX_FRAME - FRAMING_CHARACTERS
_HEX = frozenset(b"0123456789ABCDEFabcdef")


class LrcMismatch(CcspProtocolError):
    """A well-formed frame whose LRC does not match: the unit answers NAK 001."""


def lrc(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def is_message_text(text: str) -> bool:
    # Printable ASCII only: the length counts characters, the LRC bytes, and
    # a CR inside would end the frame early.
    return bool(text) and all(" " <= ch <= "~" for ch in text)


def encode_frame(message: str, *, corrupt_lrc: bool = False) -> bytes:
    """`message` framed for the line; `corrupt_lrc` is for tests of a damaged frame."""
    if not is_message_text(message):
        raise CcspProtocolError(
            f"message {message[:40]!r} cannot be framed: it must be non-empty printable ASCII"
        )
    if len(message) > MAX_MESSAGE:
        raise CcspProtocolError(
            f"message of {len(message)} characters is longer than a frame holds ({MAX_MESSAGE})"
        )
    head = b"#!#%03X#" % (len(message) + FRAMING_CHARACTERS) + message.encode("ascii") + b"#"
    check = lrc(head) ^ (0xFF if corrupt_lrc else 0)
    return head + b"%02X\r" % check


def decode_frame(frame: bytes) -> str:
    """One complete frame to its message; raises CcspProtocolError naming the fault."""
    if not frame.startswith(START):
        raise CcspProtocolError(f"frame does not start with #!#: {frame[:12]!r}")
    if len(frame) < FRAMING_CHARACTERS + 1:
        raise CcspProtocolError(f"frame of {len(frame)} bytes is too short to hold a message")
    if frame[-1] != CR:
        raise CcspProtocolError(f"frame does not end with CR: {frame[-8:]!r}")
    length_field = frame[3:6]
    if not set(length_field) <= _HEX or frame[6:7] != b"#":
        raise CcspProtocolError(f"bad length field {frame[3:7]!r}: want 3 hex digits and #")
    said = int(length_field, 16)
    if said != len(frame):
        raise CcspProtocolError(f"length field says {said} bytes, the frame has {len(frame)}")
    if frame[-4:-3] != b"#" or not set(frame[-3:-1]) <= _HEX:
        raise CcspProtocolError(f"bad LRC field {frame[-4:-1]!r}: want # and 2 hex digits")
    message_bytes = frame[7:-4]
    if not all(0x20 <= byte <= 0x7E for byte in message_bytes) or not message_bytes:
        raise CcspProtocolError(f"message is empty or not printable ASCII: {message_bytes[:40]!r}")
    said_lrc = int(frame[-3:-1], 16)
    computed = lrc(frame[:-3])
    if said_lrc != computed:
        raise LrcMismatch(
            f"bad LRC: the frame says {said_lrc:02X}, its characters give {computed:02X}"
        )
    return message_bytes.decode("ascii")


@dataclass(frozen=True)
class Frame:
    message: str


@dataclass(frozen=True)
class FrameError:
    """Bytes that did not make a frame; `bad_lrc` when only the LRC was wrong."""

    reason: str
    bad_lrc: bool = False


Event = Frame | FrameError


class FrameDecoder:
    """Feed bytes as they arrive; get back the frames and errors they complete.

    A frame runs from `#!#` to the next CR, then must pass decode_frame. If
    it does not and another `#!#` starts inside it, the sender restarted: the
    later frame is tried alone. Bytes outside frames are reported (CR and LF
    between frames are not). State is bounded by MAX_FRAME, work is linear in
    the input, so no input can make it hang or grow without limit.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def reset(self) -> None:
        self._buffer.clear()

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        events: list[Event] = []
        while self._buffer:
            start = self._buffer.find(START)
            if start < 0:
                # Keep a tail that may be the beginning of `#!#`.
                keep = 2 if self._buffer.endswith(b"#!") else 1 if self._buffer[-1:] == b"#" else 0
                self._noise(self._buffer[: len(self._buffer) - keep], events)
                del self._buffer[: len(self._buffer) - keep]
                break
            if start:
                self._noise(self._buffer[:start], events)
                del self._buffer[:start]
            end = self._buffer.find(CR)
            if end < 0:
                if len(self._buffer) > MAX_FRAME:
                    # No frame can end more than MAX_FRAME bytes after its
                    # start: only the last MAX_FRAME bytes may still hold one.
                    events.append(FrameError(f"no CR within {MAX_FRAME} bytes of #!#"))
                    del self._buffer[: len(self._buffer) - MAX_FRAME]
                    continue
                break
            events += self._complete(bytes(self._buffer[: end + 1]))
            del self._buffer[: end + 1]
        return events

    def _complete(self, candidate: bytes) -> list[Event]:
        try:
            return [Frame(decode_frame(candidate))]
        except LrcMismatch as exc:
            first = FrameError(str(exc), bad_lrc=True)
        except CcspProtocolError as exc:
            first = FrameError(str(exc))
        restart = candidate.rfind(START, 1)
        if restart < 0:
            return [first]
        try:
            frame = Frame(decode_frame(candidate[restart:]))
        except CcspProtocolError:
            return [first]
        return [FrameError(f"{restart} bytes of a broken frame before a new #!#"), frame]

    @staticmethod
    def _noise(data: bytes | bytearray, events: list[Event]) -> None:
        stray = bytes(data).strip(b"\r\n")
        if stray:
            events.append(FrameError(f"{len(stray)} bytes outside a frame ignored: {stray[:16]!r}"))
