"""Ids tilld gives what it keeps for years: UUIDs in time order (version 7, RFC 9562).

A sale's id, a payment's and a print job's are keys of journal indexes
(entries_sale_id, card_intents, print_jobs) that grow for as long as the till
runs. A random uuid4 puts each new key at a random place in its index: after
years on one till every sale reads and rewrites a leaf page from anywhere in a
file of gigabytes, and a till with less memory than its journal waits for the
disk to find it. A time-ordered UUID goes to the end of its index, where the
last sale's page already is. Its 74 random bits keep the ids of all tills, and
of two in one millisecond, apart.

An entry's own uuid stays a uuid4: no index holds it (journal/schema.py).
"""

from __future__ import annotations

import os
import time


def time_ordered_uuid(unix_ms: int | None = None) -> str:
    """A new version-7 UUID as canonical text: 48 bits of Unix milliseconds (now) first."""
    if unix_ms is None:
        unix_ms = time.time_ns() // 1_000_000
    raw = bytearray(unix_ms.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC's variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
