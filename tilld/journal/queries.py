"""The reads a cashier, a report or tillctl waits for.

Each runs on one of the two reader threads, never on the writer: lookups a
cashier waits for (a receipt, a sale, a print job) on the reader, long walks
(scans, pending, verify, export pages, an X report's figures) on the bulk
reader, so none of them holds up a sale or another's lookup.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..chain import first_broken_seq
from .entry import Entry, Fill
from .rows import body_text, chain_view, lookup_key, uuid_text
from .schema import COLUMNS, TICKET_COLUMNS
from .store import JournalStore


class Queries(JournalStore):
    """Receipts, sales, scans, pending entries, print jobs, verification and export."""

    async def print_jobs_of(self, receipt_no: int) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            rows = (
                self._read()
                .execute(
                    "SELECT job_id, copy, state, attempts, detail, updated_at FROM print_jobs"
                    " WHERE receipt_no = ? ORDER BY rowid",
                    (receipt_no,),
                )
                .fetchall()
            )
            keys = ("job_id", "copy", "state", "attempts", "detail", "updated_at")
            return [
                {k: (bool(v) if k == "copy" else v) for k, v in zip(keys, row, strict=True)}
                for row in rows
            ]

        return await self._on_reader(read)

    async def scans(self, state: str | None, limit: int) -> list[dict[str, Any]]:
        """Scans, newest first, with their registration result (None while pending)."""

        def read() -> list[dict[str, Any]]:
            where = {
                None: "",
                "pending": " AND r.status IS NULL",
                "registered": " AND r.status = 'registered'",
                "rejected": " AND r.status IS NOT NULL AND r.status != 'registered'",
            }[state]
            rows = self._read().execute(
                "SELECT e.seq, e.uuid, e.body, r.status, r.detail, r.at FROM entries e"
                " LEFT JOIN scan_results r USING (seq) WHERE e.type = 'scan'"
                f"{where} ORDER BY e.seq DESC LIMIT ?",
                (limit,),
            )
            scans = []
            for seq, uuid, body, status, detail, at in rows:
                data = json.loads(body_text(body))
                scans.append(
                    {
                        "seq": seq,
                        "scan_id": uuid_text(uuid),
                        "code": data["code"],
                        "scanned_at": data["scanned_at"],
                        "local_check": data.get("local_check"),
                        "state": "pending" if status is None else status,
                        "detail": detail,
                        "registered_at": at,
                    }
                )
            return scans

        return await self._on_bulk(read)

    async def pending(self, limit: int) -> dict[str, list[dict[str, Any]]]:
        """The oldest unsynced entries and pending tickets, as the offline icon lists them."""

        def read() -> dict[str, list[dict[str, Any]]]:
            db = self._read()
            entries = [
                _summary(Entry.from_row(row), status, reason)
                for *row, status, reason in db.execute(
                    f"SELECT {', '.join('e.' + c for c in COLUMNS.split(', '))},"
                    " r.status, r.reason FROM entries e LEFT JOIN sync_results r USING (seq)"
                    " WHERE r.status IS NULL OR r.status NOT IN ('accepted', 'duplicate')"
                    " ORDER BY e.seq LIMIT ?",
                    (limit,),
                )
            ]
            tickets = [
                dict(zip(TICKET_COLUMNS, row, strict=True))
                for row in db.execute(
                    f"SELECT {', '.join(TICKET_COLUMNS)} FROM tickets"
                    " WHERE state = 'pending' ORDER BY seq LIMIT ?",
                    (limit,),
                )
            ]
            return {"entries": entries, "tickets": tickets}

        return await self._on_bulk(read)

    async def find_receipt(self, receipt_no: int) -> Entry | None:
        def read() -> Entry | None:
            row = (
                self._read()
                .execute(
                    f"SELECT {COLUMNS} FROM entries WHERE receipt_no = ?",
                    (receipt_no,),
                )
                .fetchone()
            )
            return Entry.from_row(row) if row else None

        return await self._on_reader(read)

    async def find_sale(self, sale_id: str) -> Entry | None:
        """The completed or voided sale with this id, if the journal has one."""

        def read() -> Entry | None:
            row = (
                self._read()
                .execute(
                    f"SELECT {COLUMNS} FROM entries WHERE sale_id = ?",
                    (lookup_key("sale_id", sale_id),),
                )
                .fetchone()
            )
            return Entry.from_row(row) if row else None

        return await self._on_reader(read)

    async def last_of(self, type_: str) -> Entry | None:
        def read() -> Entry | None:
            row = (
                self._read()
                .execute(
                    f"SELECT {COLUMNS} FROM entries WHERE type = ? ORDER BY seq DESC LIMIT 1",
                    (type_,),
                )
                .fetchone()
            )
            return Entry.from_row(row) if row else None

        return await self._on_reader(read)

    async def scanned_codes(self, codes: list[str]) -> list[str]:
        """Which of ``codes`` were scanned at this till's entrance (used tickets)."""

        def read() -> list[str]:
            db = self._read()
            return [
                code
                for code in codes
                if db.execute(
                    "SELECT 1 FROM entries WHERE code = ? LIMIT 1",
                    (code,),
                ).fetchone()
            ]

        return await self._on_reader(read)

    async def refunds_of(self, receipt_no: int) -> list[Entry]:
        def read() -> list[Entry]:
            rows = self._read().execute(
                f"SELECT {COLUMNS} FROM entries WHERE original_receipt_no = ? ORDER BY seq",
                (receipt_no,),
            )
            return [Entry.from_row(row) for row in rows]

        return await self._on_reader(read)

    async def read_fill(self, fill: Fill) -> dict[str, Any]:
        """What ``fill`` reads, from one snapshot on the bulk reader (an X report's figures)."""

        def read() -> dict[str, Any]:
            db = self._read()
            db.execute("BEGIN")
            try:
                return fill(db)
            finally:
                db.execute("COMMIT")

        return await self._on_bulk(read)

    async def verify(self) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            def walk() -> Iterator[dict[str, Any]]:
                for row in self._read().execute(f"SELECT {COLUMNS} FROM entries ORDER BY seq"):
                    yield chain_view(row)

            bad = first_broken_seq(walk())
            # The walk stops at the first bad entry; the count covers them all.
            count = self._read().execute("SELECT count(*) FROM entries").fetchone()[0]
            # A chain that holds can still have lost its end or been rewritten whole:
            # the head file and the back-end say so (integrity.py).
            integrity = self.integrity
            result: dict[str, Any] = {
                "ok": bad is None and integrity.ok,
                "entries": count,
                "integrity": integrity.as_dict(),
            }
            if bad is not None:
                result["first_bad_seq"] = bad
            return result

        return await self._on_bulk(run)

    async def page(self, since_seq: int, limit: int) -> list[Entry]:
        def read() -> list[Entry]:
            rows = self._read().execute(
                f"SELECT {COLUMNS} FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
                (since_seq, limit),
            )
            return [Entry.from_row(r) for r in rows]

        return await self._on_bulk(read)


def _summary(entry: Entry, status: str | None, reason: str | None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "seq": entry.seq,
        "uuid": entry.uuid,
        "type": entry.type,
        "created_at": entry.created_at,
        "sync_status": status or "pending",
    }
    if reason:
        summary["sync_reason"] = reason
    for key in ("sale_id", "receipt_no", "total", "z_no"):
        if key in entry.body:
            summary[key] = entry.body[key]
    return summary
