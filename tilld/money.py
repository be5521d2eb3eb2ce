"""Money arithmetic in integer öre, and Swedish VAT extracted from gross prices.

Shelf prices in Sweden include VAT, so VAT is derived from the gross amount.
It is computed once per rate over the summed gross (not per line) so the
receipt's VAT lines add up exactly the way the tax office expects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

VAT_RATES = (25, 12, 6, 0)


def vat_of_gross(gross: int, rate: int) -> int:
    """VAT contained in a gross amount at ``rate`` percent, rounded half away from zero."""
    if rate == 0 or gross == 0:
        return 0
    sign = -1 if gross < 0 else 1
    numerator = abs(gross) * rate * 2
    denominator = (100 + rate) * 2
    return sign * ((numerator + 100 + rate) // denominator)


@dataclass(frozen=True)
class VatLine:
    rate: int
    gross: int
    net: int
    vat: int

    def as_dict(self) -> dict[str, int]:
        return {"rate": self.rate, "gross": self.gross, "net": self.net, "vat": self.vat}


def vat_breakdown(amounts: Iterable[tuple[int, int]]) -> list[VatLine]:
    """Group (gross amount, rate) pairs into one VAT line per rate, highest rate first."""
    gross_by_rate: dict[int, int] = defaultdict(int)
    for gross, rate in amounts:
        gross_by_rate[rate] += gross
    lines = []
    for rate in sorted(gross_by_rate, reverse=True):
        gross = gross_by_rate[rate]
        vat = vat_of_gross(gross, rate)
        lines.append(VatLine(rate=rate, gross=gross, net=gross - vat, vat=vat))
    return lines


def format_sek(ore: int) -> str:
    """1234567 -> '12 345,67' (Swedish grouping and decimal comma), for humans only."""
    sign = "-" if ore < 0 else ""
    kronor, rest = divmod(abs(ore), 100)
    grouped = f"{kronor:,}".replace(",", "\u00a0")
    return f"{sign}{grouped},{rest:02d}"
