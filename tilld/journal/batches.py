"""Sync batches read and encoded in a process of their own, so the event loop never waits for them.

Encoding a batch is pure Python: inflating each stored body and writing
each entry's JSON, about 25 ms for 1,000 entries. On a thread of the
daemon's own that work holds the GIL, and every time the event loop lets
the GIL go (each read of the scanner, each write to a socket) it waits up
to the switch interval to get it back: a gate's answer during a
10,000-entry drain waited for that handover dozens of times. A second
process has a GIL of its own, and a lower CPU priority: the loop only
receives the finished batch.

The process opens its own read-only connection to the journal (WAL lets it
read beside the writer) and is started at the first batch, not at start-up,
so a till that never drains a backlog never pays for it. If it dies, the
next batch starts a new one. It opens the journal by its path, possibly
hours after the writer did, so it is started only while that path still
names the file the writer has open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import threading
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .rows import decoded_row, readable_prefix
from .schema import COLUMNS

log = logging.getLogger("tilld.journal")

# How much lower the batch process's CPU priority is than the daemon's.
BATCH_PROCESS_NICENESS = 10
# How often the batch process looks whether the daemon still runs.
PARENT_CHECK_S = 0.5
# How long stopping waits for it (it finishes at most the batch under way,
# about 25 ms); well inside the journal's own stop step (shutdown.py).
CLOSE_WAIT_S = 0.5
_quoted = json.encoder.encode_basestring_ascii  # what json.dumps does to a str


class BatchProcessFailed(Exception):
    """The batch process could not read a batch; the bulk thread reads it instead."""


@dataclass(frozen=True)
class OutboxBatch:
    """Entries on their way to the back-end, encoded as JSON where they were read.

    The stored body inflates to canonical JSON, so an entry is sent without
    parsing it and encoding it again, and none of that work is done on the
    event loop that answers cashiers while a backlog drains.
    """

    seqs: list[int]
    uuids: list[str]
    types: list[str]
    encoded: list[str]
    # The request body, made where the batch was read (None: made on demand).
    body: bytes | None = None

    def __len__(self) -> int:
        return len(self.seqs)

    def payload(self) -> bytes:
        if self.body is not None:
            return self.body
        return _payload(self.encoded)

    def halves(self) -> tuple[OutboxBatch, OutboxBatch]:
        mid = len(self) // 2
        return (
            OutboxBatch(self.seqs[:mid], self.uuids[:mid], self.types[:mid], self.encoded[:mid]),
            OutboxBatch(self.seqs[mid:], self.uuids[mid:], self.types[mid:], self.encoded[mid:]),
        )


def _payload(encoded: list[str]) -> bytes:
    return ('{"entries":[' + ",".join(encoded) + "]}").encode()


def _encode_row(decoded: tuple[Any, ...]) -> str:
    """An entry as the back-end receives it, from its row decoded (rows.decoded_row).

    Byte for byte what json.dumps of its head and tail gave (the back-end
    and tests/test_journal_schema1.py hold it to that), written directly.
    """
    seq, uuid, type_, created_at, body, prev_hash, hash_ = decoded
    return (
        f'{{"seq": {int(seq)}, "uuid": {_quoted(uuid)}, "type": {_quoted(type_)}, '
        f'"created_at": {_quoted(created_at)},"body":{body},'
        f'"prev_hash": {_quoted(prev_hash)}, "hash": {_quoted(hash_)}}}'
    )


def read_batch(db: sqlite3.Connection, after_seq: int, limit: int) -> OutboxBatch:
    """The next entries after ``after_seq`` to send, in seq order, ready to post."""
    rows = readable_prefix(
        decoded_row,
        db.execute(
            f"SELECT {COLUMNS} FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ),
    )
    encoded = [_encode_row(r) for r in rows]
    return OutboxBatch(
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        encoded,
        _payload(encoded),
    )


# -- the process ----------------------------------------------------------------------

_db: sqlite3.Connection | None = None  # the encoding process's own connection


def _open_in_process(path: str, parent: int) -> None:
    global _db
    # The job queue's pipe never tells this process that the daemon is gone
    # (it holds that pipe's other end too), so it watches for itself: a
    # daemon killed or restarted leaves no batch process behind.
    threading.Thread(target=_end_with, args=(parent,), daemon=True).start()
    # Stopping is the daemon's to do (the pool's shutdown, or the watch
    # above): a SIGTERM to the whole service, or Ctrl-C at `tilld demo`,
    # must not end a batch half-way and be reported as a crash.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Background work: when a core is short, the daemon's event loop (a
    # gate's answer) runs first. The shipped unit lets setpriority through
    # its SystemCallFilter for this; where a service may not, it stays as is.
    with contextlib.suppress(OSError):
        os.nice(BATCH_PROCESS_NICENESS)
    _db = sqlite3.connect(path, isolation_level=None, timeout=10)
    _db.execute("PRAGMA query_only = ON")


def _end_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _read_in_process(after_seq: int, limit: int) -> OutboxBatch:
    assert _db is not None, "the batch process opens the journal first"
    return read_batch(_db, after_seq, limit)


def file_identity(path: Path) -> tuple[int, int]:
    """Which file ``path`` names now: its device and inode."""
    found = os.stat(path)
    return found.st_dev, found.st_ino


class BatchProcess:
    """One process that reads and encodes sync batches; started at the first one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The file the journal's writer opened (file_identity), once it has.
        self.journal_file: tuple[int, int] | None = None
        self._pool: Executor | None = None
        self._closed = False
        # Two reads (one cancelled, one new) must not start two processes.
        self._lock = threading.Lock()

    async def read(self, after_seq: int, limit: int) -> OutboxBatch:
        """The batch, read in the process; BatchProcessFailed if it cannot be."""
        from concurrent.futures.process import BrokenProcessPool

        # Starting the process and handing it the job block (a fork, pipe
        # writes), so both happen on a thread, never on the loop.
        job = await asyncio.to_thread(self._submit, after_seq, limit)
        try:
            return await asyncio.wrap_future(job)
        except BrokenProcessPool as exc:
            log.warning("the sync batch process ended unexpectedly; starting a new one")
            with self._lock:
                pool, self._pool = self._pool, None
            if pool is not None:
                pool.shutdown(wait=False)
            raise BatchProcessFailed(f"the sync batch process ended ({exc})") from exc

    def _submit(self, after_seq: int, limit: int) -> Any:
        with self._lock:
            if self._closed:
                raise BatchProcessFailed("the journal is closing")
            return self._pool_started().submit(_read_in_process, after_seq, limit)

    def _pool_started(self) -> Executor:
        if self._pool is None:
            self._refuse_another_file()
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the daemon has threads, and a forked child
            # could inherit a lock one of them held.
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_open_in_process,
                initargs=(str(self.path), os.getpid()),
            )
        return self._pool

    def _refuse_another_file(self) -> None:
        if self.journal_file is not None and file_identity(self.path) != self.journal_file:
            raise BatchProcessFailed(
                f"{self.path} is no longer the journal tilld has open: the file was replaced "
                "or moved while tilld ran. tilld goes on with the journal it has open, but "
                "starts with whatever is at that path next time: stop tilld and find out "
                "what replaced the file before starting it again"
            )

    async def close(self) -> None:
        """End the process, waiting (on a thread, bounded) for it to go: the
        executor then releases its queues' semaphores itself, rather than
        leaving them to multiprocessing's resource tracker to report."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            stopping = asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
            try:
                await asyncio.wait_for(stopping, CLOSE_WAIT_S)
            except TimeoutError:
                log.warning("the sync batch process did not end within %g s", CLOSE_WAIT_S)
