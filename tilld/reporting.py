"""Reports and exports read from the journal: X and Z reports, the export, verify, pending.

A Z report is itself journaled (numbered, with its totals read in the
transaction that appends it); everything else only reads.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from .config import Settings
from .export_columns import EXPORT_FIELDS
from .journal import Entry, Journal, now_with_offset, since_last
from .outbox import Outbox
from .reports import period_totals


class Reports:
    def __init__(self, settings: Callable[[], Settings], journal: Journal, outbox: Outbox) -> None:
        self.settings = settings
        self.journal = journal
        self.outbox = outbox

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
        totals = since_last("z-report", period_totals)
        if kind == "x":
            return {**header, **await self.journal.read_fill(totals)}
        # A Z's totals are read in the transaction that appends it (see since_last).
        entry = await self.journal.append("z-report", header, number="z_no", fill=totals)
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
