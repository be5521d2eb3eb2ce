"""Tampering with the journal file: SQLite refuses edits, and what gets past is named exactly.

Each case sells a few sales, stops the daemon, edits journal.sqlite directly
(dropping the append-only trigger first, as someone with a shell would),
restarts, and expects admin.journal_verify and `tillctl journal verify` to
name the first bad seq, with tillctl exiting non-zero.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable

import journal_rows
import pytest
from conftest import REPO, TillProcess

from tilld.journal.rows import body_text, pack_body

VERIFY = ("journal", "verify")
SALES = 6
MIDDLE = 3


@pytest.fixture
def make_till(short_tmp):
    """TillProcess on short_tmp, killed at teardown even when the test fails."""
    made: list[TillProcess] = []

    def make() -> TillProcess:
        made.append(TillProcess(short_tmp))
        return made[-1]

    yield make
    for till in made:
        till.kill()


def sell_cash_sales(till: TillProcess, count: int = SALES) -> None:
    client = till.client()
    try:
        for n in range(count):
            sale_id = client.call("sale.open")["sale_id"]
            client.call("sale.add", sale_id=sale_id, plu="300", quantity=n + 1)
            client.call("sale.pay", sale_id=sale_id, method="cash", amount=50000)
    finally:
        client.close()


def tillctl_verify(till: TillProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tilld.cli.tillctl", "--socket", str(till.socket_path), *VERIFY],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def spec_hash(row: dict) -> str:
    """BACKEND-PROTOCOL.md's entry hash, computed here without tilld's code."""
    unhashed = {k: row[k] for k in ("uuid", "seq", "type", "created_at", "prev_hash", "body")}
    canonical = json.dumps(unhashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((row["prev_hash"] + "\n" + canonical).encode("utf-8")).hexdigest()


def change_amount(db: sqlite3.Connection) -> None:
    db.execute("DROP TRIGGER entries_no_update")
    db.execute(
        "UPDATE entries SET body = json_set(body_text(body), '$.total',"
        " json_extract(body_text(body), '$.total') + 100) WHERE seq = ?",
        (MIDDLE,),
    )


def change_amount_and_rehash(db: sqlite3.Connection) -> None:
    """A careful forger fixes the entry's own hash: the next entry's link still breaks."""
    db.execute("DROP TRIGGER entries_no_update")
    seq, uuid, type_, created_at, body, prev_hash = db.execute(
        "SELECT seq, uuid_text(uuid), type, created_at, body_text(body), hash_text(prev_hash)"
        " FROM entries WHERE seq = ?",
        (MIDDLE,),
    ).fetchone()
    forged = json.loads(body)
    forged["payments"][0]["amount"] -= 100
    row = dict(uuid=uuid, seq=seq, type=type_, created_at=created_at, prev_hash=prev_hash)
    new_hash = spec_hash({**row, "body": forged})
    db.execute(
        "UPDATE entries SET body = ?, hash = ? WHERE seq = ?",
        (json.dumps(forged, sort_keys=True, separators=(",", ":")), new_hash, seq),
    )


def edit_compressed_body(db: sqlite3.Connection) -> None:
    """Bytes of a stored (compressed) body changed in place, readable or not."""
    db.execute("DROP TRIGGER entries_no_update")
    (body,) = db.execute("SELECT body FROM entries WHERE seq = ?", (MIDDLE,)).fetchone()
    assert isinstance(body, bytes), "entries are stored compressed"
    middle = len(body) // 2
    edited = body[:middle] + bytes([body[middle] ^ 0x55]) + body[middle + 1 :]
    db.execute("UPDATE entries SET body = ? WHERE seq = ?", (edited, MIDDLE))


def recompress_changed_body(db: sqlite3.Connection) -> None:
    """A forger who knows the storage format writes a changed body in it."""
    db.execute("DROP TRIGGER entries_no_update")
    (body,) = db.execute("SELECT body FROM entries WHERE seq = ?", (MIDDLE,)).fetchone()
    forged = json.loads(body_text(body))
    forged["total"] -= 100
    canonical = json.dumps(forged, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    db.execute("UPDATE entries SET body = ? WHERE seq = ?", (pack_body(canonical), MIDDLE))


def delete_entry(db: sqlite3.Connection) -> None:
    db.execute("DROP TRIGGER entries_no_delete")
    db.execute("DELETE FROM entries WHERE seq = ?", (MIDDLE,))


def change_hash(db: sqlite3.Connection) -> None:
    db.execute("DROP TRIGGER entries_no_update")
    db.execute("UPDATE entries SET hash = ? WHERE seq = ?", ("ab" * 32, MIDDLE))


# (tamper, first bad seq). A deleted entry has no row to blame: the first
# entry that breaks the chain is the one after the gap.
CASES: dict[str, tuple[Callable[[sqlite3.Connection], None], int]] = {
    "amount-changed": (change_amount, MIDDLE),
    "amount-changed-and-rehashed": (change_amount_and_rehash, MIDDLE + 1),
    "entry-deleted": (delete_entry, MIDDLE + 1),
    "hash-changed": (change_hash, MIDDLE),
    "compressed-body-edited": (edit_compressed_body, MIDDLE),
    "compressed-body-rewritten": (recompress_changed_body, MIDDLE),
}


@pytest.mark.parametrize("case", CASES)
def test_tampered_journal_names_the_first_bad_seq(make_till, case):
    tamper, bad = CASES[case]
    till = make_till().start()
    sell_cash_sales(till)
    ok = tillctl_verify(till)
    assert ok.returncode == 0 and f"ok: {SALES} entries" in ok.stdout, ok
    assert till.stop() == 0

    db = journal_rows.connect(till.state_dir / "journal.sqlite", isolation_level=None)
    tamper(db)
    db.close()

    till.start()
    client = till.client()
    verified = client.call("admin.journal_verify")
    assert (verified["ok"], verified["first_bad_seq"]) == (False, bad), verified
    result = tillctl_verify(till)
    assert result.returncode == 1, result
    assert "BROKEN" in result.stdout and f"first bad seq {bad}" in result.stdout, result.stdout

    # The till keeps selling, and a new sale does not paper over the evidence.
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="301")
    client.call("sale.pay", sale_id=sale_id, method="cash", amount=3000)
    after = client.call("admin.journal_verify")
    assert (after["ok"], after["first_bad_seq"]) == (False, bad)
    client.close()
    assert till.stop() == 0

    # Restarting put the dropped triggers back.
    db = sqlite3.connect(till.state_dir / "journal.sqlite")
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    triggers = {name for (name,) in rows}
    db.close()
    assert {"entries_no_update", "entries_no_delete"} <= triggers


def test_sqlite_rejects_update_and_delete_while_the_triggers_stand(make_till):
    till = make_till().start()
    sell_cash_sales(till)
    path = till.state_dir / "journal.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    before = db.execute("SELECT * FROM entries ORDER BY seq").fetchall()
    # While the daemon runs (it holds the file open) and after it stopped.
    for running in (True, False):
        if not running:
            assert till.stop() == 0
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE entries SET body = '{}' WHERE seq = ?", (MIDDLE,))
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE entries SET hash = ? WHERE seq = ?", ("0" * 64, MIDDLE))
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM entries WHERE seq = ?", (MIDDLE,))
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM entries")
    assert db.execute("SELECT * FROM entries ORDER BY seq").fetchall() == before
    db.close()

    till.start()
    client = till.client()
    assert client.call("admin.journal_verify") == {
        "ok": True,
        "entries": SALES,
        "integrity": {"state": "ok"},
    }
    client.close()
    result = tillctl_verify(till)
    assert result.returncode == 0 and "ok: " in result.stdout, result
    till.stop()


def test_verify_of_a_broken_journal_counts_all_its_entries(make_till):
    """`entries` is the size of the journal, broken or not ("BROKEN: 6 entries, ...")."""
    till = make_till().start()
    sell_cash_sales(till)
    assert till.stop() == 0
    db = journal_rows.connect(till.state_dir / "journal.sqlite", isolation_level=None)
    change_amount(db)
    db.close()
    till.start()
    client = till.client()
    verified = client.call("admin.journal_verify")
    client.close()
    result = tillctl_verify(till)
    till.stop()
    assert {k: verified[k] for k in ("ok", "entries", "first_bad_seq")} == {
        "ok": False,
        "entries": SALES,
        "first_bad_seq": MIDDLE,
    }
    # The start's check of the last entries saw it too.
    assert verified["integrity"]["state"] == "chain-broken"
    assert f"broken at entry {MIDDLE}" in verified["integrity"]["message"]
    assert f"BROKEN: {SALES} entries, first bad seq {MIDDLE}" in result.stdout
