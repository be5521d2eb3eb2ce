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


def plain_text(document: Document, width: int) -> str:
    """The document as the lines a customer would read (for logs and tests)."""
    out: list[str] = []
    for block in document:
        if isinstance(block, Text):
            line = block.text
            if block.align == "center":
                line = line.center(width).rstrip()
            elif block.align == "right":
                line = line.rjust(width)
            out.append(line)
        elif isinstance(block, Columns):
            out.extend(layout_columns(block.left, block.right, width))
        elif isinstance(block, Rule):
            out.append(block.char * width)
        elif isinstance(block, QrCode):
            out.append(f"[QR {block.data}]")
        elif isinstance(block, Barcode):
            out.append(f"[BARCODE {block.symbology} {block.data}]")
        elif isinstance(block, Feed):
            out.extend([""] * block.lines)
        elif isinstance(block, Cut):
            out.append("[CUT]")
    return "\n".join(out) + "\n"
