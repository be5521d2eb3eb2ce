"""What sync reads from the journal and what it records there.

Entries go out in seq order after a mark, in batches encoded where they are
read; the back-end's answers come back as sync and scan results, and the
tickets of accepted sales become valid with them.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from .entry import Entry, now_with_offset
from .rows import decoded_row
from .schema import COLUMNS
from .store import JournalStore


@dataclass(frozen=True)
class OutboxBatch:
    """Entries on their way to the back-end, encoded as JSON where they were read.

    The stored body inflates to canonical JSON, so an entry is sent without
    parsing it and encoding it again, and none of that work is done on the
    event loop that answers cashiers while a backlog drains.
    """

    seqs: list[int]
    uuids: list[str]
    types: list[str]
    encoded: list[str]

    def __len__(self) -> int:
        return len(self.seqs)

    def payload(self) -> bytes:
        return ('{"entries":[' + ",".join(self.encoded) + "]}").encode()

    def halves(self) -> tuple[OutboxBatch, OutboxBatch]:
        mid = len(self) // 2
        return (
            OutboxBatch(self.seqs[:mid], self.uuids[:mid], self.types[:mid], self.encoded[:mid]),
            OutboxBatch(self.seqs[mid:], self.uuids[mid:], self.types[mid:], self.encoded[mid:]),
        )


def _encode_row(decoded: tuple[Any, ...]) -> str:
    """An entry as the back-end receives it, from its row decoded (rows.decoded_row)."""
    seq, uuid, type_, created_at, body, prev_hash, hash_ = decoded
    head = json.dumps({"seq": seq, "uuid": uuid, "type": type_, "created_at": created_at})
    tail = json.dumps({"prev_hash": prev_hash, "hash": hash_})
    return f'{head[:-1]},"body":{body},{tail[1:]}'


class Outbox(JournalStore):
    """The outbox: marks, counts, batches and results of sync."""

    async def sync_marks(self) -> tuple[int, int]:
        """How far sync got: the last entry with a result and the last scan with one.

        Results are recorded a whole batch at a time in seq order, so every
        entry up to the first mark has a result and none after it does; the
        same holds for scans and the second mark.
        """

        def read() -> tuple[int, int]:
            db = self._require_writer()
            entries = db.execute("SELECT max(seq) FROM sync_results").fetchone()[0] or 0
            scans = db.execute("SELECT max(seq) FROM scan_results").fetchone()[0] or 0
            return entries, scans

        return await self._on_writer(read)

    async def pending_counts(self, entry_mark: int, scan_mark: int) -> dict[str, int]:
        def read() -> dict[str, int]:
            db = self._require_writer()
            unsent = db.execute("SELECT count(*) FROM entries WHERE seq > ?", (entry_mark,))
            rejected = db.execute("SELECT count(*) FROM sync_results WHERE status = 'rejected'")
            tickets = _pending_tickets(db)
            scans = db.execute(
                "SELECT count(*) FROM entries WHERE type = 'scan' AND seq > ?", (scan_mark,)
            )
            return {
                "entries": unsent.fetchone()[0] + rejected.fetchone()[0],
                "tickets": tickets,
                "scans": scans.fetchone()[0],
            }

        return await self._on_writer(read)

    async def outbox_batch(self, after_seq: int, limit: int) -> OutboxBatch:
        """The next entries after ``after_seq`` to send, in seq order, ready to post."""

        def read() -> OutboxBatch:
            rows = [
                decoded_row(row)
                for row in self._read().execute(
                    f"SELECT {COLUMNS} FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                )
            ]
            return OutboxBatch(
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                [_encode_row(r) for r in rows],
            )

        return await self._on_bulk(read)

    async def outbox(self, after_seq: int, limit: int, type_: str | None = None) -> list[Entry]:
        """Entries after ``after_seq`` in seq order (only scans when ``type_`` is 'scan')."""

        def read() -> list[Entry]:
            where = "seq > ?" + (" AND type = ?" if type_ else "")
            args = (after_seq, type_, limit) if type_ else (after_seq, limit)
            rows = self._read().execute(
                f"SELECT {COLUMNS} FROM entries WHERE {where} ORDER BY seq LIMIT ?", args
            )
            return [Entry.from_row(r) for r in rows]

        return await self._on_bulk(read)

    async def first_scan_after(self, after_seq: int) -> int | None:
        """The seq of the oldest scan after ``after_seq``: a quick look, not a batch."""

        def read() -> int | None:
            row = (
                self._read()
                .execute(
                    "SELECT seq FROM entries INDEXED BY entries_type"
                    " WHERE type = 'scan' AND seq > ? ORDER BY seq LIMIT 1",
                    (after_seq,),
                )
                .fetchone()
            )
            return row[0] if row else None

        return await self._on_reader(read)

    async def record_sync_results(
        self, results: list[tuple[int, str, str | None]], accepted_sales: list[int]
    ) -> int:
        """Store the back-end's answer for a batch; the tickets of its accepted sales
        become valid. Returns how many did (counting every pending ticket per
        batch would make a long drain quadratic)."""

        def write() -> int:
            db = self._require_writer()
            at = now_with_offset()
            with self._transaction(db, fsync=False):
                db.executemany(
                    "INSERT OR REPLACE INTO sync_results (seq, status, reason, at)"
                    " VALUES (?, ?, ?, ?)",
                    [(seq, status, reason, at) for seq, status, reason in results],
                )
                before = db.total_changes
                db.executemany(
                    "UPDATE tickets SET state = 'valid' WHERE seq = ? AND state = 'pending'",
                    [(seq,) for seq in accepted_sales],
                )
                return db.total_changes - before

        # After the scans and sales asked for meanwhile, and without an fsync
        # of its own: a drain's bookkeeping must not stand between the gate
        # and its answer (writer.py). A result a power cut loses is rebuilt:
        # the entry goes again and is answered `duplicate`.
        return await self._on_writer(write, last=True)

    async def pending_ticket_count(self) -> int:
        """Counted on the writer, so it is exact as of every entry appended before it
        (a refund's tickets leave the pending ones without ever becoming valid)."""
        return await self._on_writer(lambda: _pending_tickets(self._require_writer()))

    async def record_scan_results(self, results: list[tuple[int, str, str | None]]) -> None:
        def write() -> None:
            db = self._require_writer()
            at = now_with_offset()
            with self._transaction(db, fsync=False):
                db.executemany(
                    "INSERT OR REPLACE INTO scan_results (seq, status, detail, at)"
                    " VALUES (?, ?, ?, ?)",
                    [(seq, status, detail, at) for seq, status, detail in results],
                )

        # As for the entries' results: a lost one is registered again, and the
        # back-end answers a scan's uuid it has seen with the same result.
        await self._on_writer(write, last=True)


def _pending_tickets(db: sqlite3.Connection) -> int:
    """Tickets sold here that the back-end has not accepted yet (not valid at gates)."""
    return db.execute("SELECT count(*) FROM tickets WHERE state = 'pending'").fetchone()[0]
