"""Control codes: each receipt's registration with the control unit, beside its entry.

A row is made in the same transaction as the receipt's entry (or, for the
one copy, before it is sent), with the number its request is sent with and
the request's fields, so a receipt never exists without the duty to
register it, and a request sent again after a crash is the very same one.
States: ``waiting`` (never sent), ``sent`` (may have reached the unit),
``registered`` (its code is journaled: a ``control-code`` entry), and
``in-doubt`` (sent, answer lost, and the unit's protocol cannot be asked).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from ..chain import canonical_json
from .entry import Entry, SideEffect, now_with_offset
from .store import JournalStore

CONTROL_COLUMNS = "sequence, receipt_no, kind, request, state, control_code, unit_id"


def expect_control_code(request_of: Callable[[Entry], dict[str, Any]]) -> SideEffect:
    """The receipt being appended must be registered: its request waits from this commit on."""

    def effect(db: sqlite3.Connection, entry: Entry) -> None:
        request = request_of(entry)
        db.execute(
            "INSERT INTO control_codes (receipt_no, kind, request, state, updated_at)"
            " VALUES (?, ?, ?, 'waiting', ?)",
            (entry.body["receipt_no"], request["kind"], canonical_json(request), entry.created_at),
        )

    return effect


def record_control_code(sequence: int) -> SideEffect:
    """The ``control-code`` entry being appended answers the request sent as ``sequence``."""

    def effect(db: sqlite3.Connection, entry: Entry) -> None:
        db.execute(
            "UPDATE control_codes SET state = 'registered', control_code = ?, unit_id = ?,"
            " updated_at = ? WHERE sequence = ?",
            (entry.body["control_code"], entry.body["unit_id"], entry.created_at, sequence),
        )

    return effect


def register_control_request_again(sequence: int) -> SideEffect:
    """A technician's settlement of a doubt: the request waits to be sent again, from the
    commit of the entry that says who decided it (only a row still in doubt)."""

    def effect(db: sqlite3.Connection, entry: Entry) -> None:
        db.execute(
            "UPDATE control_codes SET state = 'waiting', updated_at = ?"
            " WHERE sequence = ? AND state = 'in-doubt'",
            (entry.created_at, sequence),
        )

    return effect


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    sequence, receipt_no, kind, request, state, code, unit_id = row
    return {
        "sequence": sequence,
        "receipt_no": receipt_no,
        "kind": kind,
        "request": json.loads(request),
        "state": state,
        "control_code": code,
        "unit_id": unit_id,
    }


class ControlCodeTables(JournalStore):
    """Reads and writes of the control-code rows outside an append (on the writer thread)."""

    async def control_requests(self, *states: str) -> list[dict[str, Any]]:
        """The rows in these states, oldest first."""

        def read() -> list[dict[str, Any]]:
            marks = ", ".join("?" for _ in states)
            rows = (
                self._require_writer()
                .execute(
                    f"SELECT {CONTROL_COLUMNS} FROM control_codes WHERE state IN ({marks})"
                    " ORDER BY sequence",
                    states,
                )
                .fetchall()
            )
            return [_row(r) for r in rows]

        return await self._on_writer(read)

    async def control_request(self, receipt_no: int, kind: str) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            row = (
                self._require_writer()
                .execute(
                    f"SELECT {CONTROL_COLUMNS} FROM control_codes"
                    " WHERE receipt_no = ? AND kind = ?",
                    (receipt_no, kind),
                )
                .fetchone()
            )
            return _row(row) if row else None

        return await self._on_writer(read)

    async def add_control_request(
        self, receipt_no: int, kind: str, request: dict[str, Any]
    ) -> dict[str, Any]:
        """A request for a receipt that has no entry of its own (the copy); the existing one
        if it was made before."""

        def write() -> dict[str, Any]:
            db = self._require_writer()
            with self._transaction(db):
                db.execute(
                    "INSERT INTO control_codes (receipt_no, kind, request, state, updated_at)"
                    " VALUES (?, ?, ?, 'waiting', ?) ON CONFLICT (receipt_no, kind) DO NOTHING",
                    (receipt_no, kind, canonical_json(request), now_with_offset()),
                )
                row = db.execute(
                    f"SELECT {CONTROL_COLUMNS} FROM control_codes"
                    " WHERE receipt_no = ? AND kind = ?",
                    (receipt_no, kind),
                ).fetchone()
            return _row(row)

        return await self._on_writer(write)

    async def mark_control_request(self, sequence: int, state: str) -> None:
        """Durable before the request goes out: after a crash, ``sent`` means "ask the unit"."""

        def write() -> None:
            db = self._require_writer()
            with self._transaction(db):
                db.execute(
                    "UPDATE control_codes SET state = ?, updated_at = ?"
                    " WHERE sequence = ? AND state != 'registered'",
                    (state, now_with_offset(), sequence),
                )

        await self._on_writer(write)
