"""Keyboard-wedge decoding from Linux key codes, independent of the keyboard layout.

A wedge scanner types its code as a US keyboard would (the factory default
of every common model). The kernel reports *physical* key codes, so reading
them directly and mapping with the US table gives the right characters even
when the till's console or desktop uses a Swedish or French layout, where the
same keys would otherwise become `+`, `&` or `à` instead of digits.

Scanners set to "Alt + keypad" mode type every character as its code point
on the numeric keypad while Alt is held; that is decoded too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EV_KEY = 1
KEY_RELEASE, KEY_PRESS, KEY_REPEAT = 0, 1, 2

KEY_ENTER, KEY_KPENTER, KEY_TAB = 28, 96, 15
KEY_LEFTSHIFT, KEY_RIGHTSHIFT = 42, 54
KEY_LEFTALT, KEY_RIGHTALT = 56, 100
KEY_LEFTCTRL, KEY_RIGHTCTRL = 29, 97

# Linux input-event-codes.h key code -> (unshifted, shifted) on a US layout.
_US: dict[int, tuple[str, str]] = {
    2: ("1", "!"), 3: ("2", "@"), 4: ("3", "#"), 5: ("4", "$"), 6: ("5", "%"),
    7: ("6", "^"), 8: ("7", "&"), 9: ("8", "*"), 10: ("9", "("), 11: ("0", ")"),
    12: ("-", "_"), 13: ("=", "+"),
    16: ("q", "Q"), 17: ("w", "W"), 18: ("e", "E"), 19: ("r", "R"), 20: ("t", "T"),
    21: ("y", "Y"), 22: ("u", "U"), 23: ("i", "I"), 24: ("o", "O"), 25: ("p", "P"),
    26: ("[", "{"), 27: ("]", "}"),
    30: ("a", "A"), 31: ("s", "S"), 32: ("d", "D"), 33: ("f", "F"), 34: ("g", "G"),
    35: ("h", "H"), 36: ("j", "J"), 37: ("k", "K"), 38: ("l", "L"),
    39: (";", ":"), 40: ("'", '"'), 41: ("`", "~"), 43: ("\\", "|"),
    44: ("z", "Z"), 45: ("x", "X"), 46: ("c", "C"), 47: ("v", "V"), 48: ("b", "B"),
    49: ("n", "N"), 50: ("m", "M"), 51: (",", "<"), 52: (".", ">"), 53: ("/", "?"),
    57: (" ", " "),
    55: ("*", "*"), 74: ("-", "-"), 78: ("+", "+"), 83: (".", "."), 98: ("/", "/"),
}  # fmt: skip

# Keypad digits, also used for Alt + keypad code points.
_KEYPAD = {82: 0, 79: 1, 80: 2, 81: 3, 75: 4, 76: 5, 77: 6, 71: 7, 72: 8, 73: 9}

_SHIFTS = {KEY_LEFTSHIFT, KEY_RIGHTSHIFT}
_ALTS = {KEY_LEFTALT, KEY_RIGHTALT}
_CTRLS = {KEY_LEFTCTRL, KEY_RIGHTCTRL}
_ENDS = {KEY_ENTER, KEY_KPENTER, KEY_TAB}

# Ctrl + a letter is how wedge scanners type ASCII control characters; only
# the GS1 group separator (Ctrl + ]) belongs in a code.
_CTRL_CHARS = {27: "\x1d"}


@dataclass
class KeyDecoder:
    """Feed (type, code, value) input events; get each completed line.

    `max_length` bounds the buffer so a key stuck down cannot grow it.
    """

    max_length: int = 512
    _held: set[int] = field(default_factory=set)
    _chars: list[str] = field(default_factory=list)
    _alt_digits: list[int] = field(default_factory=list)
    _unknown: int = 0

    def feed(self, type_: int, code: int, value: int) -> str | None:
        """Returns the line (without its end key) when an end key is pressed."""
        if type_ != EV_KEY:
            return None
        if value == KEY_RELEASE:
            self._held.discard(code)
            if code in _ALTS and not (self._held & _ALTS):
                self._flush_alt_digits()
            return None
        if value == KEY_REPEAT:
            # Autorepeat from a scanner is line noise, not a doubled character.
            return None
        self._held.add(code)
        if code in _SHIFTS or code in _ALTS or code in _CTRLS:
            return None
        if code in _ENDS:
            line = "".join(self._chars)
            if self._unknown:
                line += "\ufffd" * self._unknown
            self._chars.clear()
            self._unknown = 0
            return line
        if self._held & _ALTS and code in _KEYPAD:
            self._alt_digits.append(_KEYPAD[code])
            return None
        if self._held & _CTRLS:
            self._append(_CTRL_CHARS.get(code))
            return None
        if code in _KEYPAD:
            self._append(str(_KEYPAD[code]))
            return None
        pair = _US.get(code)
        shifted = bool(self._held & _SHIFTS)
        self._append(pair[1] if pair and shifted else pair[0] if pair else None)
        return None

    def _append(self, char: str | None) -> None:
        if char is None:
            # Kept as a replacement character so the line is reported as garbage.
            self._unknown += 1
        elif len(self._chars) < self.max_length + 1:
            self._chars.append(char)

    def _flush_alt_digits(self) -> None:
        if not self._alt_digits:
            return
        point = 0
        for digit in self._alt_digits[-7:]:
            point = point * 10 + digit
        self._alt_digits.clear()
        # Alt codes below 256 are the OEM code page on Windows-configured
        # scanners; Latin-1 is its common subset for letters like Å, Ä, Ö.
        self._append(chr(point) if 0 < point < 0x110000 else None)
