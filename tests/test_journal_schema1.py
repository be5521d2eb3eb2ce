"""A journal written by an older tilld (schema 1) keeps working: it is moved to schema 2 at
start, its rows kept as they are, and it sells, refunds, scans, verifies, exports and syncs.

The journal is tests/golden/journal-schema1.sql, made by the tilld of before schema 2.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, RpcError, TillProcess
from sims import Backend, Proxy, online_config, wait_for

from tilld.journal.batches import _encode_row
from tilld.journal.rows import decoded_row, row_values

FIXTURE = REPO / "tests" / "golden" / "journal-schema1.sql"
TILL = "till-test"
OLD_ENTRIES = 10
SOLD_TICKET = "TKPFZBUIVO1AHS"  # sold on receipt 2, scanned once (seq 7)


def old_rows() -> list[tuple[Any, ...]]:
    db = sqlite3.connect(":memory:")
    db.executescript(FIXTURE.read_text(encoding="utf-8"))
    rows = db.execute(
        "SELECT seq, uuid, type, created_at, body, prev_hash, hash FROM entries ORDER BY seq"
    ).fetchall()
    db.close()
    return rows


def as_sent_before(row: tuple[Any, ...]) -> str:
    """An entry as schema-1 tilld put it in a sync batch (its _encode_row, verbatim)."""
    seq, uuid, type_, created_at, body, prev_hash, hash_ = row
    head = json.dumps({"seq": seq, "uuid": uuid, "type": type_, "created_at": created_at})
    tail = json.dumps({"prev_hash": prev_hash, "hash": hash_})
    return f'{head[:-1]},"body":{body},{tail[1:]}'


def install(state_dir: Path) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript(FIXTURE.read_text(encoding="utf-8"))
    db.close()
    return path


def test_the_back_end_gets_the_same_bytes_from_an_old_row_and_a_compact_one():
    for row in old_rows():
        seq, uuid, type_, created_at, body, prev_hash, hash_ = row
        compact = row_values(
            seq, uuid, type_, created_at, body, prev_hash, hash_, json.loads(body)
        )[:7]
        assert all(isinstance(v, bytes) for v in (compact[1], compact[4], compact[5], compact[6]))
        assert _encode_row(decoded_row(row)) == as_sent_before(row)
        assert _encode_row(decoded_row(compact)) == as_sent_before(row)


@pytest.fixture
def site(short_tmp):
    backend = Backend(short_tmp)
    server = Proxy(short_tmp, "server", backend.address)
    server.set_mode("refuse")  # offline until the old journal has been checked
    till = TillProcess(short_tmp, online_config(backend, server, None))
    yield backend, server, till
    till.kill()
    for process in (server, backend):
        process.stop()


def test_an_old_journal_sells_refunds_scans_verifies_exports_and_syncs(site):
    backend, server, till = site
    path = install(till.state_dir)
    before = old_rows()
    till.start()
    client = till.client()
    assert client.call("status.get")["journal"]["last_seq"] == OLD_ENTRIES
    assert "moved from schema 1 to 2 (10 entries" in till.log()

    # Old rows are found by their fields: a receipt, its refunds, a scanned ticket.
    receipt = client.call("receipt.get", receipt_no=2)
    assert (receipt["seq"], receipt["total"]) == (3, 16500)
    with pytest.raises(RpcError, match="ticket-already-used"):  # the old scan counts
        client.call("sale.refund", receipt_no=2, method="cash", reason="test")
    refunded = client.call(
        "sale.refund", receipt_no=2, lines=[{"line_id": 2}], method="cash", reason="test"
    )
    assert refunded["receipt_no"] == 6  # numbering goes on after the old receipts 1-5
    again = client.call("scan.submit", code=SOLD_TICKET)
    assert again["local_check"] == "already-scanned"
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    paid = client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
    assert paid["receipt_no"] == 7
    assert client.call("sale.get", sale_id=sale_id)["receipt_no"] == 7
    report = client.call("admin.report", kind="x")
    # Since the old Z report: old receipt 5 and the new 6 (refund) and 7.
    assert (report["receipts"], report["refunds"]) == (3, 1)

    verified = client.call("admin.journal_verify")
    assert verified == {"ok": True, "entries": OLD_ENTRIES + 3, "integrity": {"state": "ok"}}
    exported = client.call("admin.journal_export")
    lines = [json.loads(line) for line in exported["content"].splitlines()]
    assert [json.loads(as_sent_before(r)) for r in before] == [
        {k: e[k] for k in ("seq", "uuid", "type", "created_at", "body", "prev_hash", "hash")}
        for e in lines[:OLD_ENTRIES]
    ]
    assert len(lines) == OLD_ENTRIES + 3

    # The back-end checks the chain across old and new rows and takes all of it.
    server.set_mode("pass")
    wait_for(lambda: len(backend.journal(TILL)) == OLD_ENTRIES + 3, 30, what="all synced")
    stored = backend.journal(TILL)
    assert [json.loads(as_sent_before(r)) for r in before] == [
        {k: e[k] for k in ("seq", "uuid", "type", "created_at", "body", "prev_hash", "hash")}
        for e in stored[:OLD_ENTRIES]
    ]
    wait_for(lambda: client.call("status.get")["pending"]["entries"] == 0, 30, what="drained")
    client.close()
    assert till.stop() == 0

    # The old rows are on disk as they were written; the new ones compact.
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    rows = db.execute(
        "SELECT seq, uuid, type, created_at, body, prev_hash, hash FROM entries ORDER BY seq"
    ).fetchall()
    db.close()
    assert rows[:OLD_ENTRIES] == before
    assert all(isinstance(row[4], bytes) for row in rows[OLD_ENTRIES:])


def test_a_start_that_dies_while_moving_the_journal_loses_nothing(short_tmp):
    """The move is one transaction: a failure inside it leaves schema 1 whole."""
    till = TillProcess(short_tmp)
    path = install(till.state_dir)
    db = sqlite3.connect(path, isolation_level=None)
    # The move's last step (recording schema 2) fails: by then the rows were
    # copied, the old table dropped and the new one renamed and indexed.
    db.execute(
        "CREATE TRIGGER meta_frozen BEFORE UPDATE ON meta"
        " BEGIN SELECT RAISE(ABORT, 'meta is frozen'); END"
    )
    db.close()
    till.start(wait=False)
    assert till.proc.wait(timeout=60) != 0
    db = sqlite3.connect(path, isolation_level=None)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    rows = db.execute(
        "SELECT seq, uuid, type, created_at, body, prev_hash, hash FROM entries ORDER BY seq"
    ).fetchall()
    assert rows == old_rows()
    assert "meta is frozen" in till.log()
    assert db.execute("SELECT name FROM sqlite_schema WHERE name = 'entries_new'").fetchall() == []
    db.execute("DROP TRIGGER meta_frozen")
    db.close()
    till.start()
    client = till.client()
    verified = client.call("admin.journal_verify")
    client.close()
    assert verified == {"ok": True, "entries": OLD_ENTRIES, "integrity": {"state": "ok"}}
    assert till.stop() == 0


def test_systemd_is_asked_for_more_time_while_the_journal_moves(short_tmp):
    """A big journal can take longer to move than the unit's TimeoutStartSec."""
    till = TillProcess(short_tmp)
    install(till.state_dir)
    path = short_tmp / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(path))
    notify.settimeout(60)
    try:
        till.start(wait=False, env={"NOTIFY_SOCKET": str(path)})
        messages = []
        while not any(b"READY=1" in m.split(b"\n") for m in messages):
            messages.append(notify.recv(4096))
    finally:
        notify.close()
    extend = [i for i, m in enumerate(messages) if b"EXTEND_TIMEOUT_USEC=" in m]
    assert extend and extend[0] < len(messages) - 1, messages
    assert till.stop() == 0


def test_another_tills_old_journal_is_refused_before_it_is_moved(short_tmp):
    """A typo in till.id must not move an older journal for good (there is no way back)."""
    till = TillProcess(short_tmp, {"till": {"id": "till-someone-else"}})
    path = install(till.state_dir)
    till.start(wait=False)
    assert till.proc.wait(timeout=60) != 0
    assert "belongs to till" in till.log()
    db = sqlite3.connect(path, isolation_level=None)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    db.close()
