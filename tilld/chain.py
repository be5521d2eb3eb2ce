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

GENESIS_HASH = "0" * 64
CHAINED_FIELDS = ("uuid", "seq", "type", "created_at", "prev_hash", "body")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash of an entry (a mapping holding at least CHAINED_FIELDS; ``hash`` is ignored)."""
    unhashed = {key: entry[key] for key in CHAINED_FIELDS}
    payload = entry["prev_hash"] + "\n" + canonical_json(unhashed)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def first_broken_seq(entries: Iterable[Mapping[str, Any]]) -> int | None:
    """The seq of the first entry that breaks the chain, or None when all of it holds.

    An entry is broken when its seq does not follow the previous one, its
    prev_hash is not the previous entry's hash, or its hash is not its own.
    """
    expected_seq = 1
    prev_hash = GENESIS_HASH
    for entry in entries:
        if entry["seq"] != expected_seq or entry["prev_hash"] != prev_hash:
            return entry["seq"]
        if entry["hash"] != entry_hash(entry):
            return entry["seq"]
        prev_hash = entry["hash"]
        expected_seq += 1
    return None
