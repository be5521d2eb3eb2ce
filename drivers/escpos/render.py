"""Documents to ESC/POS bytes, with python-escpos as the encoder.

python-escpos knows the command set and the printer profiles; its Dummy
printer collects the bytes, which our own links then send without blocking
the event loop (python-escpos's transports block).

Swedish text needs a code page with Å, Ä and Ö: CP858 (CP850 with the euro
sign, ESC t 19 on Epson-compatible printers) is the default. The code page
is selected once at the start of every job, so a printer left on another
page by someone else still prints our receipts right.
"""

from __future__ import annotations

import contextlib
import io

from .document import Barcode, Columns, Cut, Document, Feed, QrCode, Rule, Text, layout_columns
from .profiles import import_escpos_printer

# Typography that article names bring in from the back-end but that no
# ESC/POS code page has; the plain equivalent reads the same on paper.
PLAIN = str.maketrans(
    {"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"',
     "\u201d": '"', "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " "}
)  # fmt: skip

ESC = b"\x1b"
GS = b"\x1d"
INITIALISE = ESC + b"@"


def printable(text: str, code_page: str) -> str:
    """The text as the code page can print it: typography made plain, the rest as '?'."""
    text = text.translate(PLAIN)
    return text.encode(code_page, "replace").decode(code_page)


def _dummy():
    # python-escpos is imported when first needed, not at start-up: even with
    # its profiles cached (profiles.py) it costs a tenth of a second.
    return import_escpos_printer().Dummy()


def preload() -> None:
    """Import python-escpos now (from a thread), so the first receipt does not wait."""
    _dummy()


def render(document: Document, *, width: int = 48, code_page: str = "CP858") -> bytes:
    def fit(text: str) -> str:
        return printable(text, code_page)

    printer = _dummy()
    printer._raw(INITIALISE)
    printer.charcode(code_page)
    for block in document:
        if isinstance(block, Text):
            printer.set(
                align=block.align,
                bold=block.bold,
                double_height=block.large,
                double_width=block.large,
                normal_textsize=not block.large,
            )
            printer.text(fit(block.text) + "\n")
        elif isinstance(block, Columns):
            printer.set(align="left", bold=block.bold, normal_textsize=True)
            lines = layout_columns(fit(block.left), fit(block.right), width)
            printer.text("".join(line + "\n" for line in lines))
        elif isinstance(block, Rule):
            printer.set(align="left", bold=False, normal_textsize=True)
            printer.text(fit(block.char) * width + "\n")
        elif isinstance(block, QrCode):
            printer.qr(block.data, native=True, size=block.size, center=False)
        elif isinstance(block, Barcode):
            # python-escpos announces its barcode renderer on stdout, which
            # under systemd would end up in the journal once per ticket.
            with contextlib.redirect_stdout(io.StringIO()):
                data = "{B" + block.data if block.symbology == "CODE128" else block.data
                printer.barcode(data, block.symbology, pos="BELOW", function_type="B")
        elif isinstance(block, Feed):
            printer.text("\n" * block.lines)
        elif isinstance(block, Cut):
            printer.cut()
    printer.set(align="left", bold=False, normal_textsize=True)
    return printer.output


# ESC p m t1 t2 ("generate pulse"): m = 0 for connector pin 2, 1 for pin 5;
# on and off for 50 x 2 ms, python-escpos's CD_KICK_2 and CD_KICK_5. Written out
# here: the kick is sent from the event loop, and the first use of python-escpos
# imports it, which took 1.5 s on a loaded till and held every sale and scan.
DRAWER_PULSES = {2: ESC + b"p\x00" + bytes([50, 50]), 5: ESC + b"p\x01" + bytes([50, 50])}


def drawer_kick(pin: int = 2) -> bytes:
    """ESC p m t1 t2: pulse the drawer solenoid (connector pin 2 or 5)."""
    return DRAWER_PULSES[pin]
