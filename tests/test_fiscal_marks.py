"""KOPIA and ÖVNINGSKVITTO are printed at least twice the size of the total's figures.

SKVFS 2014:9 asks for the marks at least twice the size of the total's
figures. The receipt is rendered to ESC/POS bytes as the printer gets them,
and the character size in effect for each printed line is read back from the
size commands themselves (ESC ! n and GS ! n), not from the document.
"""

from __future__ import annotations

from drivers.escpos.render import render
from tilld.receipt import PrintMarks, Seller, receipt_document

ESC, GS, LF = 0x1B, 0x1D, 0x0A
SELLER = Seller("Testmuseet AB", "556677-8899", "Storgatan 1", "till-1")
BODY = {
    "receipt_no": 7,
    "lines": [
        {
            "name": "Ost",
            "amount": 6500,
            "quantity": 1,
            "unit_price": 6500,
            "vat_rate": 12,
            "kind": "goods",
        }
    ],
    "total": 6500,
    "vat": [{"rate": 12, "net": 5804, "vat": 696, "gross": 6500}],
    "payments": [{"method": "cash", "amount": 6500, "tendered": 10000, "change": 3500}],
    "mode": "online",
}
# Parameter bytes of the other ESC and GS commands the renderer sends.
ESC_PARAMS = {ord("@"): 0, ord("t"): 1, ord("E"): 1, ord("a"): 1, ord("d"): 1, ord("-"): 1}
GS_PARAMS = {ord("V"): 1, ord("B"): 1}


def sized_lines(data: bytes) -> list[tuple[str, int, int]]:
    """(text, width multiple, height multiple) of each printed line, from the bytes."""
    width = height = 1
    lines: list[tuple[str, int, int]] = []
    text = bytearray()
    size_at_text: tuple[int, int] | None = None
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == ESC:
            command = data[i + 1]
            if command == ord("!"):  # ESC ! n: bit 4 double height, bit 5 double width
                n = data[i + 2]
                width, height = (2 if n & 0x20 else 1), (2 if n & 0x10 else 1)
                i += 3
                continue
            i += 2 + ESC_PARAMS[command]
            continue
        if byte == GS:
            command = data[i + 1]
            if command == ord("!"):  # GS ! n: high nibble width - 1, low nibble height - 1
                n = data[i + 2]
                width, height = (n >> 4) + 1, (n & 0x0F) + 1
                i += 3
                continue
            i += 2 + GS_PARAMS[command]
            continue
        if byte == LF:
            if text:
                assert size_at_text is not None
                lines.append((text.decode("cp858"), *size_at_text))
            text, size_at_text = bytearray(), None
        else:
            if size_at_text is None:
                size_at_text = (width, height)
            text.append(byte)
        i += 1
    return lines


def _line(lines: list[tuple[str, int, int]], start: str) -> tuple[str, int, int]:
    (found,) = [line for line in lines if line[0].strip().startswith(start)]
    return found


def test_kopia_and_ovningskvitto_are_twice_the_size_of_the_total() -> None:
    document = receipt_document(
        "sale",
        {**BODY, "training": True},
        "2026-11-27T10:00:00+01:00",
        SELLER,
        PrintMarks(copy=True),
    )
    lines = sized_lines(render(document, width=42))
    _, total_w, total_h = _line(lines, "TOTALT SEK")
    for mark in ("KOPIA", "ÖVNINGSKVITTO"):
        _, mark_w, mark_h = _line(lines, mark)
        assert mark_w >= 2 * total_w and mark_h >= 2 * total_h, (mark, lines)


def test_the_reader_sees_a_mark_printed_at_the_total_size() -> None:
    """The check can fail: a mark as large as the total is caught."""
    data = render(
        receipt_document("sale", BODY, "2026-11-27T10:00", SELLER, PrintMarks()), width=42
    )
    lines = sized_lines(data)
    assert _line(lines, "TOTALT SEK")[1:] == (1, 1)
    assert _line(lines, "Testmuseet AB")[1:] == (2, 2)  # the seller's name is large
