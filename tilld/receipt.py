"""Swedish receipts and tickets as printable documents, from journal entries.

A receipt carries what Skatteverket asks of a cash register receipt
(SKVFS 2014:9, 3 §): the seller's name and organisation number, the
address of the point of sale, the date and time, an unbroken receipt
number, the till's identity, each article with quantity and amount, the
total, VAT per rate, and the means of payment. A copy says KOPIA, a
training receipt says ÖVNINGSKVITTO, and a sale made without the server says
so, because its tickets are not valid at the gates until synced.

Pure: journal body in, document out. The printer driver turns it into bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drivers.escpos.document import Block, Columns, Cut, Document, Feed, QrCode, Rule, Text

from .money import format_sek

METHOD_NAMES = {
    "cash": "Kontant",
    "card": "Kort",
    "swish": "Swish",
    "swish-manual": "Swish",
}


@dataclass(frozen=True)
class Seller:
    name: str
    org_number: str
    address: str
    till_id: str


@dataclass(frozen=True)
class PrintMarks:
    copy: bool = False
    reprint_attempt: int = 0  # >1: printed again after a printer fault
    unit_id: str = ""  # the control unit's manufacturing number (with a unit)
    control_code: str = ""  # what the unit answered for this receipt (or this copy)


def receipt_document(
    entry_type: str, body: dict[str, Any], created_at: str, seller: Seller, marks: PrintMarks
) -> Document:
    blocks: list[Block] = [*_header(seller)]
    title = "RETURKVITTO" if entry_type == "refund" else "KVITTO"
    if body.get("training"):
        blocks.append(Text("ÖVNINGSKVITTO", align="center", bold=True, large=True))
    if marks.copy:
        blocks.append(Text("KOPIA", align="center", bold=True, large=True))
    if marks.reprint_attempt > 1:
        blocks.append(
            Text(f"Ny utskrift efter skrivarfel ({marks.reprint_attempt})", align="center")
        )
    blocks += [
        Text(title, align="center", bold=True),
        Columns("Datum", _local_time(created_at)),
        Columns("Kvitto nr", str(body["receipt_no"])),
        Columns("Kassa", seller.till_id),
    ]
    if entry_type == "refund":
        blocks.append(Columns("Retur av kvitto nr", str(body["original_receipt_no"])))
    blocks.append(Rule())
    sign = -1 if entry_type == "refund" else 1
    for line in body["lines"]:
        blocks.append(Columns(line["name"], format_sek(sign * line["amount"])))
        if line["quantity"] != 1:
            blocks.append(Text(f"  {line['quantity']} st à {format_sek(line['unit_price'])}"))
    blocks += [
        Rule(),
        Columns("TOTALT SEK", format_sek(sign * body["total"]), bold=True),
        Feed(),
        Text("Moms %      Netto       Moms     Brutto"),
    ]
    for vat in body["vat"]:
        blocks.append(
            Text(
                f"{vat['rate']:>6} {format_sek(sign * vat['net']):>10} "
                f"{format_sek(sign * vat['vat']):>10} {format_sek(sign * vat['gross']):>10}"
            )
        )
    blocks.append(Feed())
    for payment in body["payments"]:
        blocks += _payment_lines(payment, sign)
    if _sold_offline(body) or _offline_card(body):
        blocks.append(Feed())
        blocks.append(Text("SÅLD OFFLINE", align="center", bold=True))
    if body.get("training"):
        blocks.append(Text("Övningskvitto - inget köp", align="center", bold=True))
    if marks.control_code:
        # SKVFS 2014:9: the unit's manufacturing number and the receipt's control code.
        blocks += [
            Feed(),
            Text(f"Kontrollenhet: {marks.unit_id}"),
            Text(f"Kontrollkod: {marks.control_code}"),
        ]
    blocks += [Feed(), Text("Tack för ditt besök!", align="center"), Cut()]
    return tuple(blocks)


def ticket_documents(body: dict[str, Any], created_at: str, seller: Seller) -> Document:
    """One ticket per code, each cut on its own, with its code as a QR code.

    A ticket sold while the server was unreachable is `pending` until the
    back-end accepts its sale; the gate would turn it away before that, so
    the ticket says so rather than letting a guest find out at the gate.
    """
    blocks: list[Block] = []
    pending = _sold_offline(body)
    for line in body["lines"]:
        for code in line.get("ticket_codes") or ():
            blocks += [
                Text(seller.name, align="center", bold=True),
                Text("BILJETT", align="center", bold=True, large=True),
                Text(line["name"], align="center"),
                Text(_local_time(created_at), align="center"),
                QrCode(code),
                Text(code, align="center"),
                Text(f"Kvitto nr {body['receipt_no']}", align="center"),
            ]
            if pending:
                blocks += [
                    Text("PRELIMINÄR BILJETT", align="center", bold=True),
                    Text("Gäller i entrén när kassan", align="center"),
                    Text("har kontakt med servern.", align="center"),
                ]
            blocks.append(Cut())
    return tuple(blocks)


def report_document(report: dict[str, Any], seller: Seller) -> Document:
    """An X or Z daily report on paper, with the items SKVFS 2014:9 7 kap. lists."""
    title = f"Z-DAGRAPPORT NR {report['z_no']}" if report["kind"] == "z" else "X-DAGRAPPORT"
    floats = report["float"]
    copies, discounts = report["copies"], report["discounts"]
    blocks: list[Block] = [
        *_header(seller),
        Text(title, align="center", bold=True, large=True),
        Columns("Datum", _local_time(report["printed_at"])),
        Columns("Kassa", report["till_id"]),
        Columns("Kontrollenhet", report.get("control_unit") or "-"),
        Columns("Period från", _local_time(report["period_start"] or "-")),
        Columns("Period till", _local_time(report["period_end"] or "-")),
        Rule(),
        Columns(f"Försäljning ({report['sales']} kvitton)", format_sek(report["gross_sales"])),
        Columns(f"Returer ({report['refunds']})", format_sek(-report["gross_refunds"])),
        Columns("Netto", format_sek(report["net"]), bold=True),
        Columns("Antal kvitton", str(report["receipts"])),
        Rule(),
        Text("Moms %      Netto       Moms     Brutto"),
    ]
    for vat in report["vat"]:
        blocks.append(
            Text(
                f"{vat['rate']:>6} {format_sek(vat['net']):>10} "
                f"{format_sek(vat['vat']):>10} {format_sek(vat['gross']):>10}"
            )
        )
    blocks.append(Rule())
    for method, amount in report["payments"].items():
        blocks.append(Columns(METHOD_NAMES.get(method, method), format_sek(amount)))
    blocks += [
        Rule(),
        Columns("Växelkassa vid start", format_sek(floats["start"])),
        *(
            Columns(f"  ändrad {_local_time(f['at'])}", format_sek(f["amount"]))
            for f in report["float_changes"]
        ),
        Columns("Växelkassa vid slut", format_sek(floats["end"])),
        Columns("Lådöppningar utan köp", str(report["drawer_openings_without_sale"])),
        Columns(f"Kopior ({copies['count']})", format_sek(copies["amount"])),
        Columns(
            f"Övningskvitton ({report['training_receipts']})", format_sek(report["training_amount"])
        ),
        Columns(f"Rabatter ({discounts['count']})", format_sek(discounts["amount"])),
        Columns("Prisändringar", str(report["price_changes"])),
        Columns("Makulerade köp", str(report["voids"])),
        Rule(),
        Columns("Grand total försäljning", format_sek(report["grand_total_sales"])),
        Columns("Grand total returer", format_sek(-report["grand_total_refunds"])),
        Columns("Grand total netto", format_sek(report["grand_total"]), bold=True),
        *_terminal_lines(report.get("terminal")),
        Cut(),
    ]
    return tuple(blocks)


def _terminal_lines(terminal: dict[str, Any] | None) -> list[Block]:
    """A Z's card terminal end of day: its batch totals, or why it is not closed."""
    if terminal is None:
        return []
    if not terminal["closed"]:
        return [Rule(), Text("Kortterminal: dagen ej avslutad"), Text(f"  {terminal['why']}")]
    return [
        Rule(),
        Text("Kortterminal: dagen avslutad"),
        Columns(f"Kortköp ({terminal['count']})", format_sek(terminal["total"])),
        Columns("Offline skickade", str(terminal["sent"])),
    ]


def printer_test_page(seller: Seller) -> Document:
    return (
        *_header(seller),
        Text("TESTUTSKRIFT", align="center", bold=True, large=True),
        Text("Å Ä Ö å ä ö é ü €", align="center"),
        Columns("Vänster", "Höger"),
        Rule(),
        QrCode("tilld printer test"),
        Cut(),
    )


def _header(seller: Seller) -> list[Block]:
    blocks: list[Block] = [Text(seller.name, align="center", bold=True, large=True)]
    if seller.org_number:
        blocks.append(Text(f"Org.nr {seller.org_number}", align="center"))
    for part in (p.strip() for p in seller.address.split(",")):
        if part:
            blocks.append(Text(part, align="center"))
    blocks.append(Feed())
    return blocks


def _payment_lines(payment: dict[str, Any], sign: int) -> list[Block]:
    name = METHOD_NAMES.get(payment["method"], payment["method"])
    card = payment.get("card")
    if card:
        name = f"Kort {card.get('brand', '').title()}".strip()
    lines: list[Block] = []
    if payment["method"] == "cash" and sign > 0:
        lines.append(Columns(f"{name} mottaget", format_sek(payment.get("tendered", 0))))
        lines.append(Columns("Växel", format_sek(payment.get("change", 0))))
    else:
        lines.append(Columns(name, format_sek(sign * payment["amount"])))
    if card:
        # Brand and masked PAN only: a receipt must never carry the full number.
        lines.append(Text(f"  {card.get('masked_pan', '')}"))
        if card.get("auth_code"):
            lines.append(Text(f"  Godkänd {card['auth_code']}"))
        if card.get("offline"):
            lines.append(Text("  Kortet godkänt offline"))
        if card.get("slip"):
            lines.append(Rule("."))
            lines += [Text(line) for line in card["slip"]]
            lines.append(Rule("."))
    return lines


def _sold_offline(body: dict[str, Any]) -> bool:
    # Without the server the sale is not yet known to the back-end, so its
    # tickets are pending at the gates until sync delivers it.
    return body.get("mode", "online") not in ("online", "server-only")


def _offline_card(body: dict[str, Any]) -> bool:
    return any((p.get("card") or {}).get("offline") for p in body["payments"])


def _local_time(created_at: str) -> str:
    # The journal keeps the offset the till had at the sale; that is the
    # local time the customer saw, so print it as it was recorded.
    try:
        return datetime.fromisoformat(created_at).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return created_at
