"""How an entry is stored in a row of the entries table, and read back, both ways.

The hash chain (tilld/chain.py) is over an entry's canonical JSON; how a row
holds it is a storage matter only, so a row is made small and every read
gives back exactly the values that were hashed:

- ``body`` is the canonical JSON, deflated with a preset dictionary of the
  journal's own keys, after one format byte (FORMAT_DEFLATE). Each quoted
  UUID in the text is stored as 16 bytes (a uuid4 is random: as hex text it
  costs deflate more than twice that). Decompressing gives the canonical
  text back byte for byte, so what is sent to the back-end is unchanged.
- ``uuid`` is 16 bytes, ``prev_hash`` and ``hash`` 32 bytes each.
- A value written by an older tilld (schema 1: canonical JSON text, hex
  hashes, uuid text), or one that is not in the canonical form, is TEXT and
  is read as it is. A row is never rewritten, so an edited one keeps its
  evidence and ``journal verify`` still finds it.

The looked-up fields (receipt numbers, sale ids, ticket codes) are copied into
columns of their own when the entry is stored, so an index finds them without
opening the compressed body.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

FORMAT_DEFLATE = 1

# NEVER CHANGE THIS TEXT: every body stored with FORMAT_DEFLATE needs exactly
# it to be read again. A better dictionary is a new format byte. It holds what
# the journal's entries are made of (deflate finds the longest match nearest
# the end best, so the commonest entries, a sale and a ticket scan, come last).
DICTIONARY = (
    b'{"acknowledged_by":"","continues_from":{"hash":"","seq":},"local_head":{"hash":"","seq":},'
    b'"lost_head":{"hash":"","receipt_no":,"seq":,"z_no":},"reason":""}'
    b'{"amount":,"previous":,"change":,"by":"","note":""}'
    b'{"counts":{"entries":,"receipts":,"refunds":,"voids":,"scans":},"period":{"from_seq":,'
    b'"to_seq":,"from":"","to":""},"totals":{"sales":,"refunds":,"net":},"by_method":{"card":,'
    b'"cash":,"swish":},"grand_total":,"z_no":,"x_no":}'
    b'{"authorisation":"","card":"","masked_pan":"","outcome":"approved","declined","terminal_id":"",'
    b'"trace":,"offline":true,"false,"intent_seq":,"result":"","status":"","reference":null,}'
    b'{"original_receipt_no":,"reason":"","refunded_lines":[{"line_id":,"tickets":["TK"],'
    b'"event_id":"","fallback_plu":"","barcode":"","discount":,"note":"","voided_at":"",'
    b'"control_code":"","unit_id":"","copy":false,"kind":"ticket","refund","returned",'
    b'"method":"swish","method":"card","method":"cash","amount":-,"tendered":,"change":0,'
    b'"mode":"offline","mode":"online","source":"scanner","source":"dbus",'
    b'"local_check":"already-scanned","local_check":"refunded","local_check":"sold-here",'
    b'{"code":"TK","local_check":"not-known-locally","mode":"no-internet",'
    b'"scanned_at":"2026-11-26T11:55:13.350+01:00","source":"api"}'
    b'{"lines":[{"amount":3500,"kind":"goods","line_id":1,"name":"Kaffe","plu":"300",'
    b'"quantity":1,"unit_price":3500,"vat_rate":12},{"amount":3000,"kind":"goods","line_id":2,'
    b'"name":"Kanelbulle","plu":"301","quantity":1,"unit_price":3000,"vat_rate":12},'
    b'{"amount":1500,"kind":"goods","line_id":3,"name":"Vykort","plu":"400","quantity":1,'
    b'"unit_price":1500,"vat_rate":25}],"mode":"online","opened_at":"2026-11-26T11:54:58.050+01:00",'
    b'"payments":[{"amount":8000,"change":2000,"method":"cash","payment_id":"\x00","tendered":10000}],'
    b'"receipt_no":1,"sale_id":"\x00","total":8000,"vat":[{"gross":1500,"net":1200,"rate":25,'
    b'"vat":300},{"gross":6500,"net":5804,"rate":12,"vat":696}]}'
)

# A quoted lowercase UUID in canonical JSON. JSON escapes every control
# character, so the marker byte (NUL) never occurs in the text itself.
_UUID_TEXT = re.compile(rb'"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"')
_UUID_BYTES = re.compile(rb'"\x00(.{16})"', re.DOTALL)
_MARK = b"\x00"
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# The fields an index looks entries up by, the entry types each is kept for,
# in the order of their columns (schema.py).
LOOKUP_FIELDS: dict[str, tuple[str, ...]] = {
    "receipt_no": ("sale", "refund"),
    "sale_id": ("sale", "void"),
    "code": ("scan",),
    "z_no": ("z-report",),
    "original_receipt_no": ("refund",),
}


# -- body ----------------------------------------------------------------------


def pack_body(canonical: str) -> bytes:
    text = _UUID_TEXT.sub(
        lambda m: b'"' + _MARK + bytes.fromhex(m[1].replace(b"-", b"").decode()) + b'"',
        canonical.encode("utf-8"),
    )
    # A 4 KiB window holds the dictionary and a typical entry; a small window
    # and memLevel make setting up the compressor (most of its cost) 4x cheaper.
    # Reading takes any window (body_text inflates with the largest).
    deflate = zlib.compressobj(9, zlib.DEFLATED, -12, 4, zdict=DICTIONARY)
    return bytes([FORMAT_DEFLATE]) + deflate.compress(text) + deflate.flush()


def body_text(stored: str | bytes) -> str:
    """The canonical JSON of a stored body, exactly as it was hashed."""
    if isinstance(stored, str):
        return stored
    if not stored or stored[0] != FORMAT_DEFLATE:
        raise ValueError(f"a journal body in an unknown format ({stored[:1].hex() or 'empty'})")
    inflate = zlib.decompressobj(-15, zdict=DICTIONARY)
    text = inflate.decompress(stored[1:]) + inflate.flush()
    return _UUID_BYTES.sub(lambda m: b'"' + _uuid_str(m[1]).encode() + b'"', text).decode("utf-8")


# -- uuid and hashes -------------------------------------------------------------


def pack_uuid(value: str) -> bytes | str:
    """16 bytes for a canonical (lowercase, hyphenated) UUID; anything else as it is."""
    if isinstance(value, str) and _UUID.fullmatch(value):
        return bytes.fromhex(value.replace("-", ""))
    return value


def uuid_text(stored: bytes | str) -> str:
    return _uuid_str(stored) if isinstance(stored, bytes) else stored


def _uuid_str(raw: bytes) -> str:
    """The canonical text of a UUID's 16 bytes (what str(uuid.UUID(bytes=raw)) gives)."""
    if len(raw) != 16:
        raise ValueError(f"a stored UUID of {len(raw)} bytes, not 16")
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def pack_hash(value: str) -> bytes | str:
    """32 bytes for a lowercase hex SHA-256; anything else as it is."""
    return bytes.fromhex(value) if _HEX_HASH.fullmatch(value) else value


def hash_text(stored: bytes | str) -> str:
    return stored.hex() if isinstance(stored, bytes) else stored


# -- rows --------------------------------------------------------------------------


def lookup_values(type_: str, body: dict[str, Any]) -> tuple[Any, ...]:
    """The lookup columns' values of an entry (None where its type has no such field)."""
    return tuple(
        _lookup_key(name, body.get(name)) if type_ in types else None
        for name, types in LOOKUP_FIELDS.items()
    )


def _lookup_key(name: str, value: Any) -> Any:
    return pack_uuid(value) if name == "sale_id" else value


def lookup_key(name: str, value: Any) -> Any:
    """A value as its lookup column holds it (a sale id as 16 bytes)."""
    return _lookup_key(name, value)


def row_values(
    seq: int,
    uuid: str,
    type_: str,
    created_at: str,
    canonical_body: str,
    prev_hash: str,
    hash_: str,
    body: dict[str, Any],
) -> tuple[Any, ...]:
    """An entry's row in the order of schema.STORED_COLUMNS, from its parts (the body
    both as canonical JSON and parsed)."""
    return (
        seq,
        pack_uuid(uuid),
        type_,
        created_at,
        pack_body(canonical_body),
        pack_hash(prev_hash),
        pack_hash(hash_),
        *lookup_values(type_, body),
    )


def chain_view(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row (COLUMNS) as the chain check reads it (Entry.as_dict's shape).

    A row that cannot be read back (its compressed body damaged or edited)
    keeps its seq and type with a body that cannot match its hash, so the
    check names it rather than stopping on it.
    """
    try:
        seq, uuid, type_, created_at, body, prev_hash, hash_ = decoded_row(row)
        parsed = json.loads(body)
    except ValueError:  # UnreadableEntry among them
        seq, uuid, type_, created_at, _body, prev_hash, hash_ = row
        return {
            "seq": seq,
            "uuid": str(uuid),
            "type": type_,
            "created_at": str(created_at),
            "body": {"unreadable": True},
            "prev_hash": hash_text(prev_hash) if isinstance(prev_hash, (bytes, str)) else "",
            "hash": "",
        }
    return {
        "seq": seq,
        "uuid": uuid,
        "type": type_,
        "created_at": created_at,
        "body": parsed,
        "prev_hash": prev_hash,
        "hash": hash_,
    }


class UnreadableEntry(ValueError):
    """A stored entry that cannot be read back: its row was damaged on disk or edited."""


def unreadable(seq: Any, type_: Any, exc: Exception) -> UnreadableEntry:
    return UnreadableEntry(
        f"journal entry {seq} ({type_}) cannot be read back: its stored row is damaged "
        f"({exc}). Run `tillctl journal verify` and call a technician; until it is dealt "
        "with, sync sends the entries before it and nothing from it on"
    )


def readable_prefix(decode: Callable[[Any], T], rows: Iterable[Any]) -> list[T]:
    """The rows decoded, up to the first that cannot be read back.

    What comes before a damaged entry is still sent; the damaged one raises
    (UnreadableEntry) when it comes first, so sync stops at it, naming it."""
    decoded: list[T] = []
    for row in rows:
        try:
            decoded.append(decode(row))
        except UnreadableEntry:
            if not decoded:
                raise
            break
    return decoded


def decoded_row(row: tuple[Any, ...]) -> tuple[int, str, str, str, str, str, str]:
    """seq, uuid, type, created_at, canonical body text, prev_hash, hash of a row (COLUMNS).

    Raises UnreadableEntry, naming the entry, for a row that cannot be read back."""
    seq, uuid, type_, created_at, body, prev_hash, hash_ = row
    try:
        return (
            seq,
            uuid_text(uuid),
            type_,
            created_at,
            body_text(body),
            hash_text(prev_hash),
            hash_text(hash_),
        )
    except (ValueError, zlib.error) as exc:
        raise unreadable(seq, type_, exc) from exc
