"""The back-end protocol's pure half: request bodies, and how an entry and a scan are judged.

No I/O: the store applies these decisions, the routes parse with them. See the
package docstring for the rules cited as "spec: <section>".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from ...catalog import parse_catalog
from ...chain import CHAINED_FIELDS, GENESIS_HASH, entry_hash
from ...errors import ConfigError

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
