"""Pure decoding shared by every scanner kind: framing, cleaning, debounce.

Scanners end each code with a suffix (CR by factory default on most serial
models), may add a configured prefix, and may send an AIM symbology
identifier (`]E0` for EAN-13) first. Anything else on the line is the code.
Garbage — bytes that are not UTF-8, control characters from a noisy line, a
line longer than any barcode — is reported as a `ScanGarbage`, never raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# The AIM identifier's code character names the symbology (ISO/IEC 15424).
AIM_SYMBOLOGIES = {
    "A": "code39",
    "C": "code128",
    "E": "ean-upc",
    "F": "codabar",
    "G": "code93",
    "I": "interleaved-2-of-5",
    "L": "pdf417",
    "Q": "qr",
    "d": "datamatrix",
    "e": "gs1-databar",
    "z": "aztec",
}

# Longer than any 1D code and any ticket QR we print; a line this long is a
# stuck scanner or line noise, not a scan.
DEFAULT_MAX_LENGTH = 512


@dataclass(frozen=True)
class ScanData:
    code: str
    symbology: str = ""


@dataclass(frozen=True)
class ScanGarbage:
    reason: str


@dataclass(frozen=True)
class ScanRules:
    prefix: str = ""
    suffix: bytes = b"\r"
    max_length: int = DEFAULT_MAX_LENGTH
    aim_ids: bool = False


def clean(raw: bytes, rules: ScanRules) -> ScanData | ScanGarbage:
    """Turn one framed line (suffix removed) into a scan or a garbage report."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ScanGarbage(f"not UTF-8 at byte {exc.start} ({len(raw)} bytes discarded)")
    # LF/CR left over from a CRLF suffix configured as CR are harmless.
    text = text.strip("\r\n")
    if rules.prefix and text.startswith(rules.prefix):
        text = text[len(rules.prefix) :]
    symbology = ""
    if rules.aim_ids and len(text) >= 3 and text[0] == "]":
        symbology = AIM_SYMBOLOGIES.get(text[1], f"aim-{text[1]}")
        text = text[3:]
    if not text:
        return ScanGarbage("empty code")
    if "\ufffd" in text:
        # A wedge scanner pressed keys that no barcode character maps to.
        return ScanGarbage(f"unknown keys in a {len(text)}-character line")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text if c != "\x1d"):
        # GS (0x1D) is the GS1 field separator and belongs in the code.
        return ScanGarbage(f"control characters in a {len(text)}-character line")
    if len(text) > rules.max_length:
        return ScanGarbage(f"line of {len(text)} characters is longer than {rules.max_length}")
    return ScanData(text, symbology)


class LineFramer:
    """Splits a byte stream into lines at the suffix, bounding what it buffers."""

    def __init__(self, rules: ScanRules) -> None:
        self.rules = rules
        self._buffer = bytearray()
        self._overflowed = False

    def feed(self, data: bytes) -> list[ScanData | ScanGarbage]:
        out: list[ScanData | ScanGarbage] = []
        self._buffer += data
        suffix = self.rules.suffix
        while True:
            end = self._buffer.find(suffix)
            if end < 0:
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + len(suffix)]
            if self._overflowed:
                # The rest of an over-long line already reported.
                self._overflowed = False
                continue
            out.append(clean(line, self.rules))
        # Bytes are UTF-8 at most 4 per character, so 4x max_length bounds any real line.
        if len(self._buffer) > 4 * self.rules.max_length + len(suffix):
            out.append(
                ScanGarbage(f"more than {self.rules.max_length} characters without a line end")
            )
            self._buffer.clear()
            self._overflowed = True
        return out

    def reset(self) -> None:
        self._buffer.clear()
        self._overflowed = False


class Debouncer:
    """Drops the same code read again within `window_s`.

    A scanner held over a barcode, or a presentation scanner that sees the
    same ticket twice, must not add two articles or register two passages.
    A different code in between does not reset the window for the first.
    """

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._last: dict[str, float] = {}

    def accept(self, code: str) -> bool:
        now = self._clock()
        # Forget old codes so the table stays small on a busy till.
        if len(self._last) > 64:
            self._last = {c: t for c, t in self._last.items() if now - t < self.window_s}
        seen = self._last.get(code)
        self._last[code] = now
        return seen is None or now - seen >= self.window_s
