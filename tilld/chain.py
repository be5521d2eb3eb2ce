"""The journal's hash chain, exactly as the back-end protocol defines it.

hash = hex SHA-256 of ``prev_hash + "\\n" + canonical``, where canonical is the
entry without ``hash`` as JSON with sorted keys, no whitespace, non-ASCII kept,
UTF-8 encoded. Any back-end can recompute it, so the same function serves the
till, ``tillctl journal verify`` and the reference back-end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

GENESIS_HASH = "0" * 64
CHAINED_FIELDS = ("uuid", "seq", "type", "created_at", "prev_hash", "body")


# json.dumps with these arguments builds this encoder anew on every call;
# every append encodes a body twice, so it is built once.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def canonical_body(body: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """``body`` through JSON and back, and its canonical JSON: what the journal
    stores and hashes, the same as ``canonical_json(json.loads(canonical_json(body)))``.

    That is the first encoding already, unless a key is not text: an int key
    sorts as a number before the round trip and as text after it. orjson
    refuses such a key (and an integer past 64 bits) and says so at once, so
    only then is the body encoded a second time.
    """
    text = canonical_json(body)
    parsed = json.loads(text)
    try:
        orjson.dumps(body)
    except TypeError:
        text = canonical_json(parsed)
    return parsed, text


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash of an entry (a mapping holding at least CHAINED_FIELDS; ``hash`` is ignored)."""
    unhashed = {key: entry[key] for key in CHAINED_FIELDS}
    payload = entry["prev_hash"] + "\n" + canonical_json(unhashed)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def entry_hash_with_body(entry: Mapping[str, Any], body_text: str) -> str:
    """``entry_hash(entry)``, given the canonical JSON of its body already made.

    "body" sorts before every other chained field, so the canonical entry is
    the body's text put first into the canonical object of the others: an
    append, which stores that text as well, encodes the body once less.
    """
    others = canonical_json({key: entry[key] for key in CHAINED_FIELDS if key != "body"})
    payload = entry["prev_hash"] + "\n" + '{"body":' + body_text + "," + others[1:]
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def first_broken_seq(
    entries: Iterable[Mapping[str, Any]], *, after_seq: int = 0, after_hash: str = GENESIS_HASH
) -> int | None:
    """The seq of the first entry that breaks the chain, or None when all of it holds.

    An entry is broken when its seq does not follow the previous one, its
    prev_hash is not the previous entry's hash, or its hash is not its own.
    The one allowed jump is a technician's acknowledgement of lost entries
    (``rollback-acknowledged``): it names the entry it follows locally and
    continues the chain from the lost head, so the seq and prev_hash go on
    where the back-end last saw them. ``after_seq``/``after_hash`` start the
    walk in the middle (the last entries only).
    """
    expected_seq = after_seq + 1
    prev_hash = after_hash
    for entry in entries:
        if entry["type"] == "rollback-acknowledged" and _acknowledges(entry, expected_seq - 1):
            follows = entry["body"]["local_head"]
            if follows["hash"] != prev_hash or entry["hash"] != entry_hash(entry):
                return entry["seq"]
        elif (
            entry["seq"] != expected_seq
            or entry["prev_hash"] != prev_hash
            or entry["hash"] != entry_hash(entry)
        ):
            return entry["seq"]
        prev_hash = entry["hash"]
        expected_seq = entry["seq"] + 1
    return None


def _acknowledges(entry: Mapping[str, Any], previous_seq: int) -> bool:
    body = entry.get("body")
    follows = body.get("local_head") if isinstance(body, Mapping) else None
    continues = body.get("continues_from") if isinstance(body, Mapping) else None
    return (
        isinstance(follows, Mapping)
        and isinstance(continues, Mapping)
        and follows.get("seq") == previous_seq
        and continues.get("seq") == entry["seq"] - 1
        and continues.get("hash") == entry["prev_hash"]
        and entry["seq"] > previous_seq
    )
