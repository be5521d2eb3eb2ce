"""The sync outbox on a real journal file: entries sent as stored, tickets made valid by seq."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sims import wait_for

from tilld.chain import entry_hash
from tilld.journal import Journal, TicketRecord, UnreadableEntry, store_tickets
from tilld.journal.batches import (
    BATCH_PROCESS_NICENESS,
    BatchProcess,
    BatchProcessFailed,
    read_batch,
)
from tilld.journal.outbox import BATCH_PROCESS_FROM, RESULTS_PER_TRANSACTION

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.dictionaries(st.text(max_size=10), json_values, max_size=6)


def run(coro):
    return asyncio.run(coro)


async def with_journal(path: Path, work):
    journal = Journal(path, "till-test")
    await journal.open()
    try:
        return await work(journal)
    finally:
        await journal.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(bodies, min_size=1, max_size=8))
def test_a_batch_posts_exactly_the_stored_entries_and_their_hashes_hold(tmp_path_factory, batch):
    path = tmp_path_factory.mktemp("outbox") / "journal.sqlite"

    async def work(journal: Journal):
        for body in batch:
            await journal.append("note", body)
        sent = await journal.outbox_batch(0, 100)
        stored = await journal.outbox(0, 100)
        return sent, stored

    sent, stored = run(with_journal(path, work))
    posted = json.loads(sent.payload())["entries"]
    assert posted == [e.as_dict() for e in stored]
    assert sent.seqs == [e.seq for e in stored] and sent.types == ["note"] * len(batch)
    for entry in posted:  # what the back-end verifies
        assert entry_hash(entry) == entry["hash"]
    first, second = sent.halves()
    assert json.loads(first.payload())["entries"] + json.loads(second.payload())["entries"] == (
        posted
    )


def test_a_batch_starts_after_the_mark_and_stops_at_the_limit(tmp_path):
    async def work(journal: Journal):
        for n in range(5):
            await journal.append("note", {"n": n})
        return await journal.outbox_batch(2, 2), await journal.outbox_batch(5, 10)

    middle, after_all = run(with_journal(tmp_path / "journal.sqlite", work))
    assert middle.seqs == [3, 4]
    assert [e["body"]["n"] for e in json.loads(middle.payload())["entries"]] == [2, 3]
    assert len(after_all) == 0


def test_accepted_sales_make_their_pending_tickets_valid_and_rejected_ones_do_not(tmp_path):
    async def work(journal: Journal):
        seqs = []
        for n in range(3):
            entry = await journal.append(
                "sale",
                {"receipt_no": n + 1},
                effects=(store_tickets([TicketRecord(f"TK{n:010d}", "100", "Entré")]),),
            )
            seqs.append(entry.seq)
        made_valid = await journal.record_sync_results(
            [
                (seqs[0], "accepted", None),
                (seqs[1], "rejected", "bad"),
                (seqs[2], "duplicate", None),
            ],
            [seqs[0], seqs[2]],
        )
        again = await journal.record_sync_results([(seqs[0], "duplicate", None)], [seqs[0]])
        return made_valid, again

    path = tmp_path / "journal.sqlite"
    assert run(with_journal(path, work)) == (2, 0)
    with sqlite3.connect(path) as db:
        states = dict(db.execute("SELECT code, state FROM tickets ORDER BY code"))
    assert states == {"TK0000000000": "valid", "TK0000000001": "pending", "TK0000000002": "valid"}


def test_a_long_backlog_is_read_in_the_batch_process_exactly_as_the_bulk_thread_reads_it(
    tmp_path,
):
    path = tmp_path / "journal.sqlite"
    count = BATCH_PROCESS_FROM + 20

    async def work(journal: Journal):
        for n in range(count):
            await journal.append("note", {"n": n, "text": "ö" * (n % 3)})
        in_process = await journal.outbox_batch(0, count)
        pool = journal._batches._pool
        started = pool is not None
        # Background work: the process runs at a lower CPU priority than the daemon.
        niceness = [os.getpriority(os.PRIO_PROCESS, pid) for pid in pool._processes]
        short = await journal.outbox_batch(count - 5, count)  # the bulk thread's
        return in_process, started, niceness, short

    in_process, started, niceness, short = run(with_journal(path, work))
    assert started  # the long batch went to the process
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness == [min(19, own + BATCH_PROCESS_NICENESS)]
    with sqlite3.connect(path) as db:
        in_thread = read_batch(db, 0, count)
    assert in_process.payload() == in_thread.payload()
    assert (in_process.seqs, in_process.uuids, in_process.types, in_process.encoded) == (
        in_thread.seqs,
        in_thread.uuids,
        in_thread.types,
        in_thread.encoded,
    )
    assert in_process.seqs == list(range(1, count + 1))
    assert short.seqs == list(range(count - 4, count + 1))
    first, second = in_process.halves()
    assert first.payload()[:-2] + b"," + second.payload()[len(b'{"entries":[') :] == (
        in_process.payload()
    )


def test_a_batch_s_results_are_recorded_in_slices_each_once_and_in_order(tmp_path):
    """Recorded a slice per transaction (each waits for the one before), yet all
    of them: every seq once, the mark at the last, every accepted sale's ticket valid."""
    count = 2 * RESULTS_PER_TRANSACTION + 37
    path = tmp_path / "journal.sqlite"

    async def work(journal: Journal):
        seqs = []
        for n in range(count):
            entry = await journal.append(
                "sale",
                {"receipt_no": n + 1},
                effects=(store_tickets([TicketRecord(f"TK{n:010d}", "100", "Entré")]),),
            )
            seqs.append(entry.seq)
        results = [
            (seq, "rejected" if n % 7 == 0 else "accepted", "bad" if n % 7 == 0 else None)
            for n, seq in enumerate(seqs)
        ]
        accepted = [seq for seq, status, _ in results if status == "accepted"]
        statements: list[str] = []
        # Every statement the writer's connection runs, seen on the writer thread.
        await journal._on_writer(lambda: journal._db.set_trace_callback(statements.append))
        made_valid = await journal.record_sync_results(results, accepted)
        commits = statements.count("COMMIT")
        await journal.record_scan_results([(seq, "registered", None) for seq in seqs])
        return made_valid, accepted, commits, await journal.sync_marks()

    made_valid, accepted, commits, marks = run(with_journal(path, work))
    assert commits == 3  # 237 results: 100, 100 and 37
    assert made_valid == len(accepted)
    assert marks == (count, count)
    with sqlite3.connect(path) as db:
        recorded = db.execute("SELECT seq, status FROM sync_results ORDER BY rowid").fetchall()
        valid = db.execute("SELECT count(*) FROM tickets WHERE state = 'valid'").fetchone()[0]
        scans = db.execute("SELECT count(*) FROM scan_results").fetchone()[0]
    assert [seq for seq, _ in recorded] == list(range(1, count + 1))
    assert valid == len(accepted) and scans == count


OWNER = """
import asyncio, os, sys
from pathlib import Path
from tilld.journal import Journal

async def main():
    journal = Journal(Path(sys.argv[1]), "till-test")
    await journal.open()
    for n in range({count}):
        await journal.append("note", {{"n": n}})
    await journal.outbox_batch(0, {count})
    print(*journal._batches._pool._processes, flush=True)
    await asyncio.sleep(60)  # killed long before

asyncio.run(main())
"""


def test_the_batch_process_ends_when_the_daemon_is_killed(tmp_path):
    """kill -9 runs no cleanup: the batch process notices its parent is gone."""
    script = OWNER.format(count=BATCH_PROCESS_FROM)
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "journal.sqlite")],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        worker = int(owner.stdout.readline())
        assert process_alive(worker)
    finally:
        owner.kill()
        owner.wait()
    wait_for(lambda: not process_alive(worker), 20, what=f"batch process {worker} ended")


def process_alive(pid: int) -> bool:
    # Reaped by init once it exits: a zombie for a moment at most.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_long_backlog_is_read_on_the_bulk_thread_when_the_batch_process_cannot_start(
    tmp_path, caplog
):
    """The process is a speed-up, never a condition of sync: one that cannot
    open the journal (here a folder where the file should be) leaves the
    batch to the bulk thread, the same bytes, and says so in the log."""
    path = tmp_path / "journal.sqlite"
    count = BATCH_PROCESS_FROM + 10

    async def work(journal: Journal):
        for n in range(count):
            await journal.append("note", {"n": n})
        journal._batches = BatchProcess(tmp_path)  # a folder: the process's start fails
        try:
            return await journal.outbox_batch(0, count)
        finally:
            await journal._batches.close()

    batch = run(with_journal(path, work))
    with sqlite3.connect(path) as db:
        assert batch.payload() == read_batch(db, 0, count).payload()
    assert batch.seqs == list(range(1, count + 1))
    assert "sync batch read on the bulk thread instead" in caplog.text


def test_no_batch_process_reads_a_file_that_replaced_the_journal_while_tilld_ran(tmp_path, caplog):
    """A backup restored over the journal of a running till: the process would
    open the new file by its path and send what is in it, not what the till
    wrote. The batch comes from the journal the writer has open instead."""
    path = tmp_path / "journal.sqlite"
    count = BATCH_PROCESS_FROM + 10

    async def work(journal: Journal):
        for n in range(count // 2):
            await journal.append("note", {"n": n})
        with sqlite3.connect(path) as live, sqlite3.connect(tmp_path / "backup.sqlite") as copy:
            live.backup(copy)
        for n in range(count // 2, count):
            await journal.append("note", {"n": n})
        os.replace(tmp_path / "backup.sqlite", path)
        batch = await journal.outbox_batch(0, count)
        return batch, journal._batches._pool

    batch, pool = run(with_journal(path, work))
    assert pool is None  # no process was started on the restored file
    assert batch.seqs == list(range(1, count + 1))  # all the writer wrote, the backup has half
    assert f"{path} is no longer the journal tilld has open" in caplog.text


def test_a_batch_stops_before_an_entry_damaged_on_disk_and_then_names_it(tmp_path):
    """Read in the batch process: what comes before the damaged entry is sent,
    then the next batch, which starts at it, fails naming it (not a zlib error)."""
    path = tmp_path / "journal.sqlite"
    count = BATCH_PROCESS_FROM + 10

    async def work(journal: Journal):
        for n in range(count):
            await journal.append("note", {"n": n})
        with sqlite3.connect(path) as db:
            db.execute("DROP TRIGGER entries_no_update")
            db.execute("UPDATE entries SET body = X'01FFFFFFFF' WHERE seq = 5")
        before = await journal.outbox_batch(0, count)
        started = journal._batches._pool is not None
        with pytest.raises(UnreadableEntry) as damaged:
            await journal.outbox_batch(4, count)
        return before, started, str(damaged.value)

    before, started, message = run(with_journal(path, work))
    assert started  # both batches were long enough for the process
    assert before.seqs == [1, 2, 3, 4]
    assert message.startswith("journal entry 5 (note) cannot be read back")
    assert "tillctl journal verify" in message


def test_the_batch_process_takes_no_batch_once_the_journal_closes(tmp_path):
    async def work() -> str:
        batches = BatchProcess(tmp_path / "journal.sqlite")
        await batches.close()
        try:
            await batches.read(0, 1000)
        except BatchProcessFailed as exc:
            return str(exc)
        return "read after close"

    assert run(work()) == "the journal is closing"
