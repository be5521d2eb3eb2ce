"""The durable journal: an append-only, hash-chained record of everything the till did.

Guarantees, and how they are kept:
- Nothing acknowledged is lost. Every append runs in ``BEGIN IMMEDIATE`` and
  the caller's await returns only after COMMIT, with the database in WAL mode
  and ``synchronous=FULL`` so COMMIT waits for fsync of the WAL. Both settings
  are read back at open and the daemon refuses to start if SQLite did not
  take them (some filesystems cannot do WAL).
- Entries are never edited. Corrections are new entries; triggers reject
  UPDATE and DELETE on ``entries`` so a bug cannot rewrite history either.
- Receipt numbers form one unbroken series: the next number is read inside
  the same write transaction that stores the entry, so a failed commit never
  burns a number.

One thread owns the write connection; the asyncio loop never blocks on
fsync. A second thread with its own read connection serves long reads
(verify, export, reports) so they do not hold up a sale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from ..chain import GENESIS_HASH, canonical_json, entry_hash, first_broken_seq
from ..errors import Refused, StartupError
from ..integrity import OK, ROLLBACK_ACKNOWLEDGED, Head, HeadFile, Verdict, judge, worse

log = logging.getLogger("tilld.journal")

T = TypeVar("T")

SCHEMA_VERSION = 1

# Numbered series and the entry types that draw from them. Sales and refunds
# share the receipt series (a refund is a receipt too); Z reports count apart.
NUMBER_SERIES: dict[str, tuple[str, ...]] = {
    "receipt_no": ("sale", "refund"),
    "z_no": ("z-report",),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END;
CREATE INDEX IF NOT EXISTS entries_receipt_no ON entries (json_extract(body, '$.receipt_no'))
    WHERE type IN ('sale', 'refund');
CREATE INDEX IF NOT EXISTS entries_z_no ON entries (json_extract(body, '$.z_no'))
    WHERE type IN ('z-report');
CREATE INDEX IF NOT EXISTS entries_refund_of
    ON entries (json_extract(body, '$.original_receipt_no')) WHERE type = 'refund';
CREATE INDEX IF NOT EXISTS entries_sale_id ON entries (json_extract(body, '$.sale_id'))
    WHERE type IN ('sale', 'void');
CREATE INDEX IF NOT EXISTS entries_type ON entries (type, seq);
CREATE TABLE IF NOT EXISTS sync_results (
    seq INTEGER PRIMARY KEY REFERENCES entries (seq),
    status TEXT NOT NULL,
    reason TEXT,
    at TEXT NOT NULL
);
-- Rejected entries are few; counting them at start must not walk every result.
CREATE INDEX IF NOT EXISTS sync_results_rejected ON sync_results (status)
    WHERE status = 'rejected';
CREATE TABLE IF NOT EXISTS scan_results (
    seq INTEGER PRIMARY KEY REFERENCES entries (seq),
    status TEXT NOT NULL,
    detail TEXT,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_scan_code ON entries (json_extract(body, '$.code'))
    WHERE type = 'scan';
CREATE TABLE IF NOT EXISTS tickets (
    code TEXT PRIMARY KEY,
    seq INTEGER NOT NULL REFERENCES entries (seq),
    receipt_no INTEGER NOT NULL,
    plu TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_state ON tickets (state);
CREATE INDEX IF NOT EXISTS tickets_seq ON tickets (seq);
CREATE TABLE IF NOT EXISTS open_sales (
    sale_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS print_jobs (
    job_id TEXT PRIMARY KEY,
    receipt_no INTEGER NOT NULL,
    copy INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS print_jobs_receipt ON print_jobs (receipt_no);
CREATE TABLE IF NOT EXISTS card_intents (
    payment_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL REFERENCES entries (seq),
    open INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS card_intents_open ON card_intents (open) WHERE open = 1;
CREATE TABLE IF NOT EXISTS card_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS catalog_cache (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    document TEXT NOT NULL,
    etag TEXT,
    source TEXT NOT NULL,
    stored_at TEXT NOT NULL
);
"""

# SQLite result codes (sqlite3.h) that mean the storage itself failed.
SQLITE_FULL = 13
SQLITE_IOERR = 10


def now_with_offset() -> str:
    """The local time with its UTC offset, e.g. 2026-11-26T18:01:02.123+01:00."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Entry:
    seq: int
    uuid: str
    type: str
    created_at: str
    body: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "uuid": self.uuid,
            "type": self.type,
            "created_at": self.created_at,
            "body": self.body,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple) -> Entry:
        seq, uuid, type_, created_at, body, prev_hash, hash_ = row
        return cls(seq, uuid, type_, created_at, json.loads(body), prev_hash, hash_)


@dataclass(frozen=True)
class TicketRecord:
    code: str
    plu: str
    name: str


# Work done inside an append's transaction, after the entry is inserted.
SideEffect = Callable[[sqlite3.Connection, Entry], None]
Fill = Callable[[sqlite3.Connection], dict[str, Any]]


def store_tickets(tickets: list[TicketRecord], state: str = "pending") -> SideEffect:
    def effect(db: sqlite3.Connection, entry: Entry) -> None:
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
            "SELECT 1 FROM entries WHERE json_extract(body, '$.code') = ? AND type = 'scan'"
            " LIMIT 1",
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


COLUMNS = "seq, uuid, type, created_at, body, prev_hash, hash"


@dataclass(frozen=True)
class OutboxBatch:
    """Entries on their way to the back-end, encoded as JSON where they were read.

    The stored body is already canonical JSON, so an entry is sent without
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


def _encode_row(row: tuple[Any, ...]) -> str:
    seq, uuid, type_, created_at, body, prev_hash, hash_ = row
    head = json.dumps({"seq": seq, "uuid": uuid, "type": type_, "created_at": created_at})
    tail = json.dumps({"prev_hash": prev_hash, "hash": hash_})
    return f'{head[:-1]},"body":{body},{tail[1:]}'


TICKET_COLUMNS = ("code", "receipt_no", "plu", "name", "state", "created_at")


class Journal:
    def __init__(self, path: Path, till_id: str) -> None:
        self.path = path
        self.till_id = till_id
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-writer")
        # Two readers: lookups a cashier waits for (a receipt, a sale) never
        # queue behind a sync batch, a report or an export on the bulk one.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-reader")
        self._bulk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-bulk")
        self._db: sqlite3.Connection | None = None
        self._readers = threading.local()  # each reader thread's read-only connection
        self.head_seq = 0
        self.head_hash = GENESIS_HASH
        self.head_file = HeadFile(path.with_name(path.stem + ".head"))
        self.numbers = dict.fromkeys(NUMBER_SERIES, 0)  # the last number issued per series
        # Whether this journal is still the one the till wrote (integrity.py);
        # rolled back, it takes no entries but a technician's acknowledgement.
        self.integrity: Verdict = OK
        # Told of every committed entry, whoever appended it (the Till keeps
        # its pending counts with it, so no appender can forget to).
        self.on_append: Callable[[Entry], None] | None = None

    # -- lifecycle ---------------------------------------------------------

    async def open(self) -> None:
        await self._on_writer(self._open_writer)
        await self._on_reader(self._open_reader)
        await self._on_bulk(self._open_reader)

    async def close(self) -> None:
        def close_writer() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None
            self.head_file.close()

        def close_reader() -> None:
            db = getattr(self._readers, "db", None)
            if db is not None:
                db.close()
                self._readers.db = None

        await self._on_writer(close_writer)
        await self._on_reader(close_reader)
        await self._on_bulk(close_reader)
        for pool in (self._writer, self._reader, self._bulk):
            pool.shutdown(wait=True)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        db.execute("PRAGMA busy_timeout = 10000")
        return db

    def _open_writer(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect()
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            db.execute("PRAGMA synchronous = FULL")
            synchronous = db.execute("PRAGMA synchronous").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._cannot_open(exc) from exc
        if mode.lower() != "wal" or synchronous != 2:
            db.close()
            raise StartupError(
                f"the journal {self.path} cannot be made durable here (journal_mode={mode}, "
                f"synchronous={synchronous}; need wal and 2=FULL). Put the state directory on "
                "a local filesystem that supports SQLite WAL."
            )
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(SCHEMA)
            self._db = db
            self._check_owner(db)
            row = db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            db.close()
            self._db = None
            raise self._cannot_open(exc) from exc
        if row:
            self.head_seq, self.head_hash = row
        for series in NUMBER_SERIES:
            self.numbers[series] = self._next_number(db, series) - 1
        self._check_head(db)

    def _check_head(self, db: sqlite3.Connection) -> None:
        """Compare the journal with its head file, and its last entries' chain, at start."""
        recorded = self.head_file.read()
        verdict = OK
        if recorded is not None:
            verdict = judge(self.head, lambda seq: _hash_at(db, seq), recorded, "its head file")
        tail = _broken_tail(db, self.head_seq)
        if tail is not None:
            verdict = worse(
                verdict,
                Verdict(
                    "chain-broken",
                    f"The journal's hash chain is broken at entry {tail}: an entry was edited, "
                    "removed or inserted. Run `tillctl journal verify` and call the venue's "
                    "technician; keep the state folder as it is.",
                ),
            )
        if not verdict.ok:
            log.critical("%s", verdict.message)
        self.integrity = verdict
        if verdict.state != "rolled-back":
            # Rolled back, the file keeps the lost head as evidence until acknowledged.
            self.head_file.write(self.head)

    @property
    def head(self) -> Head:
        return Head(self.head_seq, self.head_hash, self.numbers["receipt_no"], self.numbers["z_no"])

    def _cannot_open(self, exc: sqlite3.Error) -> StartupError:
        # SQLITE_NOTADB (overwritten) and SQLITE_CORRUPT (a malformed image):
        # the file itself is damaged, which no permission or free space fixes.
        # tilld does not start on it, so it stays as it is for the recovery.
        name = getattr(exc, "sqlite_errorname", None) or ""
        if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            return StartupError(
                f"journal damaged: {self.path} cannot be read ({exc}), so tilld does not start "
                "on it. Follow 'Recovering a journal' in docs/install.md: stop tilld, move the "
                "file aside and keep it, then restore a backup or start afresh."
            )
        return StartupError(
            f"cannot open the journal {self.path}: {exc}. Check that the state directory "
            "exists, is writable by the tilld user and the disk is not full."
        )

    def _check_owner(self, db: sqlite3.Connection) -> None:
        """A journal belongs to one till: its seq series means nothing to another."""
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not rows:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("till_id", self.till_id), ("schema_version", str(SCHEMA_VERSION))],
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        owner = rows.get("till_id", self.till_id)
        if owner != self.till_id:
            raise StartupError(
                f"the journal {self.path} belongs to till '{owner}', but this configuration "
                f"says till.id = '{self.till_id}'. Fix till.id, or move the state directory "
                "aside if the till really was renamed (sync it first)."
            )

    def _open_reader(self) -> None:
        db = self._connect()
        db.execute("PRAGMA query_only = ON")
        self._readers.db = db

    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def _on_reader(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def _on_bulk(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._bulk, fn, *args)

    # -- writing -----------------------------------------------------------

    async def append(
        self,
        type_: str,
        body: dict[str, Any],
        *,
        number: str | None = None,
        effects: tuple[SideEffect, ...] = (),
        fill: Fill | None = None,
    ) -> Entry:
        """Append one entry and return it once committed.

        ``number`` names a series in NUMBER_SERIES: the next number is put into
        the body under that key before the entry is hashed. ``fill`` reads
        more fields for the body inside the same transaction (a scan's local
        check), so what it read cannot change before the entry is written.
        """
        entry = await self._on_writer(self._append, type_, body, number, effects, fill)
        if self.on_append is not None:
            self.on_append(entry)
        return entry

    def _append(
        self,
        type_: str,
        body: dict[str, Any],
        number: str | None,
        effects: tuple[SideEffect, ...],
        fill: Fill | None = None,
    ) -> Entry:
        db = self._require_writer()
        if self.integrity.state == "rolled-back":
            raise Refused("journal-rolled-back", self.integrity.message)
        with self._transaction(db):
            if number is not None:
                body = {**body, number: self._next_number(db, number)}
            if fill is not None:
                body = {**body, **fill(db)}
            entry = self._build_entry(type_, body)
            self._insert(db, entry)
            for effect in effects:
                effect(db, entry)
        self._committed(entry, number)
        return entry

    @staticmethod
    def _insert(db: sqlite3.Connection, entry: Entry) -> None:
        db.execute(
            f"INSERT INTO entries ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                entry.seq,
                entry.uuid,
                entry.type,
                entry.created_at,
                canonical_json(entry.body),
                entry.prev_hash,
                entry.hash,
            ),
        )

    def _committed(self, entry: Entry, number: str | None) -> None:
        self.head_seq, self.head_hash = entry.seq, entry.hash
        if number is not None:
            self.numbers[number] = entry.body[number]
        self.head_file.write(self.head)

    def _build_entry(self, type_: str, body: dict[str, Any]) -> Entry:
        fields = {
            "uuid": str(uuidlib.uuid4()),
            "seq": self.head_seq + 1,
            "type": type_,
            "created_at": now_with_offset(),
            "prev_hash": self.head_hash,
            # Round-trip through JSON so the hashed body is exactly what is stored.
            "body": json.loads(canonical_json(body)),
        }
        return Entry(hash=entry_hash(fields), **fields)

    @staticmethod
    def _next_number(db: sqlite3.Connection, series: str) -> int:
        # The types are inlined, not bound: SQLite only uses a partial index
        # when it can see that the query's WHERE implies the index's.
        types = ", ".join(f"'{t}'" for t in NUMBER_SERIES[series])
        # INDEXED BY: the planner would otherwise walk every sale through the
        # type index; the expression index makes this one step at any size.
        row = db.execute(
            f"SELECT json_extract(body, '$.{series}') FROM entries INDEXED BY entries_{series}"
            f" WHERE type IN ({types}) ORDER BY json_extract(body, '$.{series}') DESC LIMIT 1"
        ).fetchone()
        # After an acknowledged rollback, numbers go on after the lost ones.
        floor = db.execute("SELECT value FROM meta WHERE key = ?", (f"floor:{series}",)).fetchone()
        return max(row[0] if row else 0, int(floor[0]) if floor else 0) + 1

    async def acknowledge_rollback(self, continue_from: Head | None, by: str) -> Entry:
        """A technician accepts that the journal lost its last entries; it takes entries again.

        The acknowledgement continues the chain from the lost head (or from
        ``continue_from``, the back-end's head, when that is what it still
        has), and raises each number series above the numbers lost, so no
        receipt number is issued twice.
        """

        def write() -> Entry:
            lost = self.integrity.lost
            if self.integrity.state != "rolled-back" or lost is None:
                raise Refused(
                    "journal-not-rolled-back",
                    "The journal has not gone backwards; there is nothing to acknowledge.",
                )
            chain = continue_from if continue_from is not None else lost
            body = {
                "local_head": {"seq": self.head_seq, "hash": self.head_hash},
                "lost_head": lost.as_dict(),
                "continues_from": {"seq": chain.seq, "hash": chain.hash},
                "acknowledged_by": by,
                "reason": self.integrity.message,
            }
            fields = {
                "uuid": str(uuidlib.uuid4()),
                "seq": chain.seq + 1,
                "type": ROLLBACK_ACKNOWLEDGED,
                "created_at": now_with_offset(),
                "prev_hash": chain.hash,
                "body": json.loads(canonical_json(body)),
            }
            entry = Entry(hash=entry_hash(fields), **fields)
            db = self._require_writer()
            with self._transaction(db):
                self._insert(db, entry)
                floors = {
                    "receipt_no": max(
                        lost.receipt_no, chain.receipt_no, self.numbers["receipt_no"]
                    ),
                    "z_no": max(lost.z_no, chain.z_no, self.numbers["z_no"]),
                }
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                    " DO UPDATE SET value = excluded.value",
                    [(f"floor:{series}", str(floor)) for series, floor in floors.items()],
                )
            self.numbers.update(floors)
            self.integrity = OK
            self._committed(entry, None)
            log.warning(
                "journal rollback acknowledged by %s: entries %d..%d are lost; numbering "
                "goes on after receipt %d",
                by,
                body["local_head"]["seq"] + 1,
                lost.seq,
                self.numbers["receipt_no"],
            )
            return entry

        entry = await self._on_writer(write)
        if self.on_append is not None:
            self.on_append(entry)
        return entry

    async def judge_witness(self, witness: Head, who: str) -> Verdict:
        """Compare the journal with a witness of its head (the back-end); keep the worse verdict."""

        def read() -> Verdict:
            db = self._read()
            return judge(self.head, lambda seq: _hash_at(db, seq), witness, who)

        verdict = await self._on_reader(read)
        if worse(self.integrity, verdict) is not self.integrity:
            log.warning("%s", verdict.message)
            self.integrity = verdict
        return verdict

    class _transaction:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; storage errors become refusals."""

        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _storage_refusal(exc) from exc
            return self.db

        def __exit__(self, exc_type, exc, _tb) -> bool:
            if exc_type is None:
                try:
                    self.db.execute("COMMIT")
                    return False
                except sqlite3.Error as commit_error:
                    self._rollback()
                    raise _storage_refusal(commit_error) from commit_error
            self._rollback()
            if isinstance(exc, sqlite3.Error):
                raise _storage_refusal(exc) from exc
            return False

        def _rollback(self) -> None:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")

    def _require_writer(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("journal is not open")
        return self._db

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

    # -- reading -----------------------------------------------------------

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
            rows = (
                self._read()
                .execute(
                    f"SELECT {COLUMNS} FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                )
                .fetchall()
            )
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
            with self._transaction(db):
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

        return await self._on_writer(write)

    async def pending_ticket_count(self) -> int:
        """Counted on the writer, so it is exact as of every entry appended before it
        (a refund's tickets leave the pending ones without ever becoming valid)."""
        return await self._on_writer(lambda: _pending_tickets(self._require_writer()))

    async def record_scan_results(self, results: list[tuple[int, str, str | None]]) -> None:
        def write() -> None:
            db = self._require_writer()
            at = now_with_offset()
            with self._transaction(db):
                db.executemany(
                    "INSERT OR REPLACE INTO scan_results (seq, status, detail, at)"
                    " VALUES (?, ?, ?, ?)",
                    [(seq, status, detail, at) for seq, status, detail in results],
                )

        await self._on_writer(write)

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
                data = json.loads(body)
                scans.append(
                    {
                        "seq": seq,
                        "scan_id": uuid,
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
                    f"SELECT {COLUMNS} FROM entries WHERE type IN ('sale', 'refund')"
                    " AND json_extract(body, '$.receipt_no') = ?",
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
                    f"SELECT {COLUMNS} FROM entries WHERE type IN ('sale', 'void')"
                    " AND json_extract(body, '$.sale_id') = ?",
                    (sale_id,),
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
                    "SELECT 1 FROM entries WHERE json_extract(body, '$.code') = ?"
                    " AND type = 'scan' LIMIT 1",
                    (code,),
                ).fetchone()
            ]

        return await self._on_reader(read)

    async def refunds_of(self, receipt_no: int) -> list[Entry]:
        def read() -> list[Entry]:
            rows = self._read().execute(
                f"SELECT {COLUMNS} FROM entries WHERE type = 'refund'"
                " AND json_extract(body, '$.original_receipt_no') = ? ORDER BY seq",
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
                    yield Entry.from_row(row).as_dict()

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

    def _read(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if db is None:
            raise RuntimeError("journal is not open")
        return db


def _hash_at(db: sqlite3.Connection, seq: int) -> str | None:
    row = db.execute("SELECT hash FROM entries WHERE seq = ?", (seq,)).fetchone()
    return row[0] if row else None


# How many of the last entries a start re-checks (a few ms; the whole chain is
# `tillctl journal verify`).
TAIL_CHECKED = 1000


def _broken_tail(db: sqlite3.Connection, head_seq: int) -> int | None:
    """The first broken seq among the journal's last entries, or None."""
    rows = db.execute(
        f"SELECT {COLUMNS} FROM entries WHERE seq > ? ORDER BY seq", (head_seq - TAIL_CHECKED,)
    ).fetchall()
    if not rows:
        return None
    before = db.execute(
        "SELECT seq, hash FROM entries WHERE seq < ? ORDER BY seq DESC LIMIT 1", (rows[0][0],)
    ).fetchone()
    after_seq, after_hash = before if before else (0, GENESIS_HASH)
    return first_broken_seq(
        (Entry.from_row(r).as_dict() for r in rows), after_seq=after_seq, after_hash=after_hash
    )


def _pending_tickets(db: sqlite3.Connection) -> int:
    """Tickets sold here that the back-end has not accepted yet (not valid at gates)."""
    return db.execute("SELECT count(*) FROM tickets WHERE state = 'pending'").fetchone()[0]


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


def _storage_refusal(exc: sqlite3.Error) -> Exception:
    code = getattr(exc, "sqlite_errorcode", None)
    if code == SQLITE_FULL or "full" in str(exc).lower():
        return Refused(
            "storage-full",
            "The till's storage is full, so nothing was recorded. Ask a technician to free "
            "space on the state directory's disk, then try again.",
        )
    if code is not None and code & 0xFF == SQLITE_IOERR:
        return Refused(
            "storage-failed",
            f"The till could not write its journal ({exc}); nothing was recorded. "
            "Ask a technician to check the disk.",
        )
    return exc
