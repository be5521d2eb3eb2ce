"""ESC/POS bytes back into what a customer would see: the printer simulator's eyes.

It understands the commands tilld and python-escpos send, and skips the
parameters of other common ones by their documented lengths, so a receipt
decodes to readable text plus markers (`[QR …]`, `[BARCODE …]`). Cuts,
drawer pulses and real-time status queries come out as actions in stream
order, so the simulator can answer them exactly when a printer would.

Feed it any bytes: an unknown or truncated command is kept as a marker or
waits for more bytes; it never raises.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

ESC, GS, DLE, FS = 0x1B, 0x1D, 0x10, 0x1C
LF, CR, HT, FF = 0x0A, 0x0D, 0x09, 0x0C

# ESC t n -> Python codec, for the pages an Epson-compatible printer offers.
CODE_PAGES = {
    0: "cp437",
    2: "cp850",
    3: "cp860",
    4: "cp863",
    5: "cp865",
    15: "iso8859_15",
    16: "cp1252",
    17: "cp866",
    18: "cp852",
    19: "cp858",
}

# Commands whose parameters are a fixed number of bytes.
_ESC_FIXED = {
    b"!": 1, b"-": 1, b"2": 0, b"3": 1, b"E": 1, b"G": 1, b"J": 1, b"M": 1, b"R": 1,
    b"V": 1, b"a": 1, b"d": 1, b"e": 1, b"t": 1, b"{": 1, b"p": 3, b"c": 2, b" ": 1,
    b"$": 2, b"\\": 2, b"U": 1, b"r": 1, b"=": 1, b"i": 0, b"m": 0, b"@": 0,
}  # fmt: skip
_GS_FIXED = {
    b"!": 1, b"B": 1, b"H": 1, b"L": 2, b"W": 2, b"b": 1, b"f": 1, b"h": 1, b"w": 1,
    b"r": 1, b"a": 1, b"I": 1, b"P": 2, b"x": 1,
}  # fmt: skip
BARCODE_NAMES = {
    65: "UPC-A", 66: "UPC-E", 67: "EAN13", 68: "EAN8", 69: "CODE39",
    70: "ITF", 71: "CODABAR", 72: "CODE93", 73: "CODE128",
}  # fmt: skip


@dataclass
class Interpreter:
    code_page: str = "cp437"
    lines: list[str] = field(default_factory=list)
    _text: bytearray = field(default_factory=bytearray)
    _pending: bytearray = field(default_factory=bytearray)
    _qr_data: str = ""

    def feed(self, data: bytes) -> list[tuple]:
        """Consume bytes; return actions in stream order.

        ("query", n) for DLE EOT n, ("cut", lines) with the lines printed
        since the last cut, ("kick", pin) for a drawer pulse, ("init",).
        """
        self._pending += data
        actions: list[tuple] = []
        buf = self._pending
        i = 0
        while i < len(buf):
            used = self._step(buf, i, actions)
            if used == 0:
                break  # an incomplete command: wait for its remaining bytes
            i += used
        del buf[:i]
        return actions

    def _step(self, buf: bytearray, i: int, actions: list[tuple]) -> int:
        b = buf[i]
        if b == LF:
            self._end_line()
            return 1
        if b in (CR, FF):
            return 1
        if b == HT:
            self._text += b"    "
            return 1
        if b == DLE:
            if len(buf) - i < 3:
                return 0
            if buf[i + 1] == 0x04:
                actions.append(("query", buf[i + 2]))
                return 3
            if buf[i + 1] == 0x14:  # DLE DC4 fn m t: real-time drawer pulse
                if len(buf) - i < 5:
                    return 0
                actions.append(("kick", 2 if buf[i + 3] == 0 else 5))
                return 5
            return 2
        if b == ESC:
            return self._esc(buf, i, actions)
        if b == GS:
            return self._gs(buf, i, actions)
        if b == FS:
            return 2 if len(buf) - i >= 2 else 0
        if b < 0x20:
            return 1
        self._text.append(b)
        return 1

    def _esc(self, buf: bytearray, i: int, actions: list[tuple]) -> int:
        if len(buf) - i < 2:
            return 0
        cmd = bytes(buf[i + 1 : i + 2])
        size = _ESC_FIXED.get(cmd)
        if size is None:
            self._marker(f"[ESC 0x{buf[i + 1]:02x}?]")
            return 2
        if len(buf) - i < 2 + size:
            return 0
        args = buf[i + 2 : i + 2 + size]
        if cmd == b"@":
            self.code_page = "cp437"
            actions.append(("init",))
        elif cmd == b"t":
            self.code_page = CODE_PAGES.get(args[0], f"unknown-{args[0]}")
        elif cmd == b"d":
            self._end_line()
            self.lines.extend([""] * max(0, args[0] - 1))
        elif cmd == b"p":
            actions.append(("kick", 2 if args[0] in (0, 48) else 5))
        return 2 + size

    def _gs(self, buf: bytearray, i: int, actions: list[tuple]) -> int:
        if len(buf) - i < 2:
            return 0
        cmd = bytes(buf[i + 1 : i + 2])
        if cmd == b"V":
            if len(buf) - i < 3:
                return 0
            m = buf[i + 2]
            size = 4 if m in (65, 66, 97, 98, 103, 104) else 3
            if len(buf) - i < size:
                return 0
            actions.append(("cut", self.take_lines()))
            return size
        if cmd == b"(":
            return self._gs_paren(buf, i)
        if cmd == b"k":
            return self._barcode(buf, i)
        if cmd == b"v":  # GS v 0 m xL xH yL yH d...: a raster image
            if len(buf) - i < 8:
                return 0
            x = buf[i + 4] | buf[i + 5] << 8
            y = buf[i + 6] | buf[i + 7] << 8
            if len(buf) - i < 8 + x * y:
                return 0
            self._marker(f"[IMAGE {x * 8}x{y}]")
            return 8 + x * y
        size = _GS_FIXED.get(cmd)
        if size is None:
            self._marker(f"[GS 0x{buf[i + 1]:02x}?]")
            return 2
        if len(buf) - i < 2 + size:
            return 0
        return 2 + size

    def _gs_paren(self, buf: bytearray, i: int) -> int:
        # GS ( fn pL pH data: the length says how much to skip, whatever fn is.
        if len(buf) - i < 5:
            return 0
        length = buf[i + 3] | buf[i + 4] << 8
        if len(buf) - i < 5 + length:
            return 0
        body = bytes(buf[i + 5 : i + 5 + length])
        if buf[i + 2] == ord("k") and len(body) >= 3 and body[0] == 49:  # cn 49: QR Code
            if body[1] == 80:  # fn 80: store the data
                self._qr_data = body[3:].decode("utf-8", "replace")
            elif body[1] == 81:  # fn 81: print what was stored
                self._marker(f"[QR {self._qr_data}]")
        return 5 + length

    def _barcode(self, buf: bytearray, i: int) -> int:
        if len(buf) - i < 3:
            return 0
        m = buf[i + 2]
        if m <= 6:  # NUL-terminated data
            end = buf.find(0, i + 3)
            if end < 0:
                return 0 if len(buf) - i < 256 else 3
            data, size = bytes(buf[i + 3 : end]), end + 1 - i
        else:
            if len(buf) - i < 4:
                return 0
            n = buf[i + 3]
            if len(buf) - i < 4 + n:
                return 0
            data, size = bytes(buf[i + 4 : i + 4 + n]), 4 + n
        text = data.decode("ascii", "replace")
        if m == 73 and text[:2] in ("{A", "{B", "{C"):
            text = text[2:]  # the code set selector is not part of the code
        self._marker(f"[BARCODE {BARCODE_NAMES.get(m, f'type-{m}')} {text}]")
        return size

    def _marker(self, marker: str) -> None:
        self._end_line(keep_empty=False)
        self.lines.append(marker)

    def _end_line(self, keep_empty: bool = True) -> None:
        if self._text or keep_empty:
            self.lines.append(self._decode(bytes(self._text)))
        self._text.clear()

    def _decode(self, raw: bytes) -> str:
        try:
            return codecs.decode(raw, self.code_page, "replace")
        except LookupError:
            return raw.decode("ascii", "replace")

    def reset(self) -> None:
        """Forget everything not yet printed, as a printer that lost its job does."""
        self._pending.clear()
        self._text.clear()
        self.lines = []
        self.code_page = "cp437"

    def take_lines(self) -> list[str]:
        self._end_line(keep_empty=False)
        lines, self.lines = self.lines, []
        return lines
