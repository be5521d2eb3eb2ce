"""Fiscal integrity under attack: every receipt in exactly one Z report.

A Z report closes the day. If sales commit while it is being taken, each of
them must land in that Z or in the next one, never in neither: a receipt
missing from every Z report is takings the venue's books never show.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import journal_rows
import pytest
from conftest import REPO, Client, RpcError, TillProcess
from sims import Backend, wait_for

TILL = "till-test"

RACE_SALES = 300
RACE_Z_REPORTS = 6


def z_reports(till: TillProcess) -> list[dict]:
    client = till.client()
    try:
        exported = client.call("admin.journal_export", format="jsonl")["content"]
    finally:
        client.close()
    entries = [json.loads(line) for line in exported.splitlines()]
    return [e["body"] for e in entries if e["type"] == "z-report"]


def test_every_receipt_lands_in_exactly_one_z_report_while_sales_commit(short_tmp, reliability):
    till = TillProcess(short_tmp).start()
    try:
        receipts: list[int] = []
        progress = threading.Condition()

        def sell() -> None:
            client = till.client()
            try:
                for _ in range(RACE_SALES):
                    sale_id = client.call("sale.open")["sale_id"]
                    client.call("sale.add", sale_id=sale_id, plu="300")
                    paid = client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
                    with progress:
                        receipts.append(paid["receipt_no"])
                        progress.notify()
            finally:
                client.close()

        seller = threading.Thread(target=sell)
        seller.start()
        reporter = till.client()
        taken = 0
        # Z reports spread over the stream of sales, each racing the commits.
        for step in range(1, RACE_Z_REPORTS + 1):
            due = step * RACE_SALES // (RACE_Z_REPORTS + 1)
            with progress:
                progress.wait_for(lambda due=due: len(receipts) >= due, timeout=60)
            if len(receipts) == RACE_SALES:
                break
            reporter.call("admin.report", kind="z")
            taken += 1
        seller.join()
        reporter.call("admin.report", kind="z")  # closes whatever the race left over
        reporter.close()

        reports = z_reports(till)
        reliability.record(
            "fiscal integrity",
            f"Z reports taken while {RACE_SALES} cash sales commit on another connection",
            tries=len(reports),
            figure=f"{sum(z['sales'] for z in reports)} of {len(receipts)} sales in a Z",
        )
        assert taken == RACE_Z_REPORTS, "the sales finished before the Z reports could race them"
        assert sum(z["sales"] for z in reports) == len(receipts) == RACE_SALES
        assert sum(z["gross_sales"] for z in reports) == 3500 * RACE_SALES
        for receipt in receipts:
            holding = [
                z["z_no"]
                for z in reports
                if z["first_receipt_no"] is not None
                and z["first_receipt_no"] <= receipt <= z["last_receipt_no"]
            ]
            assert len(holding) == 1, f"receipt {receipt} is in Z reports {holding}"
    finally:
        till.kill()


# -- a journal that went backwards ---------------------------------------------

SOLD = 5


def sell_cash(client: Client, count: int) -> list[int]:
    receipts = []
    for _ in range(count):
        sale_id = client.call("sale.open")["sale_id"]
        client.call("sale.add", sale_id=sale_id, plu="300")
        paid = client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
        receipts.append(paid["receipt_no"])
    return receipts


def lose_the_wal(till: TillProcess, *, head_file_too: bool = False) -> None:
    """kill -9, then the WAL and its index are gone (a careless cleanup, a bad restore)."""
    till.kill()
    for name in ("journal.sqlite-wal", "journal.sqlite-shm") + (
        ("journal.head",) if head_file_too else ()
    ):
        (till.state_dir / name).unlink(missing_ok=True)


def tillctl(till: TillProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tilld.cli.tillctl", "--socket", str(till.socket_path), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def refused_reason(call) -> str | None:
    try:
        call()
    except RpcError as exc:
        return exc.reason
    return None


def test_a_lost_wal_stops_sales_until_acknowledged_and_no_receipt_number_is_reused(
    short_tmp, reliability
):
    till = TillProcess(short_tmp).start()
    client = till.client()
    issued = sell_cash(client, SOLD)
    client.close()
    lose_the_wal(till)

    till.start()
    client = till.client()
    integrity = client.call("status.get")["journal"]["integrity"]
    opened = refused_reason(lambda: client.call("sale.open"))
    scanned = refused_reason(lambda: client.call("scan.submit", code="TK12345678"))
    verify = tillctl(till, "journal", "verify")
    reliability.record(
        "fiscal integrity",
        f"kill -9, journal WAL and -shm deleted after {SOLD} sales, restart",
        tries=1,
        figure=f"start: {integrity['state']}; sale.open refused with {opened}",
    )
    assert integrity["state"] == "rolled-back", integrity
    assert f"knows entry {SOLD}" in integrity["message"]
    assert opened == "journal-rolled-back"
    assert scanned == "journal-rolled-back"
    assert verify.returncode == 1 and "ROLLED-BACK" in verify.stdout, verify

    # A technician must say so on purpose; the acknowledgement is journaled.
    unconfirmed = tillctl(till, "journal", "acknowledge-rollback")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr, unconfirmed
    acknowledged = tillctl(
        till, "journal", "acknowledge-rollback", "--yes", "--technician", "Kim (service)"
    )
    assert acknowledged.returncode == 0, acknowledged
    assert f"next receipt is number {SOLD + 1}" in acknowledged.stdout

    after = sell_cash(client, 2)
    assert after == [SOLD + 1, SOLD + 2], f"receipts {after} reuse numbers of {issued}"
    verified = client.call("admin.journal_verify")
    assert verified["ok"] is True, verified
    export = client.call("admin.journal_export", format="jsonl")["content"]
    entries = [json.loads(line) for line in export.splitlines()]
    ack = [e for e in entries if e["type"] == "rollback-acknowledged"]
    assert len(ack) == 1 and ack[0]["body"]["acknowledged_by"] == "Kim (service)"
    assert ack[0]["seq"] == SOLD + 1  # the chain goes on after the lost entries
    client.close()

    # And it stays so across a restart.
    assert till.stop() == 0
    till.start()
    client = till.client()
    assert client.call("status.get")["journal"]["integrity"] == {"state": "ok"}
    assert sell_cash(client, 1) == [SOLD + 3]
    client.close()
    till.kill()


# -- the back-end as the journal's anchor --------------------------------------


@pytest.fixture
def backend(short_tmp):
    server = Backend(short_tmp)
    yield server
    server.stop()


def synced_till(short_tmp, backend: Backend) -> TillProcess:
    config = {
        "backend": {"url": backend.url, "token_file": str(backend.token_file), "timeout_s": 2},
        "connectivity": {"probe_interval_s": 0.2, "probe_timeout_s": 0.5, "backoff_cap_s": 1},
    }
    return TillProcess(short_tmp, config).start()


def wait_synced(client: Client) -> None:
    synced = client.call("admin.sync_now", wait=True, timeout_s=20)
    assert synced["drained"], synced


def test_the_back_end_notices_a_rollback_the_till_could_not_see(short_tmp, backend, reliability):
    """WAL and head file both gone (a restored old copy): the back-end's head is the witness."""
    till = synced_till(short_tmp, backend)
    client = till.client()
    sell_cash(client, SOLD)
    wait_synced(client)
    client.close()
    lose_the_wal(till, head_file_too=True)

    till.start()
    client = till.client()
    integrity = wait_for(
        lambda: (i := client.call("status.get")["journal"]["integrity"])["state"] != "ok" and i,
        what="the back-end anchor to notice the rollback",
    )
    reliability.record(
        "fiscal integrity",
        "journal restored from an old copy (WAL and head file gone), back-end reachable",
        tries=1,
        figure=f"{integrity['state']} from the back-end's head; sales refused",
    )
    assert integrity["state"] == "rolled-back", integrity
    assert "the back-end knows entry 5" in integrity["message"]
    assert refused_reason(lambda: client.call("sale.open")) == "journal-rolled-back"
    assert client.call("status.get")["sync"]["last_error"] == integrity["message"]

    client.call("admin.acknowledge_rollback", technician="Kim")
    assert sell_cash(client, 1) == [SOLD + 1]
    wait_synced(client)
    held = backend.journal(TILL)
    # The back-end took the acknowledgement and the new sale into its chain, nothing rejected.
    assert [e["seq"] for e in held] == list(range(1, SOLD + 3))
    assert held[SOLD]["type"] == "rollback-acknowledged"
    assert backend.stats()["tills"][TILL]["entries.rejected"] == 0
    client.close()
    till.kill()


def rewrite_history(path: Path, seq: int) -> None:
    """Whoever owns the till edits a sale and recomputes every hash after it."""
    db = journal_rows.connect(path, isolation_level=None)
    db.execute("DROP TRIGGER entries_no_update")
    rows = db.execute(
        "SELECT seq, uuid_text(uuid), type, created_at, body_text(body), hash_text(prev_hash)"
        " FROM entries ORDER BY seq"
    ).fetchall()
    prev = None
    for row_seq, uuid, type_, created_at, body, prev_hash in rows:
        parsed = json.loads(body)
        if row_seq == seq:
            parsed["total"] -= 100
            parsed["payments"][0]["amount"] -= 100
        fields = dict(
            uuid=uuid,
            seq=row_seq,
            type=type_,
            created_at=created_at,
            prev_hash=prev or prev_hash,
            body=parsed,
        )
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        new_hash = hashlib.sha256((fields["prev_hash"] + "\n" + canonical).encode()).hexdigest()
        db.execute(
            "UPDATE entries SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (
                json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
                fields["prev_hash"],
                new_hash,
                row_seq,
            ),
        )
        prev = new_hash
    db.close()


def test_a_rewritten_chain_passes_verify_locally_but_the_back_end_anchor_stops_sync(
    short_tmp, backend, reliability
):
    till = synced_till(short_tmp, backend)
    client = till.client()
    sell_cash(client, SOLD)
    wait_synced(client)
    client.close()
    assert till.stop() == 0
    rewrite_history(till.state_dir / "journal.sqlite", seq=2)
    (till.state_dir / "journal.head").unlink()  # the owner rewrites every witness on the till

    till.start()
    client = till.client()
    integrity = wait_for(
        lambda: (i := client.call("status.get")["journal"]["integrity"])["state"] != "ok" and i,
        what="the back-end anchor to notice the rewrite",
    )
    verified = client.call("admin.journal_verify")
    reliability.record(
        "fiscal integrity",
        "a sale edited and every later hash recomputed (chain rewritten by the till's owner)",
        tries=1,
        figure=f"{integrity['state']} against the back-end's head; sync stopped",
    )
    assert integrity["state"] == "diverged", integrity
    assert "entry 5" in integrity["message"]
    assert verified["ok"] is False and "first_bad_seq" not in verified, verified
    status = client.call("status.get")
    assert status["sync"]["last_error"] == integrity["message"]
    assert "[WARNING]" in till.log() or "<4>" in till.log()
    # Sales go on (the day must not stop), but none of it reaches the back-end.
    sell_cash(client, 1)
    assert client.call("status.get")["pending"]["entries"] >= 1
    assert len(backend.journal(TILL)) == SOLD
    client.close()
    till.kill()


def test_a_broken_chain_among_the_last_entries_is_named_at_start(short_tmp, reliability):
    till = TillProcess(short_tmp).start()
    client = till.client()
    sell_cash(client, SOLD)
    client.close()
    assert till.stop() == 0
    db = journal_rows.connect(till.state_dir / "journal.sqlite", isolation_level=None)
    db.execute("DROP TRIGGER entries_no_update")
    db.execute("UPDATE entries SET body = json_set(body_text(body), '$.total', 1) WHERE seq = 3")
    db.close()

    till.start()
    client = till.client()
    integrity = client.call("status.get")["journal"]["integrity"]
    client.close()
    reliability.record(
        "fiscal integrity",
        "an entry edited in the journal file while the till was stopped",
        tries=1,
        figure="named at start: broken at entry 3",
    )
    assert integrity["state"] == "chain-broken"
    assert "<2>" in till.log() and "broken at entry 3" in till.log()
    till.kill()


def test_a_rewrite_seen_by_the_head_file_stays_visible_across_sales_and_restarts(
    short_tmp, reliability
):
    till = TillProcess(short_tmp).start()
    client = till.client()
    sell_cash(client, SOLD)
    client.close()
    assert till.stop() == 0
    rewrite_history(till.state_dir / "journal.sqlite", seq=2)

    states = []
    for _ in range(2):
        till.start()
        client = till.client()
        states.append(client.call("status.get")["journal"]["integrity"]["state"])
        sell_cash(client, 1)  # the day goes on; the rewrite must not be papered over
        client.close()
        assert till.stop() == 0
    reliability.record(
        "fiscal integrity",
        "chain rewritten while stopped, no back-end; then sales and a restart",
        tries=2,
        figure=f"head file verdicts: {', '.join(states)}",
    )
    assert states == ["diverged", "diverged"]
