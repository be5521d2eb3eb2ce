"""The reference back-end: BACKEND-PROTOCOL.md v1 as a real HTTP server over its own SQLite file.

It is the demo's server, the tests' server and the protocol's living example
for vendors, so every rule it applies is written down here and cited in the
code as "spec: <section>".

    python -m tilld.sim.backend --listen 127.0.0.1:8080 --db backend.sqlite \\
        --token-file backend.token --seed demo

It prints ``listening=http://HOST:PORT`` on stdout once it accepts connections
(``--listen 127.0.0.1:0`` picks a free port) and stops on SIGTERM or SIGINT.

Authentication (spec: Common)
    Every request but ``GET /v1/health`` needs ``Authorization: Bearer <token>``
    with the token from ``--token-file``, the control endpoints included;
    anything else is 401. WITHOUT ``--token-file`` EVERY REQUEST IS ACCEPTED
    (a warning is logged at start): for quick experiments only.

Errors
    A malformed request is 400, a missing token 401, an unknown path or id 404,
    a body over 16 MiB 413, always as ``{"error": "<code>", "message": "..."}``.
    Bad input never causes a 500. More than 1000 journal entries or scans in
    one request is 400 too (the till then splits its batch in halves).

Catalog (spec: GET /v1/tills/{till_id}/catalog)
    Served byte for byte as given; the ETag is a hash of those bytes, so only a
    real change makes a new one. ``--seed demo`` or ``--catalog FILE`` replaces
    the stored catalog at every start; without either the stored one is served
    (404 ``no-catalog`` if there is none).

Journal: how an entry is judged (spec: POST /v1/tills/{till_id}/journal)
    Entries are judged one at a time, in the order given, against the till's
    chain head: the seq and hash of the last entry that took a place in the
    chain (seq 0 and 64 zeros for a new till). A batch is judged exactly as if
    its entries came one per request, and stored in one transaction.

    1. Its uuid is already stored for this till: ``duplicate`` (success).
    2. Its seq already holds another entry: ``rejected`` (code ``seq-taken``).
    3. Its seq is not head + 1 (``seq-gap``), or its prev_hash is not the
       head's hash (``prev-hash-mismatch``): ``rejected``. The entry does not
       fit the chain, so nothing of it is kept; resent, it is judged afresh.
    4. It fits (right seq, right prev_hash, a 64-hex hash) but its content is
       wrong: the hash does not recompute (``bad-hash``) or a field is missing
       or of the wrong type (``malformed``). It is ``rejected in place``: kept
       aside, never in the journal, while the chain head moves on to its seq
       and to the hash the till claims for it. The till keeps a rejected entry,
       reports it and goes on with the next one, whose prev_hash is that
       claimed hash; following it lets every later correct entry be accepted.
    5. Otherwise it is ``accepted``: stored, and the head moves to it.

    A rejected result has the spec's ``reason`` for people and an optional
    ``code`` (the names in brackets above) for programs.

    An entry that fails step 3 therefore also fails every entry of the batch
    that depends on it (each is a seq gap), while one that fails step 4 blocks
    nothing. Exactly-once holds because every (till, uuid) and every
    (till, seq) is decided once: an accepted entry is stored once and answered
    ``duplicate`` ever after; a place held by a rejected entry can be filled by
    no other uuid, and its own uuid gets the same rejection again unless the
    entry now hashes to the claimed hash (it was repaired at the till, e.g.
    restored from a backup), in which case it is accepted into its place.

    Every entry field is covered by the hash (tilld.chain.entry_hash), so an
    entry carrying a top-level field beyond uuid, seq, type, created_at,
    prev_hash, hash and body is ``malformed``: the extra field would be
    unprotected. Unknown entry types are stored like any other.

Journal head (optional extension tilld uses: GET /v1/tills/{till_id}/journal/head)
    ``{"seq", "hash", "receipt_no", "z_no"}``: the till's last accepted entry
    (seq 0 and 64 zeros before the first) and the highest receipt and Z
    numbers accepted. The till checks its journal against it: an entry held
    here must still be in the till's journal with the same hash.

Tickets and scans (spec: POST /v1/tills/{till_id}/scans)
    A ticket is ``valid`` once the sale naming it in a line's ``ticket_codes``
    is accepted, ``used`` once a scan registers it, ``invalid`` once an
    accepted refund names it (also before its sale arrives, e.g. a refund at
    another till), and ``pending`` while the only sale naming it was rejected
    in place: known, not valid; it becomes valid if that sale is repaired.
    Scans are answered in the order given: ``registered`` (detail: the
    scanned_at), ``already-used`` (detail: when and where first used),
    ``invalid`` (pending or refunded; detail says which) or ``unknown``. Order
    of arrival decides, not scanned_at: a passage replayed after an outage
    finds a ticket used meanwhile ``already-used``. A repeated (till, uuid)
    returns its first answer. A ticket code sold twice keeps its first sale.

Inspection (spec: Inspection)
    ``GET /v1/tills/{till_id}/journal?after_seq=N`` lists the accepted entries
    with exactly the fields the till sent; held entries are not in the
    journal. ``GET /v1/tickets/{code}`` adds ``invalid`` to the spec's states,
    ``used_at`` and ``used_till`` for a used ticket and ``detail`` for a pending
    or invalid one; an unknown code is 404 ``unknown-ticket``.

Integrated Swish (spec: POST /v1/tills/{till_id}/swish)
    A request is idempotent by (till, uuid) and starts ``CREATED``. Its outcome
    comes from ``POST /control/swish/{id}``, or, with ``--swish-auto STATUS``,
    becomes STATUS once ``--swish-delay`` seconds have passed (decided when the
    request is next read, so it survives restarts and needs no timers).
    Optional extension (tilld uses it): ``POST .../swish/{id}/cancel`` turns a
    ``CREATED`` request ``CANCELLED``; a request already final keeps its status
    (a customer who paid stays ``PAID``).

Event reservations (spec: POST /v1/events/{event_id}/reservations)
    Capacity per event: set by ``POST /control/events/{event_id}``, else
    ``--event-capacity`` (100) for every event_id named by an event-ticket
    article of the current catalog; any other event is 404 ``unknown-event``.
    A reservation holds its seats until ``expires_at`` (``--reservation-hold``,
    15 min), for good once an accepted sale names it in a line's
    ``reservation_ids``, and no longer once an accepted void names it.
    Idempotent by (till_id, uuid); a sold-out answer is not remembered.

Control endpoints (reference back-end only; same token)
    POST /control/catalog            body: a catalog document -> {"etag"}; validated with
                                     the till's own model (400 naming each problem) unless
                                     ``?validate=no``, which serves it as given, so a test
                                     can show a till refusing what a vendor back-end might send
    POST /control/swish/{id}         {"status": "PAID"|...} -> {"id", "status"}
    POST /control/events/{event_id}  {"capacity": N} -> {"event_id", "capacity", "taken"}
    GET  /control/stats              counts per till (entries, rejections,
                                     duplicates, scans, repeated scans) and totals
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from aiohttp import web

from ..catalog import parse_catalog
from ..chain import CHAINED_FIELDS, GENESIS_HASH, canonical_json, entry_hash
from ..errors import ConfigError, StartupError
from ..logs import setup_logging
from . import EX_CANTCREAT, EX_CONFIG, EX_OK, stop_requested

log = logging.getLogger("tilld.sim.backend")

# sysexits(3), as the tilld command uses them.

HEALTH_PATH = "/v1/health"
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_ITEMS_PER_REQUEST = 1000  # larger journal batches are 400; the till then splits them
DEFAULT_EVENT_CAPACITY = 100
DEFAULT_RESERVATION_HOLD_S = 15 * 60
DEFAULT_SWISH_DELAY_S = 2.0

ENTRY_FIELDS = frozenset((*CHAINED_FIELDS, "hash"))
SALE_FIELDS = {  # spec: POST .../journal, "A sale body has ..."
    "sale_id": str,
    "receipt_no": int,
    "lines": list,
    "payments": list,
    "total": int,
    "vat": list,
    "mode": str,
}
SWISH_STATUSES = ("CREATED", "PAID", "DECLINED", "ERROR", "CANCELLED")
SWISH_OUTCOMES = SWISH_STATUSES[1:]
HEX64 = re.compile(r"[0-9a-f]{64}")

T = TypeVar("T")


# -- errors --------------------------------------------------------------------


class Problem(Exception):
    """A request the back-end answers with an HTTP error: a status, a stable code, a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str) -> Problem:
    return Problem(400, "bad-request", message)


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


# -- values and time -----------------------------------------------------------


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def is_rfc3339(value: object) -> bool:
    """An ISO 8601 date-time with an offset (spec: Common, "Times: RFC 3339 with offset")."""
    if not isinstance(value, str) or "T" not in value.upper():
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number out of range: {text}")
    return number


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN or Infinity (they would not hash the same elsewhere)."""
    try:
        return json.loads(
            raw.decode("utf-8"), parse_constant=_no_constants, parse_float=_finite_float
        )
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise bad_request(f"the body is not JSON: {exc}") from None


@dataclass(frozen=True)
class Scan:
    uuid: str
    code: str
    scanned_at: str


@dataclass(frozen=True)
class SwishCreate:
    uuid: str
    amount: int
    message: str


@dataclass(frozen=True)
class ReservationRequest:
    uuid: str
    till_id: str
    quantity: int


@dataclass(frozen=True)
class Catalog:
    """The served catalog: the document's bytes as given, its ETag and the events it names."""

    document: bytes
    etag: str
    event_ids: frozenset[str]


def load_catalog(raw: bytes, source: str) -> Catalog:
    """Validate a catalog with the till's own model; the ETag is a hash of its bytes."""
    try:
        document = parse_catalog(raw, source)
    except ConfigError as exc:
        raise bad_request("; ".join(exc.problems)) from None
    events = {a.event_id for a in document.articles if a.kind == "event-ticket" and a.event_id}
    etag = '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'
    return Catalog(raw, etag, frozenset(events))


def unchecked_catalog(raw: bytes) -> Catalog:
    """A catalog served as given, one a till should refuse included (tests of that refusal)."""
    try:
        document = json.loads(raw)
        articles = document.get("articles") if isinstance(document, dict) else None
    except ValueError:
        articles = None
    events = {
        a["event_id"]
        for a in articles or ()
        if isinstance(a, dict)
        and a.get("kind") == "event-ticket"
        and isinstance(a.get("event_id"), str)
    }
    etag = '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'
    return Catalog(raw, etag, frozenset(events))


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: a list of (possibly weak) tags, or "*"."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


# -- request bodies (spec: each endpoint's JSON) ------------------------------------


def _items(document: Any, key: str) -> list[dict[str, Any]]:
    """The list under ``key`` of a request body; every item must be a JSON object."""
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        raise bad_request(f'the body must be a JSON object with a list "{key}"')
    items = document[key]
    if len(items) > MAX_ITEMS_PER_REQUEST:
        raise bad_request(f"at most {MAX_ITEMS_PER_REQUEST} {key} per request, got {len(items)}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad_request(f"{key}[{index}] is not a JSON object")
    return items


def _text(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{where}.{name} must be a non-empty string")
    return value


def _count(item: dict[str, Any], name: str, where: str) -> int:
    value = item.get(name)
    if not is_int(value) or value < 1:
        raise bad_request(f"{where}.{name} must be a positive integer")
    return value


def parse_entries(document: Any) -> list[dict[str, Any]]:
    """Only the envelope is checked here; each entry is judged on its own (BackendStore._judge)."""
    return _items(document, "entries")


def parse_scans(document: Any) -> list[Scan]:
    scans = []
    for index, item in enumerate(_items(document, "scans")):
        where = f"scans[{index}]"
        scanned_at = _text(item, "scanned_at", where)
        if not is_rfc3339(scanned_at):
            raise bad_request(f"{where}.scanned_at must be an RFC 3339 time with an offset")
        scans.append(Scan(_text(item, "uuid", where), _text(item, "code", where), scanned_at))
    return scans


def parse_swish_create(document: Any) -> SwishCreate:
    if not isinstance(document, dict):
        raise bad_request("the body must be a JSON object")
    message = document.get("message", "")
    if not isinstance(message, str):
        raise bad_request("message must be a string")
    return SwishCreate(_text(document, "uuid", "body"), _count(document, "amount", "body"), message)


def parse_reservation(document: Any) -> ReservationRequest:
    if not isinstance(document, dict):
        raise bad_request("the body must be a JSON object")
    return ReservationRequest(
        _text(document, "uuid", "body"),
        _text(document, "till_id", "body"),
        _count(document, "quantity", "body"),
    )


# -- judging a journal entry (pure; see "Journal" in the module docstring) -------------


class ChainHead(NamedTuple):
    seq: int
    hash: str


NEW_CHAIN = ChainHead(0, GENESIS_HASH)  # spec: "prev_hash of seq 1 is 64 zeros"


class Rejection(NamedTuple):
    code: str  # an optional field of the result, for programs; reason is for people
    reason: str


def place_problem(entry: dict[str, Any], head: ChainHead) -> Rejection | None:
    """Why the entry does not fit right after ``head`` (steps 2-3), or None."""
    seq = entry.get("seq")
    if not is_int(seq) or seq < 1:
        return Rejection("malformed", "seq must be a positive integer")
    if seq <= head.seq:
        return Rejection("seq-taken", f"seq {seq} already holds another entry of this till")
    if seq != head.seq + 1:
        expected = head.seq + 1
        return Rejection("seq-gap", f"seq {seq} does not follow {head.seq}: expected {expected}")
    if entry.get("prev_hash") != head.hash:
        after = f"the hash of entry {head.seq}" if head.seq else "64 zeros (the genesis hash)"
        return Rejection("prev-hash-mismatch", f"prev_hash is not {after} ({head.hash})")
    if not isinstance(entry.get("hash"), str) or not HEX64.fullmatch(entry["hash"]):
        return Rejection("malformed", "hash must be 64 lower-case hex digits")
    return None


def content_problem(entry: dict[str, Any]) -> Rejection | None:
    """What is wrong inside an entry that fits its place (step 4), or None."""
    extra = sorted(set(entry) - ENTRY_FIELDS)
    if extra:
        return Rejection(
            "malformed",
            f"unexpected field(s) {', '.join(extra)}: a v1 entry has exactly "
            f"{', '.join(sorted(ENTRY_FIELDS))}",
        )
    if not isinstance(entry.get("type"), str) or not entry["type"]:
        return Rejection("malformed", "type must be a non-empty string")
    if not is_rfc3339(entry.get("created_at")):
        return Rejection("malformed", "created_at must be an RFC 3339 time with an offset")
    if not isinstance(entry.get("body"), dict):
        return Rejection("malformed", "body must be a JSON object")
    computed = entry_hash(entry)  # spec: hash = sha256(prev_hash + "\n" + canonical)
    if computed != entry["hash"]:
        return Rejection("bad-hash", f"hash does not recompute: the entry hashes to {computed}")
    problem = body_problem(entry["type"], entry["body"])
    return Rejection("malformed", problem) if problem else None


def body_problem(type_: str, body: dict[str, Any]) -> str | None:
    """Check what the back-end reads from a body: the spec's sale fields and the lines' lists."""
    if type_ == "sale":
        for name, kind in SALE_FIELDS.items():
            value = body.get(name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                return f"a sale body needs {name} ({kind.__name__})"
    if type_ not in ("sale", "refund", "void"):
        return None  # spec: "a back-end stores types it does not know"
    lines = body.get("lines", [])
    if not isinstance(lines, list):
        return "body.lines must be a list"
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            return f"body.lines[{index}] must be an object"
        for name in ("ticket_codes", "reservation_ids"):
            values = line.get(name, [])
            if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
                return f"body.lines[{index}].{name} must be a list of non-empty strings"
    return None


def line_values(body: Any, name: str) -> list[str]:
    """Every string in ``body.lines[*].<name>``, tolerating a malformed body (held entries)."""
    lines = body.get("lines") if isinstance(body, dict) else None
    values: list[str] = []
    for line in lines if isinstance(lines, list) else ():
        found = line.get(name) if isinstance(line, dict) else None
        values += [v for v in found if isinstance(v, str) and v] if isinstance(found, list) else []
    return values


def accepted(uuid: str) -> dict[str, Any]:
    return {"uuid": uuid, "status": "accepted"}


def duplicate(uuid: str) -> dict[str, Any]:
    return {"uuid": uuid, "status": "duplicate"}


def rejected(uuid: Any, rejection: Rejection) -> dict[str, Any]:
    return {"uuid": uuid, "status": "rejected", "reason": rejection.reason, "code": rejection.code}


# -- the gate (pure) -----------------------------------------------------------


class Ticket(NamedTuple):
    code: str
    state: str  # pending | valid | used | invalid
    detail: str | None
    used_at: str | None
    used_till: str | None


def gate_answer(ticket: Ticket | None, scan: Scan) -> tuple[str, str]:
    """A scan's status and detail for the ticket as it is now (spec: POST .../scans)."""
    if ticket is None:
        return "unknown", "no ticket has this code"
    if ticket.state == "valid":
        return "registered", scan.scanned_at
    if ticket.state == "used":
        return "already-used", f"first used at {ticket.used_at} (till {ticket.used_till})"
    return "invalid", ticket.detail or ticket.state


# -- the store -----------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    document BLOB NOT NULL,
    updated_at TEXT NOT NULL
);
-- The head of each till's chain: the last entry that took a place, accepted or held.
CREATE TABLE IF NOT EXISTS chains (
    till_id TEXT PRIMARY KEY,
    head_seq INTEGER NOT NULL,
    head_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    till_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    uuid TEXT NOT NULL,
    type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (till_id, seq),
    UNIQUE (till_id, uuid)
);
-- Entries rejected in place (module docstring, step 4): they hold their seq.
CREATE TABLE IF NOT EXISTS held_entries (
    till_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    uuid TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    entry TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (till_id, seq),
    UNIQUE (till_id, uuid)
);
CREATE TABLE IF NOT EXISTS tickets (
    code TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('pending', 'valid', 'used', 'invalid')),
    detail TEXT,
    sold_by TEXT,
    used_at TEXT,
    used_till TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scans (
    till_id TEXT NOT NULL,
    uuid TEXT NOT NULL,
    code TEXT NOT NULL,
    scanned_at TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    received_at TEXT NOT NULL,
    PRIMARY KEY (till_id, uuid)
);
CREATE TABLE IF NOT EXISTS swish (
    id TEXT PRIMARY KEY,
    till_id TEXT NOT NULL,
    uuid TEXT NOT NULL,
    amount INTEGER NOT NULL,
    message TEXT NOT NULL,
    token TEXT NOT NULL,
    status TEXT NOT NULL,
    created_epoch REAL NOT NULL,
    UNIQUE (till_id, uuid)
);
CREATE TABLE IF NOT EXISTS event_capacity (
    event_id TEXT PRIMARY KEY,
    capacity INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    till_id TEXT NOT NULL,
    uuid TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'sold', 'released')),
    expires_at TEXT NOT NULL,
    expires_epoch REAL NOT NULL,
    UNIQUE (till_id, uuid)
);
CREATE INDEX IF NOT EXISTS reservations_event ON reservations (event_id, state);
-- What the tables do not show: duplicates answered, rejections not kept, repeated scans.
CREATE TABLE IF NOT EXISTS counters (
    till_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (till_id, name)
);
"""


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


class DatabaseThread:
    """The one thread that runs the store's blocking methods (STYLE lesson 6: one owner)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backend-db")

    async def run(self, method: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(method, *args))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


# -- HTTP --------------------------------------------------------------------------


async def read_json(request: web.Request) -> Any:
    """The body as JSON; aiohttp refuses one over MAX_BODY_BYTES with 413."""
    return parse_json(await request.read())


class ReferenceBackend:
    """The HTTP adapter: parses requests, asks the store, answers JSON. It decides nothing."""

    def __init__(self, store: BackendStore, db: DatabaseThread, token: str | None) -> None:
        self.store = store
        self.db = db
        self.token = token

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_BODY_BYTES, middlewares=[json_errors, self.require_token]
        )
        app.add_routes(
            [
                web.get(HEALTH_PATH, self.health),
                web.get("/v1/tills/{till_id}/catalog", self.get_catalog),
                web.post("/v1/tills/{till_id}/journal", self.post_journal),
                web.get("/v1/tills/{till_id}/journal", self.get_journal),
                web.get("/v1/tills/{till_id}/journal/head", self.get_journal_head),
                web.post("/v1/tills/{till_id}/scans", self.post_scans),
                web.post("/v1/tills/{till_id}/swish", self.post_swish),
                web.get("/v1/tills/{till_id}/swish/{swish_id}", self.get_swish),
                web.post("/v1/tills/{till_id}/swish/{swish_id}/cancel", self.cancel_swish),
                web.post("/v1/events/{event_id}/reservations", self.post_reservation),
                web.get("/v1/tickets/{code}", self.get_ticket),
                web.post("/control/catalog", self.control_catalog),
                web.post("/control/swish/{swish_id}", self.control_swish),
                web.post("/control/events/{event_id}", self.control_event),
                web.get("/control/stats", self.control_stats),
            ]
        )
        return app

    @web.middleware
    async def require_token(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """spec: Common, "Every request but /v1/health carries Authorization: Bearer"."""
        if self.token is None or request.path == HEALTH_PATH:
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            response = error_response(401, "unauthorized", "missing or wrong bearer token")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return await handler(request)

    # -- the protocol ------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def get_catalog(self, request: web.Request) -> web.Response:
        catalog = await self.db.run(self.store.catalog)
        if catalog is None:
            raise Problem(404, "no-catalog", "no catalog yet: start with --seed or --catalog")
        headers = {"ETag": catalog.etag}
        if etag_matches(request.headers.get("If-None-Match"), catalog.etag):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=catalog.document, content_type="application/json", charset="utf-8", headers=headers
        )

    async def post_journal(self, request: web.Request) -> web.Response:
        till_id = request.match_info["till_id"]
        entries = parse_entries(await read_json(request))
        results = await self.db.run(self.store.append_entries, till_id, entries)
        log_journal_results(till_id, results)
        return web.json_response({"results": results})

    async def get_journal(self, request: web.Request) -> web.Response:
        after = request.query.get("after_seq", "0")
        if not after.isdecimal():
            raise bad_request("after_seq must be a non-negative integer")
        entries = await self.db.run(
            self.store.entries_after, request.match_info["till_id"], int(after)
        )
        return json_response({"entries": entries})

    async def get_journal_head(self, request: web.Request) -> web.Response:
        head = await self.db.run(self.store.journal_head, request.match_info["till_id"])
        return json_response(head)

    async def post_scans(self, request: web.Request) -> web.Response:
        till_id = request.match_info["till_id"]
        scans = parse_scans(await read_json(request))
        results = await self.db.run(self.store.register_scans, till_id, scans)
        log.info("till %s: %d scan(s): %s", till_id, len(results), tally(results))
        return web.json_response({"results": results})

    async def get_ticket(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        ticket = await self.db.run(self.store.ticket, code)
        if ticket is None:
            raise Problem(404, "unknown-ticket", f"no ticket {code!r}")
        view: dict[str, Any] = {"code": ticket.code, "state": ticket.state}
        if ticket.state == "used":
            view.update(used_at=ticket.used_at, used_till=ticket.used_till)
        elif ticket.detail:
            view["detail"] = ticket.detail
        return web.json_response(view)

    async def post_swish(self, request: web.Request) -> web.Response:
        till_id = request.match_info["till_id"]
        create = parse_swish_create(await read_json(request))
        reply = await self.db.run(self.store.create_swish, till_id, create)
        log.info("till %s: Swish request %s for %d öre", till_id, reply["id"], create.amount)
        return web.json_response(reply, status=201)

    async def get_swish(self, request: web.Request) -> web.Response:
        info = request.match_info
        return web.json_response(
            found(await self.db.run(self.store.swish, info["till_id"], info["swish_id"]), info)
        )

    async def cancel_swish(self, request: web.Request) -> web.Response:
        info = request.match_info
        reply = await self.db.run(self.store.cancel_swish, info["till_id"], info["swish_id"])
        return web.json_response(found(reply, info))

    async def post_reservation(self, request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        wanted = parse_reservation(await read_json(request))
        reservation = await self.db.run(self.store.reserve, event_id, wanted)
        if reservation is None:
            log.info("event %s: sold out for %s (%d)", event_id, wanted.till_id, wanted.quantity)
            return web.json_response({"reason": "sold-out"}, status=409)
        return web.json_response(reservation, status=201)

    # -- control (reference back-end only) --------------------------------------

    async def control_catalog(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.query.get("validate") == "no":
            catalog = unchecked_catalog(raw)
        else:
            catalog = load_catalog(raw, "POST /control/catalog")
        etag = await self.db.run(self.store.set_catalog, catalog)
        log.info("catalog replaced; ETag %s", etag)
        return web.json_response({"etag": etag})

    async def control_swish(self, request: web.Request) -> web.Response:
        document = await read_json(request)
        status = document.get("status") if isinstance(document, dict) else None
        if status not in SWISH_STATUSES:
            raise bad_request(f"status must be one of {', '.join(SWISH_STATUSES)}")
        swish_id = request.match_info["swish_id"]
        reply = await self.db.run(self.store.set_swish_status, swish_id, status)
        log.info("Swish request %s set to %s", swish_id, status)
        return web.json_response(found(reply, request.match_info))

    async def control_event(self, request: web.Request) -> web.Response:
        document = await read_json(request)
        capacity = document.get("capacity") if isinstance(document, dict) else None
        if not is_int(capacity) or capacity < 0:
            raise bad_request("capacity must be a non-negative integer")
        event_id = request.match_info["event_id"]
        return web.json_response(await self.db.run(self.store.set_capacity, event_id, capacity))

    async def control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(await self.db.run(self.store.stats))


def found(reply: dict[str, Any] | None, match_info: Any) -> dict[str, Any]:
    if reply is None:
        raise Problem(404, "unknown-swish", f"no Swish request {match_info['swish_id']!r}")
    return reply


def json_response(data: Any) -> web.Response:
    """JSON with non-ASCII kept, as the till's own entries are."""
    return web.json_response(data, dumps=partial(json.dumps, ensure_ascii=False))


def tally(results: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "none"


def log_journal_results(till_id: str, results: list[dict[str, Any]]) -> None:
    log.info("till %s: %d entr%s: %s", till_id, len(results), "y" if len(results) == 1 else "ies",
             tally(results))  # fmt: skip
    for result in results:
        if result["status"] == "rejected":
            log.warning("till %s: entry %s rejected: %s", till_id, result["uuid"], result["reason"])


HTTP_ERROR_CODES = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
}


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error as JSON with a stable code; never a traceback across the API (STYLE 15)."""
    try:
        return await handler(request)
    except Problem as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_ERROR_CODES.get(exc.status, "http-error")
        message = exc.text or exc.reason
        if exc.status in (404, 405):
            message = f"{exc.reason}: {request.method} {request.path}"
        return error_response(exc.status, code, message)
    except Exception:
        log.exception("internal error answering %s %s", request.method, request.path)
        return error_response(500, "internal", "the back-end failed; see its log")


# -- running it ------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendSettings:
    host: str
    port: int
    db_path: Path
    token: str | None
    catalog: Catalog | None
    store: StoreSettings


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdecimal() or int(port) > 65535:
        raise StartupError(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def read_token(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StartupError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token:
        raise StartupError(f"the token file {path} is empty")
    return token


def read_start_catalog(seed: str | None, catalog_file: str | None) -> Catalog | None:
    if seed == "demo":
        raw = resources.files("tilld.demo").joinpath("catalog.json").read_bytes()
        source = "the demo catalog"
    elif catalog_file is not None:
        try:
            raw = Path(catalog_file).read_bytes()
        except OSError as exc:
            raise StartupError(f"cannot read --catalog {catalog_file}: {exc.strerror}") from None
        source = catalog_file
    else:
        return None
    try:
        return load_catalog(raw, source)
    except Problem as exc:
        raise StartupError(f"the catalog is not valid: {exc.message}") from None


def settings_from_args(args: argparse.Namespace) -> BackendSettings:
    host, port = parse_listen(args.listen)
    for name in ("swish_delay", "reservation_hold"):
        if getattr(args, name) < 0:
            raise StartupError(f"--{name.replace('_', '-')} must not be negative")
    return BackendSettings(
        host=host,
        port=port,
        db_path=Path(args.db),
        token=read_token(args.token_file),
        catalog=read_start_catalog(args.seed, args.catalog),
        store=StoreSettings(
            event_capacity=args.event_capacity,
            reservation_hold_s=args.reservation_hold,
            swish_auto=args.swish_auto,
            swish_delay_s=args.swish_delay,
        ),
    )


async def serve(settings: BackendSettings) -> None:
    """Start-up reads like a list; shutdown is the same list in reverse (STYLE 16)."""
    store = BackendStore(settings.db_path, settings.store)
    db = DatabaseThread()
    try:
        await db.run(store.open)
        if settings.catalog is not None:
            await db.run(store.set_catalog, settings.catalog)
        runner = web.AppRunner(
            ReferenceBackend(store, db, settings.token).app(), access_log=None, handle_signals=False
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.host, settings.port)
            await site.start()
            announce_listening(runner)
            if settings.token is None:
                log.warning("no --token-file: every request is accepted without a token")
            await stop_requested()
            log.info("stopping")
        finally:
            await runner.cleanup()
    finally:
        await db.run(store.close)
        db.shutdown()


def announce_listening(runner: web.AppRunner) -> None:
    host, port = runner.addresses[0][:2]
    host = f"[{host}]" if ":" in host else host
    log.info("listening on http://%s:%d", host, port)
    print(f"listening=http://{host}:{port}", flush=True)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (port 0: any free)")
    parser.add_argument("--db", required=True, help="the back-end's SQLite file")
    parser.add_argument(
        "--token-file", help="file holding the bearer token (without it, every request is accepted)"
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--seed", choices=["demo"], help="serve the demo catalog")
    start.add_argument("--catalog", metavar="FILE", help="serve this catalog document")
    parser.add_argument(
        "--swish-auto", choices=SWISH_OUTCOMES, help="Swish outcome after --swish-delay seconds"
    )
    parser.add_argument("--swish-delay", type=float, default=DEFAULT_SWISH_DELAY_S, metavar="S")
    parser.add_argument(
        "--event-capacity",
        type=int,
        default=DEFAULT_EVENT_CAPACITY,
        metavar="N",
        help="seats of each catalog event without a capacity set by /control/events",
    )
    parser.add_argument(
        "--reservation-hold",
        type=float,
        default=DEFAULT_RESERVATION_HOLD_S,
        metavar="S",
        help="seconds a reservation holds its seats unless a sale names it",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def add_backend_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``backend`` to an argparse subparsers object (e.g. ``tilld sim backend``)."""
    parser = subparsers.add_parser(
        "backend",
        help="run the reference back-end (BACKEND-PROTOCOL.md)",
        description="The reference back-end: the protocol's server for the demo and the tests.",
    )
    add_backend_arguments(parser)
    parser.set_defaults(run=run_backend)
    return parser


def run_backend(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        settings = settings_from_args(args)
    except StartupError as exc:
        log.critical("cannot start the back-end: %s", exc)
        return EX_CONFIG
    try:
        asyncio.run(serve(settings))
    except (StartupError, OSError) as exc:
        log.critical("cannot start the back-end: %s", exc)
        return EX_CANTCREAT
    return EX_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tilld.sim.backend", description="The tilld reference back-end."
    )
    add_backend_arguments(parser)
    return run_backend(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
