"""Reading and editing journal rows with plain SQL, whichever format a row is stored in.

A row's body is compressed and its uuid and hashes are bytes (tilld/journal/
rows.py); a row from an older tilld holds them as text. ``readable`` gives a
connection SQL functions that turn either into the text that was hashed, so a
test reads rows, or forges them as a tamperer would, in the plain JSON form
(which tilld still reads: it is how older journals hold every row).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tilld.journal.rows import body_text, hash_text, uuid_text


def readable(db: sqlite3.Connection) -> sqlite3.Connection:
    """``db`` with body_text(), hash_text() and uuid_text() as SQL functions."""
    db.create_function("body_text", 1, body_text, deterministic=True)
    db.create_function("hash_text", 1, hash_text, deterministic=True)
    db.create_function("uuid_text", 1, uuid_text, deterministic=True)
    return db


def connect(path: Path, **kwargs) -> sqlite3.Connection:
    return readable(sqlite3.connect(path, **kwargs))


# The entries' columns as text, in the order of tilld.journal.COLUMNS.
TEXT_COLUMNS = (
    "seq, uuid_text(uuid), type, created_at, body_text(body), hash_text(prev_hash), hash_text(hash)"
)
