"""A printed document as plain values: what to print, not how a printer encodes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Align = Literal["left", "center", "right"]


@dataclass(frozen=True)
class Text:
    text: str
    align: Align = "left"
    bold: bool = False
    large: bool = False


@dataclass(frozen=True)
class Columns:
    """A left text and a right-aligned text on one line (an item and its amount)."""

    left: str
    right: str
    bold: bool = False


@dataclass(frozen=True)
class Rule:
    char: str = "-"


@dataclass(frozen=True)
class QrCode:
    data: str
    size: int = 6


@dataclass(frozen=True)
class Barcode:
    data: str
    symbology: Literal["CODE128", "CODE39", "EAN13"] = "CODE128"


@dataclass(frozen=True)
class Feed:
    lines: int = 1


@dataclass(frozen=True)
class Cut:
    pass


Block = Text | Columns | Rule | QrCode | Barcode | Feed | Cut
Document = tuple[Block, ...]


def layout_columns(left: str, right: str, width: int) -> list[str]:
    """Fit a left and a right text into `width`, wrapping the left when needed."""
    room = width - len(right) - 1
    if room < 1:
        return [left[:width], right.rjust(width)]
    lines: list[str] = []
    while len(left) > room:
        cut = left.rfind(" ", 0, room + 1)
        cut = cut if cut > 0 else room
        lines.append(left[:cut].rstrip())
        left = left[cut:].lstrip()
    lines.append(left.ljust(room) + " " + right)
    return lines
