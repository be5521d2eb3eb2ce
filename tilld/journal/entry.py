"""What the journal holds, as plain values: no database, no threads.

Pure modules (reports.py) read entries through these types without
importing the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .rows import decoded_row, unreadable

if TYPE_CHECKING:
    import sqlite3


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
        """An entry from its row (schema.COLUMNS), stored in either format (rows.py)."""
        seq, uuid, type_, created_at, body, prev_hash, hash_ = decoded_row(row)
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise unreadable(seq, type_, exc) from exc
        return cls(seq, uuid, type_, created_at, parsed, prev_hash, hash_)


@dataclass(frozen=True)
class TicketRecord:
    code: str
    plu: str
    name: str


# Work done inside an append's transaction, after the entry is inserted. The
# connection is named, not imported, so this module stays free of the database.
SideEffect = Callable[["sqlite3.Connection", Entry], None]
Fill = Callable[["sqlite3.Connection"], dict[str, Any]]
