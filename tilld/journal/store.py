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

One thread owns the write connection (writer.py); the asyncio loop never
blocks on fsync. Two more threads, each with its own read-only connection, serve the
reads: one the lookups a cashier waits for (a receipt, a sale), the other
long reads (sync batches, verify, export, reports), so neither holds up a
sale and a long read never holds up a lookup. A long backlog's sync batches
are read in a process of their own (batches.py), beside the GIL.

This module is the core every part of the journal stands on (the package
docstring lists the parts). It stays one file, about 550 lines,
because opening, the write transaction and append keep one set of
invariants on one connection; split, each half would need the other's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import uuid as uuidlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..chain import (
    GENESIS_HASH,
    canonical_body,
    canonical_json,
    entry_hash,
    entry_hash_with_body,
    first_broken_seq,
)
from ..errors import Reason, Refused, StartupError
from ..integrity import OK, ROLLBACK_ACKNOWLEDGED, Head, HeadFile, Verdict, judge, worse
from ..sdnotify import Notifier
from .batches import BatchProcess, file_identity
from .entry import Entry, Fill, SideEffect, now_with_offset
from .migrate import migrate
from .rows import chain_view, hash_text, row_values
from .schema import COLUMNS, NUMBER_SERIES, SCHEMA, SCHEMA_VERSION, STORED_COLUMNS
from .writer import WriterConnection, WriterThread, mark_synchronous_full

log = logging.getLogger("tilld.journal")

T = TypeVar("T")

# SQLite result codes (sqlite3.h) that mean the storage itself failed.
SQLITE_FULL = 13
SQLITE_IOERR = 10


class JournalStore:
    def __init__(self, path: Path, till_id: str, notifier: Notifier | None = None) -> None:
        self.path = path
        self.till_id = till_id
        # systemd, asked for more start-up time while an older journal is moved.
        self.notifier = notifier or Notifier(None)
        self._writer = WriterThread("journal-writer")
        # Two readers: lookups a cashier waits for (a receipt, a sale) never
        # queue behind a sync batch, a report or an export on the bulk one.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-reader")
        self._bulk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-bulk")
        self._batches = BatchProcess(path)  # a long backlog's sync batches (batches.py)
        self._db: sqlite3.Connection | None = None
        self._readers = threading.local()  # each reader thread's read-only connection
        self.head_seq = 0
        self.head_hash = GENESIS_HASH
        self.head_file = HeadFile(path.with_name(path.stem + ".head"))
        self.numbers = dict.fromkeys(NUMBER_SERIES, 0)  # the last number issued per series
        self._floors: dict[
            str, int
        ] = {}  # meta's floor:<series>, raised by a rollback's acknowledgement
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

        # Last: sync's bookkeeping already asked for is recorded before the
        # connection closes, not refused with "journal is not open".
        await self._on_writer(close_writer, last=True)
        await self._on_reader(close_reader)
        await self._on_bulk(close_reader)
        # Each thread has finished its last job (awaited above); joining them
        # here would block the event loop for nothing.
        self._writer.shutdown()
        for pool in (self._reader, self._bulk):
            pool.shutdown(wait=False)
        await self._batches.close()

    def _connect(
        self, factory: type[sqlite3.Connection] = sqlite3.Connection
    ) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10, factory=factory)
        db.execute("PRAGMA busy_timeout = 10000")
        return db

    def _open_writer(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect(WriterConnection)
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            db.execute("PRAGMA synchronous = FULL")
            synchronous = db.execute("PRAGMA synchronous").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._cannot_open(exc) from exc
        db.synchronous_full = synchronous == 2
        if mode.lower() != "wal" or synchronous != 2:
            db.close()
            raise StartupError(
                f"the journal {self.path} cannot be made durable here (journal_mode={mode}, "
                f"synchronous={synchronous}; need wal and 2=FULL). Put the state directory on "
                "a local filesystem that supports SQLite WAL."
            )
        try:
            # Another till's journal is refused before an older one is moved.
            self._refuse_another_tills(db)
            # Before foreign keys are on: moving an older journal swaps a table.
            migrate(db, self.path, self.notifier)
            db.execute("PRAGMA foreign_keys = ON")
            # One transaction: a new journal's schema costs one fsync, not ~25.
            db.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\nCOMMIT;")
            self._db = db
            self._batches.journal_file = file_identity(self.path)
            self._check_owner(db)
            row = db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        except StartupError:
            db.close()
            self._db = None
            raise
        except sqlite3.Error as exc:
            db.close()
            self._db = None
            raise self._cannot_open(exc) from exc
        if row:
            self.head_seq, self.head_hash = row[0], hash_text(row[1])
        self._floors = self._read_floors(db)
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
        if self._head_file_follows:
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
        self._refuse_owner(rows.get("till_id", self.till_id))

    def _refuse_another_tills(self, db: sqlite3.Connection) -> None:
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'till_id'").fetchone()
        except sqlite3.OperationalError:
            return  # a new journal: no meta table yet
        if row is not None:
            self._refuse_owner(row[0])

    def _refuse_owner(self, owner: str) -> None:
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

    async def _on_writer(self, fn: Callable[..., T], *args: Any, last: bool = False) -> T:
        """Run ``fn`` on the writer thread; ``last``: after whatever else is queued (writer.py)."""
        return await self._writer.run(fn, *args, last=last)

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
            raise Refused(Reason.JOURNAL_ROLLED_BACK, self.integrity.message)
        with self._transaction(db):
            if number is not None:
                body = {**body, number: self._next_number(db, number)}
            if fill is not None:
                body = {**body, **fill(db)}
            entry, body_text = self._build_entry(type_, body)
            self._insert(db, entry, body_text)
            for effect in effects:
                effect(db, entry)
        self._committed(entry, number)
        return entry

    @staticmethod
    def _insert(db: sqlite3.Connection, entry: Entry, body_text: str | None = None) -> None:
        """Store ``entry``; ``body_text``: its body's canonical JSON, if already made."""
        values = row_values(
            entry.seq,
            entry.uuid,
            entry.type,
            entry.created_at,
            canonical_json(entry.body) if body_text is None else body_text,
            entry.prev_hash,
            entry.hash,
            entry.body,
        )
        db.execute(
            f"INSERT INTO entries ({STORED_COLUMNS}) VALUES ({', '.join('?' * len(values))})",
            values,
        )

    def _committed(self, entry: Entry, number: str | None) -> None:
        self.head_seq, self.head_hash = entry.seq, entry.hash
        if number is not None:
            self.numbers[number] = entry.body[number]
        if self._head_file_follows:
            self.head_file.write(self.head)

    @property
    def _head_file_follows(self) -> bool:
        # A journal that went back or was rewritten keeps its head file as it
        # was: the evidence stays, and a restart cannot make it look whole.
        return self.integrity.state not in ("rolled-back", "diverged")

    def _build_entry(self, type_: str, body: dict[str, Any]) -> tuple[Entry, str]:
        """The next entry, and its body's canonical JSON (hashed, and stored as it is)."""
        # Through JSON and back, so the hashed body is exactly what is stored.
        body, body_text = canonical_body(body)
        fields = {
            "uuid": str(uuidlib.uuid4()),
            "seq": self.head_seq + 1,
            "type": type_,
            "created_at": now_with_offset(),
            "prev_hash": self.head_hash,
            "body": body,
        }
        return Entry(hash=entry_hash_with_body(fields, body_text), **fields), body_text

    def _next_number(self, db: sqlite3.Connection, series: str) -> int:
        # A series' column is filled for its entry types only (rows.LOOKUP_FIELDS);
        # INDEXED BY keeps this one step at any size.
        row = db.execute(
            f"SELECT {series} FROM entries INDEXED BY entries_{series}"
            f" WHERE {series} IS NOT NULL ORDER BY {series} DESC LIMIT 1"
        ).fetchone()
        # After an acknowledged rollback, numbers go on after the lost ones.
        return max(row[0] if row else 0, self._floors.get(series, 0)) + 1

    @staticmethod
    def _read_floors(db: sqlite3.Connection) -> dict[str, int]:
        """The floors in meta (``floor:<series>``): read at open, and only
        acknowledge_rollback writes them, so a commit need not read them again."""
        rows = db.execute("SELECT key, value FROM meta WHERE key LIKE 'floor:%'").fetchall()
        return {key.removeprefix("floor:"): int(value) for key, value in rows}

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
                    Reason.JOURNAL_NOT_ROLLED_BACK,
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
            self._floors.update(floors)
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
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; storage errors become refusals.

        ``fsync=False`` does not wait for the disk: a kill -9 keeps the commit,
        a power cut may lose it. Only for what the back-end's answers rebuild
        (sync's results: the entries go again, answered `duplicate`).
        """

        def __init__(self, db: sqlite3.Connection, *, fsync: bool = True) -> None:
            self.db = db
            self.fsync = fsync

        def __enter__(self) -> sqlite3.Connection:
            try:
                # FULL unless known to be: a bookkeeping transaction whose end
                # failed must not leave the next sale's commit without its fsync.
                # (Set only when it changes: a statement less in every commit.)
                if not self.fsync:
                    mark_synchronous_full(self.db, False)
                    self.db.execute("PRAGMA synchronous = NORMAL")
                elif not getattr(self.db, "synchronous_full", False):
                    self.db.execute("PRAGMA synchronous = FULL")
                    mark_synchronous_full(self.db, True)
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                self._durable_again()
                raise _storage_refusal(exc) from exc
            return self.db

        def __exit__(self, exc_type, exc, _tb) -> bool:
            try:
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
            finally:
                self._durable_again()

        def _durable_again(self) -> None:
            if not self.fsync:
                self.db.execute("PRAGMA synchronous = FULL")
                mark_synchronous_full(self.db, True)

        def _rollback(self) -> None:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")

    def _require_writer(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("journal is not open")
        return self._db

    def _read(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if db is None:
            raise RuntimeError("journal is not open")
        return db


def _hash_at(db: sqlite3.Connection, seq: int) -> str | None:
    row = db.execute("SELECT hash FROM entries WHERE seq = ?", (seq,)).fetchone()
    return hash_text(row[0]) if row else None


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
    after_seq, after_hash = (before[0], hash_text(before[1])) if before else (0, GENESIS_HASH)
    return first_broken_seq(
        (chain_view(r) for r in rows), after_seq=after_seq, after_hash=after_hash
    )


def _storage_refusal(exc: sqlite3.Error) -> Exception:
    code = getattr(exc, "sqlite_errorcode", None)
    if code == SQLITE_FULL or "full" in str(exc).lower():
        return Refused(
            Reason.STORAGE_FULL,
            "The till's storage is full, so nothing was recorded. Ask a technician to free "
            "space on the state directory's disk, then try again.",
        )
    if code is not None and code & 0xFF == SQLITE_IOERR:
        return Refused(
            Reason.STORAGE_FAILED,
            f"The till could not write its journal ({exc}); nothing was recorded. "
            "Ask a technician to check the disk.",
        )
    return exc
