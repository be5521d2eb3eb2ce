"""The printer's real-time status (DLE EOT n), read as plain values.

Each answer is one byte whose bits 1 and 4 are always set and bits 0 and 7
always clear (ESC/POS application programming guide, DLE EOT); anything
else is not a status byte — line noise, or print data echoed back — and is
rejected rather than guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass

DLE_EOT = b"\x10\x04"
PRINTER_STATUS, OFFLINE_CAUSE, ERROR_CAUSE, PAPER_SENSOR = 1, 2, 3, 4
QUERIES = (PRINTER_STATUS, OFFLINE_CAUSE, ERROR_CAUSE, PAPER_SENSOR)

FIXED_MASK, FIXED_BITS = 0x93, 0x12


class StatusByteError(ValueError):
    pass


def query(n: int) -> bytes:
    return DLE_EOT + bytes([n])


def check(byte: int) -> int:
    if byte & FIXED_MASK != FIXED_BITS:
        raise StatusByteError(f"0x{byte:02x} is not an ESC/POS status byte")
    return byte


@dataclass(frozen=True)
class PrinterStatus:
    offline: bool = False
    cover_open: bool = False
    paper_out: bool = False
    paper_low: bool = False
    error: bool = False
    drawer_open: bool = False

    @property
    def ready(self) -> bool:
        return not (self.offline or self.cover_open or self.paper_out or self.error)

    @property
    def detail(self) -> str:
        # The most useful thing to tell a cashier first: a lid left open
        # also stops the paper sensor from reading.
        if self.cover_open:
            return "cover-open"
        if self.paper_out:
            return "paper-out"
        if self.error:
            return "printer-error"
        if self.offline:
            return "offline"
        if self.paper_low:
            return "paper-low"
        return ""


def parse(answers: dict[int, int]) -> PrinterStatus:
    """Combine the answers to DLE EOT 1, 2, 3 and 4 (missing ones count as fine)."""
    printer = check(answers.get(PRINTER_STATUS, FIXED_BITS))
    offline = check(answers.get(OFFLINE_CAUSE, FIXED_BITS))
    error = check(answers.get(ERROR_CAUSE, FIXED_BITS))
    paper = check(answers.get(PAPER_SENSOR, FIXED_BITS))
    return PrinterStatus(
        offline=bool(printer & 0x08),
        drawer_open=bool(printer & 0x04),
        cover_open=bool(offline & 0x04),
        paper_out=bool(offline & 0x20) or bool(paper & 0x60),
        paper_low=bool(paper & 0x0C),
        error=bool(offline & 0x40) or bool(error & 0x68),
    )


def encode(status: PrinterStatus) -> dict[int, int]:
    """The status bytes a printer in this state answers (for the simulator)."""
    return {
        PRINTER_STATUS: FIXED_BITS
        | (0x08 if not status.ready else 0)
        | (0x04 if status.drawer_open else 0),
        OFFLINE_CAUSE: FIXED_BITS
        | (0x04 if status.cover_open else 0)
        | (0x20 if status.paper_out else 0)
        | (0x40 if status.error else 0),
        ERROR_CAUSE: FIXED_BITS | (0x40 if status.error else 0),
        PAPER_SENSOR: FIXED_BITS
        | (0x60 if status.paper_out else 0)
        | (0x0C if status.paper_low else 0),
    }
