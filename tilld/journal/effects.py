"""The tables beside the entries, kept in step with them.

A side effect runs inside an append's transaction, after its entry is
inserted, so a ticket, an open sale, a card intent or a print job changes
exactly when the entry that changes it commits, never without it. A fill
reads inside that transaction, before the entry is built. ``SideTables``
holds the journal's own reads and writes of these tables outside an append
(restoring open sales and card intents at start, marking print jobs done);
they run on the writer thread, so they see every entry appended before them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from ..chain import canonical_json
from .entry import Entry, Fill, SideEffect, TicketRecord, now_with_offset
from .rows import body_text
from .schema import COLUMNS
from .store import JournalStore


def store_tickets(tickets: list[TicketRecord], state: str = "pending") -> SideEffect:
    def effect(db: sqlite3.Connection, entry: Entry) -> None:
        if not tickets:
            return  # a basket of goods: no statement at all
        db.executemany(
            "INSERT INTO tickets (code, seq, receipt_no, plu, name, state, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    t.code,
                    entry.seq,
                    entry.body["receipt_no"],
                    t.plu,
                    t.name,
                    state,
                    entry.created_at,
                )
                for t in tickets
            ],
        )

    return effect


def set_ticket_state(codes: list[str], state: str) -> SideEffect:
    def effect(db: sqlite3.Connection, entry: Entry) -> None:
        db.executemany("UPDATE tickets SET state = ? WHERE code = ?", [(state, c) for c in codes])

    return effect


def local_ticket_check(code: str) -> Fill:
    """What this till itself knows of a ticket code, read where the scan is written.

    ``already-scanned`` (a passage here before), ``refunded``, ``sold-here``,
    or ``not-known-locally`` (sold elsewhere: only the server can tell).
    """

    def fill(db: sqlite3.Connection) -> dict[str, Any]:
        scanned = db.execute(
            "SELECT 1 FROM entries WHERE code = ? LIMIT 1",
            (code,),
        ).fetchone()
        if scanned:
            return {"local_check": "already-scanned"}
        row = db.execute("SELECT state FROM tickets WHERE code = ?", (code,)).fetchone()
        if row is None:
            return {"local_check": "not-known-locally"}
        return {"local_check": "refunded" if row[0] == "refunded" else "sold-here"}

    return fill


def since_last(type_: str, digest: Callable[[Entry | None, list[Entry]], dict[str, Any]]) -> Fill:
    """Fields digested from the last entry of ``type_`` and every entry after it.

    Read inside the append's transaction, so an entry that closes a period (a
    Z report) covers exactly what was committed before it: no sale can commit
    between the read and the close and so fall into no period at all.
    """

    def fill(db: sqlite3.Connection) -> dict[str, Any]:
        row = db.execute(
            f"SELECT {COLUMNS} FROM entries WHERE type = ? ORDER BY seq DESC LIMIT 1", (type_,)
        ).fetchone()
        last = Entry.from_row(row) if row else None
        rows = db.execute(
            f"SELECT {COLUMNS} FROM entries WHERE seq > ? ORDER BY seq", (last.seq if last else 0,)
        )
        return digest(last, [Entry.from_row(r) for r in rows])

    return fill


def float_change(amount: int) -> Fill:
    """The float before this registration and the change, read where it is written."""

    def fill(db: sqlite3.Connection) -> dict[str, Any]:
        row = db.execute(
            "SELECT body FROM entries WHERE type = 'float' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        previous = json.loads(body_text(row[0])).get("amount") if row else 0
        return {"previous": previous, "change": amount - previous}

    return fill


def forget_open_sale(sale_id: str) -> SideEffect:
    def effect(db: sqlite3.Connection, entry: Entry) -> None:
        db.execute("DELETE FROM open_sales WHERE sale_id = ?", (sale_id,))

    return effect


def keep_open_sale(sale_id: str, state: dict[str, Any]) -> SideEffect:
    """Keep an unfinished sale on disk in the same transaction as its entry."""

    def effect(db: sqlite3.Connection, entry: Entry) -> None:
        db.execute(
            "INSERT INTO open_sales (sale_id, state, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (sale_id) DO UPDATE SET state = excluded.state,"
            " updated_at = excluded.updated_at",
            (sale_id, canonical_json(state), entry.created_at),
        )

    return effect


def open_card_intent(payment_id: str) -> SideEffect:
    """A card payment about to be sent to the terminal: open until its result is journaled."""

    def effect(db: sqlite3.Connection, entry: Entry) -> None:
        db.execute(
            "INSERT INTO card_intents (payment_id, seq, open) VALUES (?, ?, 1)",
            (payment_id, entry.seq),
        )

    return effect


class IntentClosed(Exception):
    """A card payment's outcome was journaled already: a second record is refused."""


def close_card_intent(payment_id: str) -> SideEffect:
    def effect(db: sqlite3.Connection, entry: Entry) -> None:
        closed = db.execute(
            "UPDATE card_intents SET open = 0 WHERE payment_id = ? AND open = 1", (payment_id,)
        )
        if closed.rowcount != 1:
            # The journal itself keeps a card outcome (a refund receipt, an
            # approval) from being written twice, whatever the caller believed.
            raise IntentClosed(payment_id)

    return effect


def count_card(name: str, delta: int = 0, *, set_to: int | None = None) -> SideEffect:
    """Change a card counter (the terminal's offline store) with the entry that changes it."""

    def effect(db: sqlite3.Connection, entry: Entry) -> None:
        if set_to is not None:
            db.execute(
                "INSERT INTO card_counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, set_to),
            )
        else:
            db.execute(
                "INSERT INTO card_counters (name, value) VALUES (?, MAX(0, ?))"
                " ON CONFLICT (name) DO UPDATE SET value = MAX(0, value + ?)",
                (name, delta, delta),
            )

    return effect


def start_print_job(job_id: str, receipt_no: int, copy: bool) -> SideEffect:
    """Mark a print job as printing in the same transaction as its `print` entry."""

    def effect(db: sqlite3.Connection, entry: Entry) -> None:
        db.execute(
            "INSERT INTO print_jobs (job_id, receipt_no, copy, state, attempts, updated_at)"
            " VALUES (?, ?, ?, 'printing', 1, ?) ON CONFLICT (job_id) DO UPDATE"
            " SET state = 'printing', attempts = attempts + 1, updated_at = excluded.updated_at",
            (job_id, receipt_no, int(copy), entry.created_at),
        )

    return effect


class SideTables(JournalStore):
    """Open sales, card intents and counters, print jobs and the old catalog cache."""

    async def save_open_sale(self, sale_id: str, state: dict[str, Any]) -> None:
        """Durably keep a sale that has taken money but is not complete yet."""

        def save() -> None:
            db = self._require_writer()
            with self._transaction(db):
                db.execute(
                    "INSERT INTO open_sales (sale_id, state, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (sale_id) DO UPDATE SET state = excluded.state,"
                    " updated_at = excluded.updated_at",
                    (sale_id, canonical_json(state), now_with_offset()),
                )

        await self._on_writer(save)

    async def forget_cached_catalog(self) -> None:
        """Drop the catalog an earlier tilld kept here, once catalog.sqlite holds it."""

        def forget() -> None:
            db = self._require_writer()
            with self._transaction(db):
                db.execute("DELETE FROM catalog_cache")

        await self._on_writer(forget)

    async def cached_catalog(self) -> tuple[str, str | None, str] | None:
        def read() -> tuple[str, str | None, str] | None:
            return (
                self._require_writer()
                .execute("SELECT document, etag, source FROM catalog_cache WHERE id = 1")
                .fetchone()
            )

        return await self._on_writer(read)

    async def open_sales(self) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            rows = self._require_writer().execute("SELECT state FROM open_sales").fetchall()
            return [json.loads(state) for (state,) in rows]

        return await self._on_writer(read)

    async def open_card_intents(self) -> list[Entry]:
        """The card-intent entries whose outcome was never journaled (a crash mid-payment)."""

        def read() -> list[Entry]:
            rows = (
                self._require_writer()
                .execute(
                    f"SELECT {', '.join('e.' + c for c in COLUMNS.split(', '))}"
                    " FROM card_intents c JOIN entries e ON e.seq = c.seq"
                    " WHERE c.open = 1 ORDER BY c.seq"
                )
                .fetchall()
            )
            return [Entry.from_row(row) for row in rows]

        return await self._on_writer(read)

    async def card_counter(self, name: str) -> int:
        def read() -> int:
            row = (
                self._require_writer()
                .execute("SELECT value FROM card_counters WHERE name = ?", (name,))
                .fetchone()
            )
            return row[0] if row else 0

        return await self._on_writer(read)

    async def finish_print_job(self, job_id: str, state: str, detail: str) -> None:
        def write() -> None:
            db = self._require_writer()
            with self._transaction(db):
                db.execute(
                    "UPDATE print_jobs SET state = ?, detail = ?, updated_at = ? WHERE job_id = ?",
                    (state, detail, now_with_offset(), job_id),
                )

        await self._on_writer(write)

    async def interrupt_unfinished_print_jobs(self) -> int:
        """Jobs left `printing` by a crash: how far they got is unknown."""

        def write() -> int:
            db = self._require_writer()
            with self._transaction(db):
                return db.execute(
                    "UPDATE print_jobs SET state = 'interrupted',"
                    " detail = 'tilld stopped while printing', updated_at = ?"
                    " WHERE state = 'printing'",
                    (now_with_offset(),),
                ).rowcount

        return await self._on_writer(write)
