"""What sync reads from the journal and what it records there.

Entries go out in seq order after a mark, in batches encoded where they are
read; the back-end's answers come back as sync and scan results, and the
tickets of accepted sales become valid with them.
"""

from __future__ import annotations

import logging
import sqlite3

from .batches import BatchProcessFailed, OutboxBatch, read_batch
from .entry import Entry, now_with_offset
from .rows import readable_prefix
from .schema import COLUMNS
from .store import JournalStore

log = logging.getLogger("tilld.journal")

# A backlog at least this long is read and encoded in the batch process
# (batches.py); a shorter one costs the bulk thread a few milliseconds,
# less than starting that process.
BATCH_PROCESS_FROM = 500
# How many results one bookkeeping transaction records: a scan or a sale
# asked for meanwhile waits for at most one such transaction (writer.py).
RESULTS_PER_TRANSACTION = 100


class Outbox(JournalStore):
    """The outbox: marks, counts, batches and results of sync."""

    async def sync_marks(self) -> tuple[int, int]:
        """How far sync got: the last entry with a result and the last scan with one.

        Results are recorded in seq order, each transaction after the one
        before has committed, so every entry up to the first mark has a
        result and none after it does; the same holds for scans and the
        second mark.
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
        if min(limit, self.head_seq - after_seq) >= BATCH_PROCESS_FROM:
            try:
                return await self._batches.read(after_seq, limit)
            except (BatchProcessFailed, OSError) as exc:
                # The process is a speed-up, never a condition of sync: a
                # backlog drains on the bulk thread while it cannot run.
                log.warning("sync batch read on the bulk thread instead: %s", exc)
        return await self._on_bulk(lambda: read_batch(self._read(), after_seq, limit))

    async def outbox(self, after_seq: int, limit: int, type_: str | None = None) -> list[Entry]:
        """Entries after ``after_seq`` in seq order (only scans when ``type_`` is 'scan')."""

        def read() -> list[Entry]:
            where = "seq > ?" + (" AND type = ?" if type_ else "")
            args = (after_seq, type_, limit) if type_ else (after_seq, limit)
            rows = self._read().execute(
                f"SELECT {COLUMNS} FROM entries WHERE {where} ORDER BY seq LIMIT ?", args
            )
            return readable_prefix(Entry.from_row, rows)

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

        def write(part: list[tuple[int, str, str | None]], sales: list[int]) -> int:
            db = self._require_writer()
            at = now_with_offset()
            with self._transaction(db, fsync=False):
                db.executemany(
                    "INSERT OR REPLACE INTO sync_results (seq, status, reason, at)"
                    " VALUES (?, ?, ?, ?)",
                    [(seq, status, reason, at) for seq, status, reason in part],
                )
                before = db.total_changes
                db.executemany(
                    "UPDATE tickets SET state = 'valid' WHERE seq = ? AND state = 'pending'",
                    [(seq,) for seq in sales],
                )
                return db.total_changes - before

        accepted = set(accepted_sales)
        made_valid = 0
        for part in _slices(results):
            sales = [seq for seq, _, _ in part if seq in accepted]
            # After the scans and sales asked for meanwhile, and without an
            # fsync of its own: a drain's bookkeeping must not stand between
            # the gate and its answer (writer.py). Each slice waits for the one
            # before, so a failed one stops the rest and no result is recorded
            # after a missing one. A result a power cut loses is rebuilt: the
            # entry goes again and is answered `duplicate`.
            made_valid += await self._on_writer(write, part, sales, last=True)
        return made_valid

    async def pending_ticket_count(self) -> int:
        """Counted on the writer, so it is exact as of every entry appended before it
        (a refund's tickets leave the pending ones without ever becoming valid)."""
        return await self._on_writer(lambda: _pending_tickets(self._require_writer()))

    async def record_scan_results(self, results: list[tuple[int, str, str | None]]) -> None:
        def write(part: list[tuple[int, str, str | None]]) -> None:
            db = self._require_writer()
            at = now_with_offset()
            with self._transaction(db, fsync=False):
                db.executemany(
                    "INSERT OR REPLACE INTO scan_results (seq, status, detail, at)"
                    " VALUES (?, ?, ?, ?)",
                    [(seq, status, detail, at) for seq, status, detail in part],
                )

        # As for the entries' results: in order, a slice at a time; a lost one
        # is registered again, and the back-end answers a scan's uuid it has
        # seen with the same result.
        for part in _slices(results):
            await self._on_writer(write, part, last=True)


def _slices(results: list[tuple[int, str, str | None]]) -> list[list[tuple[int, str, str | None]]]:
    step = RESULTS_PER_TRANSACTION
    return [results[i : i + step] for i in range(0, len(results), step)]


def _pending_tickets(db: sqlite3.Connection) -> int:
    """Tickets sold here that the back-end has not accepted yet (not valid at gates)."""
    return db.execute("SELECT count(*) FROM tickets WHERE state = 'pending'").fetchone()[0]
