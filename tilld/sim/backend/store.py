"""The reference back-end's state in one SQLite file, and the one thread that owns it.

One class on purpose, though it runs past 500 lines: every method is one
transaction on one connection owned by one thread, and the rules cross the
tables. An accepted sale makes its tickets valid and a refund voids them in
the transaction that stores the entry; a scan reads the tickets the journal
made; a held entry is judged again when its gap closes. Split by table, each
piece would need the others' connection and transaction, so the seams would
be calls across files inside one transaction. The validation that needs no
database is apart (protocol.py), as are the HTTP routes (routes.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...chain import canonical_json
from ...errors import StartupError
from .protocol import (
    DEFAULT_EVENT_CAPACITY,
    DEFAULT_RESERVATION_HOLD_S,
    DEFAULT_SWISH_DELAY_S,
    NEW_CHAIN,
    Catalog,
    ChainHead,
    Problem,
    Rejection,
    ReservationRequest,
    Scan,
    SwishCreate,
    Ticket,
    accepted,
    content_problem,
    duplicate,
    gate_answer,
    line_values,
    load_catalog,
    place_problem,
    rejected,
    rfc3339,
)
from .schema import SCHEMA

log = logging.getLogger("tilld.sim.backend")


@dataclass(frozen=True)
class StoreSettings:
    event_capacity: int = DEFAULT_EVENT_CAPACITY
    reservation_hold_s: float = DEFAULT_RESERVATION_HOLD_S
    swish_auto: str | None = None
    swish_delay_s: float = DEFAULT_SWISH_DELAY_S


class BackendStore:
    """The back-end's state in one SQLite file; every public method is one transaction.

    The methods block. The HTTP layer runs them on one worker thread
    (DatabaseThread), so they never overlap and never stall the event loop;
    sqlite3's same-thread check enforces that owner.
    """

    def __init__(
        self, path: Path, settings: StoreSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.settings = settings
        self.clock = clock
        self._db: sqlite3.Connection | None = None
        self._catalog: Catalog | None = None

    # -- lifecycle ------------------------------------------------------------

    def open(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
            # WAL + synchronous=FULL: an answered write survives a power cut.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StartupError(f"cannot open the back-end database {self.path}: {exc}") from None
        self._db = db
        row = db.execute("SELECT document FROM catalog").fetchone()
        try:
            self._catalog = load_catalog(row[0], str(self.path)) if row else None
        except Problem as exc:
            raise StartupError(f"the stored catalog is not valid: {exc.message}") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the back-end store is not open")
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _now(self) -> str:
        return rfc3339(self.clock())

    def _bump(self, till_id: str, name: str, by: int = 1) -> None:
        if by:
            self.db.execute(
                "INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT (till_id, name) "
                "DO UPDATE SET value = value + excluded.value",
                (till_id, name, by),
            )

    # -- catalog (spec: GET /v1/tills/{till_id}/catalog) ----------------------------

    def set_catalog(self, catalog: Catalog) -> str:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO catalog VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE "
                "SET document = excluded.document, updated_at = excluded.updated_at",
                (catalog.document, self._now()),
            )
        self._catalog = catalog
        return catalog.etag

    def catalog(self) -> Catalog | None:
        return self._catalog

    # -- journal (spec: POST /v1/tills/{till_id}/journal) ---------------------------

    def append_entries(self, till_id: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One result per entry, in order, all decided and stored in one transaction."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT head_seq, head_hash FROM chains WHERE till_id = ?", (till_id,)
            ).fetchone()
            head = ChainHead(*row) if row else NEW_CHAIN
            results = []
            for entry in entries:
                result, head = self._judge(till_id, entry, head)
                results.append(result)
            db.execute(
                "INSERT INTO chains VALUES (?, ?, ?) ON CONFLICT (till_id) DO UPDATE "
                "SET head_seq = excluded.head_seq, head_hash = excluded.head_hash",
                (till_id, head.seq, head.hash),
            )
            for status in ("accepted", "duplicate", "rejected"):
                count = sum(result["status"] == status for result in results)
                self._bump(till_id, f"entries.{status}", count)
        return results

    def _judge(
        self, till_id: str, entry: dict[str, Any], head: ChainHead
    ) -> tuple[dict[str, Any], ChainHead]:
        """Steps 1-5 of the module docstring; returns the result and the new chain head."""
        uuid = entry.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            return rejected(uuid, Rejection("malformed", "uuid must be a non-empty string")), head
        db = self.db
        if db.execute(
            "SELECT 1 FROM entries WHERE till_id = ? AND uuid = ?", (till_id, uuid)
        ).fetchone():
            return duplicate(uuid), head
        held = db.execute(
            "SELECT seq, prev_hash, hash, code, reason FROM held_entries "
            "WHERE till_id = ? AND uuid = ?",
            (till_id, uuid),
        ).fetchone()
        if held is not None:
            return self._judge_again(till_id, entry, *held), head
        problem = place_problem(entry, head)
        if problem is not None:
            if problem.code == "seq-taken":
                problem = self._name_holder(till_id, entry["seq"])
            return rejected(uuid, problem), head
        place = ChainHead(entry["seq"], entry["hash"])
        problem = content_problem(entry)
        if problem is not None:
            self._hold(till_id, entry, problem)
            return rejected(uuid, problem), place
        self._store(till_id, entry)
        return accepted(uuid), place

    def _name_holder(self, till_id: str, seq: int) -> Rejection:
        row = self.db.execute(
            "SELECT uuid FROM entries WHERE till_id = ? AND seq = ? "
            "UNION ALL SELECT uuid FROM held_entries WHERE till_id = ? AND seq = ?",
            (till_id, seq, till_id, seq),
        ).fetchone()
        holder = row[0] if row else "unknown"
        return Rejection("seq-taken", f"seq {seq} already holds another entry (uuid {holder})")

    def _judge_again(
        self,
        till_id: str,
        entry: dict[str, Any],
        seq: int,
        prev_hash: str,
        claimed_hash: str,
        code: str,
        reason: str,
    ) -> dict[str, Any]:
        """A held entry's uuid again: its first rejection, unless it is now whole (a repair)."""
        fits = (entry.get("seq"), entry.get("prev_hash"), entry.get("hash")) == (
            seq,
            prev_hash,
            claimed_hash,
        )
        if not fits or content_problem(entry) is not None:
            return rejected(entry["uuid"], Rejection(code, reason))
        self.db.execute("DELETE FROM held_entries WHERE till_id = ? AND seq = ?", (till_id, seq))
        self._store(till_id, entry)
        log.info("till %s: entry %d (%s) repaired and accepted", till_id, seq, entry["uuid"])
        return accepted(entry["uuid"])

    def _hold(self, till_id: str, entry: dict[str, Any], problem: Rejection) -> None:
        self.db.execute(
            "INSERT INTO held_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                till_id,
                entry["seq"],
                entry["uuid"],
                entry["prev_hash"],
                entry["hash"],
                problem.code,
                problem.reason,
                canonical_json(entry),
                self._now(),
            ),
        )
        if entry.get("type") == "sale":
            # Known but not valid: the module docstring's "pending".
            for code in line_values(entry.get("body"), "ticket_codes"):
                self.db.execute(
                    "INSERT OR IGNORE INTO tickets (code, state, detail, sold_by, updated_at) "
                    "VALUES (?, 'pending', ?, ?, ?)",
                    (code, f"its sale (entry {entry['seq']}) was rejected", till_id, self._now()),
                )

    def _store(self, till_id: str, entry: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                till_id,
                entry["seq"],
                entry["uuid"],
                entry["type"],
                entry["created_at"],
                entry["prev_hash"],
                entry["hash"],
                canonical_json(entry["body"]),
                self._now(),
            ),
        )
        apply = {"sale": self._apply_sale, "refund": self._apply_refund, "void": self._apply_void}
        if entry["type"] in apply:
            apply[entry["type"]](till_id, entry)

    def _apply_sale(self, till_id: str, entry: dict[str, Any]) -> None:
        """spec: "a ticket becomes valid at the gates when its sale is accepted"."""
        now = self._now()
        for code in line_values(entry["body"], "ticket_codes"):
            self.db.execute(
                "INSERT INTO tickets (code, state, sold_by, updated_at) VALUES (?, 'valid', ?, ?) "
                "ON CONFLICT (code) DO UPDATE SET state = 'valid', detail = NULL, "
                "sold_by = excluded.sold_by, updated_at = excluded.updated_at "
                "WHERE tickets.state = 'pending'",
                (code, till_id, now),
            )
        for reservation_id in line_values(entry["body"], "reservation_ids"):
            self.db.execute(
                "UPDATE reservations SET state = 'sold' "
                "WHERE reservation_id = ? AND state = 'held'",
                (reservation_id,),
            )

    def _apply_refund(self, till_id: str, entry: dict[str, Any]) -> None:
        """spec (docs): "Refunded tickets are no longer valid", even if already used."""
        detail = f"refunded at {entry['created_at']} (till {till_id})"
        for code in line_values(entry["body"], "ticket_codes"):
            self.db.execute(
                "INSERT INTO tickets (code, state, detail, updated_at) VALUES (?, 'invalid', ?, ?) "
                "ON CONFLICT (code) DO UPDATE SET state = 'invalid', detail = excluded.detail, "
                "updated_at = excluded.updated_at",
                (code, detail, self._now()),
            )

    def _apply_void(self, till_id: str, entry: dict[str, Any]) -> None:
        """A voided sale gives its reserved seats back."""
        for reservation_id in line_values(entry["body"], "reservation_ids"):
            self.db.execute(
                "UPDATE reservations SET state = 'released' "
                "WHERE reservation_id = ? AND state = 'held'",
                (reservation_id,),
            )

    def journal_head(self, till_id: str) -> dict[str, Any]:
        """The last accepted entry and the highest numbers (spec: GET .../journal/head)."""
        row = self.db.execute(
            "SELECT seq, hash FROM entries WHERE till_id = ? ORDER BY seq DESC LIMIT 1", (till_id,)
        ).fetchone()
        seq, hash_ = row if row else (NEW_CHAIN.seq, NEW_CHAIN.hash)
        numbers = self.db.execute(
            "SELECT max(CASE WHEN type IN ('sale', 'refund') THEN"
            " json_extract(body, '$.receipt_no') END),"
            " max(CASE WHEN type = 'z-report' THEN json_extract(body, '$.z_no') END)"
            " FROM entries WHERE till_id = ?",
            (till_id,),
        ).fetchone()
        return {"seq": seq, "hash": hash_, "receipt_no": numbers[0] or 0, "z_no": numbers[1] or 0}

    def entries_after(self, till_id: str, after_seq: int) -> list[dict[str, Any]]:
        """The accepted entries, exactly the fields the till sent (spec: Inspection)."""
        rows = self.db.execute(
            "SELECT uuid, seq, type, created_at, prev_hash, hash, body FROM entries "
            "WHERE till_id = ? AND seq > ? ORDER BY seq",
            (till_id, after_seq),
        )
        return [
            {
                "uuid": uuid,
                "seq": seq,
                "type": type_,
                "created_at": created_at,
                "prev_hash": prev_hash,
                "hash": hash_,
                "body": json.loads(body),
            }
            for uuid, seq, type_, created_at, prev_hash, hash_, body in rows
        ]

    # -- tickets and scans (spec: POST /v1/tills/{till_id}/scans) ---------------------

    def ticket(self, code: str) -> Ticket | None:
        row = self.db.execute(
            "SELECT code, state, detail, used_at, used_till FROM tickets WHERE code = ?", (code,)
        ).fetchone()
        return Ticket(*row) if row else None

    def register_scans(self, till_id: str, scans: list[Scan]) -> list[dict[str, Any]]:
        """One result per scan, in the order given; a repeated uuid gets its first answer."""
        results = []
        repeats = 0
        with self._transaction() as db:
            for scan in scans:
                first = db.execute(
                    "SELECT status, detail FROM scans WHERE till_id = ? AND uuid = ?",
                    (till_id, scan.uuid),
                ).fetchone()
                if first is not None:
                    repeats += 1
                    status, detail = first
                else:
                    status, detail = self._pass_gate(till_id, scan)
                results.append({"uuid": scan.uuid, "status": status, "detail": detail})
            self._bump(till_id, "scans.repeated", repeats)
        return results

    def _pass_gate(self, till_id: str, scan: Scan) -> tuple[str, str]:
        status, detail = gate_answer(self.ticket(scan.code), scan)
        if status == "registered":
            self.db.execute(
                "UPDATE tickets SET state = 'used', used_at = ?, used_till = ?, updated_at = ? "
                "WHERE code = ?",
                (scan.scanned_at, till_id, self._now(), scan.code),
            )
        self.db.execute(
            "INSERT INTO scans VALUES (?, ?, ?, ?, ?, ?, ?)",
            (till_id, scan.uuid, scan.code, scan.scanned_at, status, detail, self._now()),
        )
        return status, detail

    # -- integrated Swish (spec: POST /v1/tills/{till_id}/swish) ----------------------

    def create_swish(self, till_id: str, request: SwishCreate) -> dict[str, Any]:
        with self._transaction() as db:
            row = db.execute(
                "SELECT id, token FROM swish WHERE till_id = ? AND uuid = ?",
                (till_id, request.uuid),
            ).fetchone()
            if row is None:
                row = ("sw-" + secrets.token_hex(8), secrets.token_urlsafe(16))
                db.execute(
                    "INSERT INTO swish VALUES (?, ?, ?, ?, ?, ?, 'CREATED', ?)",
                    (*row[:1], till_id, request.uuid, request.amount, request.message, row[1],
                     self.clock()),
                )  # fmt: skip
            swish_id, token = row
            return {"id": swish_id, "status": self._swish_status(swish_id), "token": token}

    def swish(self, till_id: str | None, swish_id: str) -> dict[str, Any] | None:
        """{id, status}, or None when no such request (of this till, if till_id is given)."""
        with self._transaction():
            if not self._swish_exists(till_id, swish_id):
                return None
            return {"id": swish_id, "status": self._swish_status(swish_id)}

    def cancel_swish(self, till_id: str, swish_id: str) -> dict[str, Any] | None:
        """Optional extension: only a CREATED request can still be cancelled."""
        with self._transaction() as db:
            if not self._swish_exists(till_id, swish_id):
                return None
            if self._swish_status(swish_id) == "CREATED":
                db.execute("UPDATE swish SET status = 'CANCELLED' WHERE id = ?", (swish_id,))
            return {"id": swish_id, "status": self._swish_status(swish_id)}

    def set_swish_status(self, swish_id: str, status: str) -> dict[str, Any] | None:
        with self._transaction() as db:
            changed = db.execute("UPDATE swish SET status = ? WHERE id = ?", (status, swish_id))
            return {"id": swish_id, "status": status} if changed.rowcount else None

    def _swish_exists(self, till_id: str | None, swish_id: str) -> bool:
        row = self.db.execute("SELECT till_id FROM swish WHERE id = ?", (swish_id,)).fetchone()
        return row is not None and till_id in (None, row[0])

    def _swish_status(self, swish_id: str) -> str:
        """The status, after applying --swish-auto if its delay has passed."""
        status, created = self.db.execute(
            "SELECT status, created_epoch FROM swish WHERE id = ?", (swish_id,)
        ).fetchone()
        auto = self.settings.swish_auto
        if status == "CREATED" and auto and self.clock() >= created + self.settings.swish_delay_s:
            self.db.execute("UPDATE swish SET status = ? WHERE id = ?", (auto, swish_id))
            return auto
        return status

    # -- events (spec: POST /v1/events/{event_id}/reservations) -------------------------

    def reserve(self, event_id: str, request: ReservationRequest) -> dict[str, Any] | None:
        """The reservation, or None when sold out; Problem 404 for an event nobody sells."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT reservation_id, expires_at FROM reservations "
                "WHERE till_id = ? AND uuid = ?",
                (request.till_id, request.uuid),
            ).fetchone()
            if row is not None:
                return {"reservation_id": row[0], "expires_at": row[1]}
            capacity = self._capacity(event_id)
            if capacity is None:
                raise Problem(404, "unknown-event", f"no event {event_id!r} in the catalog")
            if self._taken(event_id) + request.quantity > capacity:
                return None
            reservation_id = "rs-" + secrets.token_hex(8)
            expires = self.clock() + self.settings.reservation_hold_s
            db.execute(
                "INSERT INTO reservations VALUES (?, ?, ?, ?, ?, 'held', ?, ?)",
                (reservation_id, event_id, request.till_id, request.uuid, request.quantity,
                 rfc3339(expires), expires),
            )  # fmt: skip
            return {"reservation_id": reservation_id, "expires_at": rfc3339(expires)}

    def set_capacity(self, event_id: str, capacity: int) -> dict[str, Any]:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO event_capacity VALUES (?, ?) ON CONFLICT (event_id) "
                "DO UPDATE SET capacity = excluded.capacity",
                (event_id, capacity),
            )
            return {"event_id": event_id, "capacity": capacity, "taken": self._taken(event_id)}

    def _capacity(self, event_id: str) -> int | None:
        row = self.db.execute(
            "SELECT capacity FROM event_capacity WHERE event_id = ?", (event_id,)
        ).fetchone()
        if row is not None:
            return row[0]
        in_catalog = self._catalog is not None and event_id in self._catalog.event_ids
        return self.settings.event_capacity if in_catalog else None

    def _taken(self, event_id: str) -> int:
        """Seats sold for good plus seats held by reservations that have not expired."""
        (taken,) = self.db.execute(
            "SELECT coalesce(sum(quantity), 0) FROM reservations WHERE event_id = ? "
            "AND (state = 'sold' OR (state = 'held' AND expires_epoch > ?))",
            (event_id, self.clock()),
        ).fetchone()
        return taken

    # -- control -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts for tests and the demo: exactly-once is checkable from outside."""
        db = self.db
        tills: dict[str, dict[str, int]] = {}

        def add(rows: Any, name: str) -> None:
            for till_id, value in rows:
                tills.setdefault(till_id, {})[name] = value

        add(db.execute("SELECT till_id, count(*) FROM entries GROUP BY till_id"), "entries")
        add(db.execute("SELECT till_id, head_seq FROM chains"), "head_seq")
        add(db.execute("SELECT till_id, count(*) FROM held_entries GROUP BY till_id"), "held")
        add(db.execute("SELECT till_id, count(*) FROM scans GROUP BY till_id"), "scans")
        for till_id, name, value in db.execute("SELECT till_id, name, value FROM counters"):
            tills.setdefault(till_id, {})[name] = value
        names = ("entries", "held", "scans", "entries.duplicate", "entries.rejected")
        for counts in tills.values():
            for name in (*names, "head_seq", "entries.accepted", "scans.repeated"):
                counts.setdefault(name, 0)
        events = {
            event_id: {"capacity": self._capacity(event_id), "taken": self._taken(event_id)}
            for (event_id,) in db.execute(
                "SELECT event_id FROM event_capacity UNION SELECT event_id FROM reservations"
            )
        }
        for event_id in self._catalog.event_ids if self._catalog else ():
            events.setdefault(
                event_id, {"capacity": self._capacity(event_id), "taken": self._taken(event_id)}
            )
        return {
            "tills": tills,
            "totals": {
                name: sum(c[name] for c in tills.values())
                for name in (*names, "entries.accepted", "scans.repeated")
            },
            "tickets": dict(db.execute("SELECT state, count(*) FROM tickets GROUP BY state")),
            "swish": dict(db.execute("SELECT status, count(*) FROM swish GROUP BY status")),
            "events": events,
        }
