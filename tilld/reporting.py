"""Reports and exports read from the journal: X and Z reports, the export, verify, pending.

A Z report is itself journaled (numbered, with its totals read in the
transaction that appends it); everything else only reads.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .config import Settings
from .export_columns import EXPORT_FIELDS
from .journal import Entry, Journal, float_change, now_with_offset, since_last
from .outbox import Outbox
from .reports import period_totals

log = logging.getLogger("tilld.reports")

# How long a Z report waits for the card terminal's end of day, at most: a
# terminal forwarding a day's stored payments takes seconds, and one that
# takes longer must not keep the day from closing (the Z says so instead).
TERMINAL_CLOSE_S = 60.0


class Reports:
    def __init__(
        self,
        settings: Callable[[], Settings],
        journal: Journal,
        outbox: Outbox,
        unit_id: Callable[[], str | None] = lambda: None,
        print_report: Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]] | None = None,
        close_terminal: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        """``unit_id``: the control unit's manufacturing number, if a unit is connected;
        ``print_report`` puts a report on the receipt printer (tilld/printing.py);
        ``close_terminal`` closes the card terminal's batch (tilld/cardpay)."""
        self.settings = settings
        self.journal = journal
        self.outbox = outbox
        self.unit_id = unit_id
        self.print_report = print_report
        self.close_terminal = close_terminal

    async def pending(self, limit: int) -> dict[str, Any]:
        listed = await self.journal.pending(limit)
        return {"counts": self.outbox.snapshot(), **listed}

    async def journal_verify(self) -> dict[str, Any]:
        return await self.journal.verify()

    async def journal_export(self, since_seq: int, fmt: str, limit: int) -> dict[str, Any]:
        entries = await self.journal.page(since_seq, limit)
        render: Callable[[list[Entry], bool], str] = _as_jsonl if fmt == "jsonl" else _as_csv
        next_seq = entries[-1].seq if len(entries) == limit else None
        return {
            "format": fmt,
            "count": len(entries),
            "content": render(entries, since_seq == 0),
            "next_since_seq": next_seq,
        }

    async def report(self, kind: str) -> dict[str, Any]:
        till = self.settings().till
        header = {
            "kind": kind,
            "till_id": till.id,
            "seller": till.seller_name,
            "org_number": till.org_number,
            "printed_at": now_with_offset(),
        }
        unit_id = self.unit_id()

        def totals(last_z: Entry | None, since: list[Entry]) -> dict[str, Any]:
            figures = period_totals(last_z, since)
            # The unit connected now, when no receipt of the period named one.
            figures["control_unit"] = figures["control_unit"] or unit_id
            return figures

        fill = since_last("z-report", totals)
        if kind == "x":
            report = {**header, **await self.journal.read_fill(fill)}
        else:
            # The terminal's batch first, so the Z records how it went.
            header["terminal"] = await self._close_terminal()
            # A Z's totals are read in the transaction that appends it (see since_last).
            entry = await self.journal.append("z-report", header, number="z_no", fill=fill)
            report = {**entry.body, "seq": entry.seq}
        if self.print_report is not None:
            printed = await self.print_report(report)
            if printed is not None:
                report["printed"] = printed
        return report

    async def _close_terminal(self) -> dict[str, Any]:
        """The card terminal's end of day for a Z; a terminal that cannot is
        reported in the Z, and never keeps the day from closing."""
        if self.close_terminal is None:
            return {"closed": False, "why": "no card terminal is configured"}
        try:
            result = await asyncio.wait_for(self.close_terminal(), TERMINAL_CLOSE_S)
        except TimeoutError:
            result = {
                "closed": False,
                "why": f"the card terminal did not close its batch within {TERMINAL_CLOSE_S:g} s",
            }
        except Exception as exc:  # the Z stands whatever the terminal does
            log.exception("the card terminal's end of day failed")
            result = {"closed": False, "why": f"the card terminal's end of day failed: {exc}"}
        if not result["closed"]:
            log.warning("Z report: the card terminal's batch is not closed: %s", result["why"])
        return result

    async def register_float(self, amount: int, note: str) -> dict[str, Any]:
        """The float (växelkassa) now in the drawer: at the start of the day, and each change.

        SKVFS 2014:10 4 kap. 2 § wants both registered; the journal keeps the
        amount, what it was before and the change, and the reports list them."""
        entry = await self.journal.append(
            "float", {"amount": amount, "note": note}, fill=float_change(amount)
        )
        return {**entry.body, "seq": entry.seq}


def _as_jsonl(entries: list[Entry], _first_page: bool) -> str:
    return "".join(
        json.dumps(e.as_dict(), ensure_ascii=False, separators=(",", ":")) + "\n" for e in entries
    )


def _as_csv(entries: list[Entry], first_page: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if first_page:
        writer.writerow(EXPORT_FIELDS)
    for e in entries:
        body = json.dumps(e.body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        writer.writerow((e.seq, e.uuid, e.type, e.created_at, e.prev_hash, e.hash, body))
    return out.getvalue()
