"""The journal's one writer thread: its jobs in order, sync's bookkeeping last.

Every write to the journal runs on one thread with one connection, in the
order it was asked for, with one exception: recording what the back-end
answered about a batch (sync and scan results) waits while anything else is
queued. A gate's scan or a sale asked for during a 10,000-entry drain then
waits for at most the one job already running, not for the drain's commits
queued before it. Nothing is lost by the wait: the results are recorded in
their own transactions, in the order sync asked for them (one queue for
them, first in first out), and until they are, the entries count as unsent
and are answered `duplicate` if they go again after a crash. (For the same
reason those transactions do not wait for an fsync: outbox.py.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

FIRST, LAST = 0, 1  # priorities: everything, then sync's bookkeeping

# How a job's outcome reaches whoever waits for it: (result, exception).
Deliver = Callable[[Any, BaseException | None], None]


class WriterThread:
    """One thread running jobs in order, FIRST before LAST.

    Jobs are asked for from the event loop (``run``), and each is answered
    straight into an asyncio future with one ``call_soon_threadsafe``: no
    concurrent.futures.Future to chain, which halves the cost of the hop a
    sale's commit makes to this thread and back (docs/benchmarks.md).
    """

    def __init__(self, name: str) -> None:
        self._jobs: tuple[collections.deque[Any], collections.deque[Any]] = (
            collections.deque(),
            collections.deque(),
        )
        # One token per job queued: the thread sleeps in C (SimpleQueue.get)
        # while there is nothing to do, and takes the jobs in priority order.
        self._tokens: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._started = False
        self._closed = False
        self._lock = threading.Lock()

    def run(self, fn: Callable[..., T], *args: Any, last: bool = False) -> asyncio.Future[T]:
        """Queue ``fn(*args)``; its outcome in an asyncio future of the running loop.

        A job whose future was cancelled before the thread reached it is not run."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def deliver(result: Any, exc: BaseException | None) -> None:
            # A loop already closed (its caller stopped waiting and the daemon
            # is ending) has no one left to tell; the thread goes on serving.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, result, exc)

        self._put(last, (future.cancelled, deliver, fn, args))
        return future

    def _put(self, last: bool, job: tuple[Any, ...]) -> None:
        with self._lock:
            if self._closed:
                # After shutdown() nothing would ever run the job: its caller
                # would wait for ever, so it is told at once instead.
                raise RuntimeError("the journal is closed: tilld is stopping")
            if not self._started:
                self._started = True
                self._thread.start()
            self._jobs[LAST if last else FIRST].append(job)
            # Under the lock: shutdown's end token must come after this one.
            self._tokens.put(True)

    def shutdown(self) -> None:
        """Let the thread end after the jobs already asked for."""
        with self._lock:
            self._closed = True
            if self._started:
                self._tokens.put(False)

    def _serve(self) -> None:
        while True:
            if not self._tokens.get():
                # The end: shutdown() queued it after every job asked for, so
                # none is left (a job's token always comes before it).
                return
            with self._lock:
                first, later = self._jobs
                cancelled, deliver, fn, args = first.popleft() if first else later.popleft()
            if cancelled():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the waiting caller
                deliver(None, exc)
            else:
                deliver(result, None)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is None:
        future.set_result(result)
    elif isinstance(exc, StopIteration):
        # An asyncio future cannot carry a StopIteration; its caller still hears of it.
        future.set_exception(RuntimeError(f"a journal job raised {exc!r}"))
    else:
        future.set_exception(exc)


class WriterConnection(sqlite3.Connection):
    """The writer's connection; it knows whether it is at ``synchronous = FULL``
    (set after every open, and again only after a transaction without fsync)."""

    synchronous_full = False


def mark_synchronous_full(db: sqlite3.Connection, full: bool) -> None:
    if isinstance(db, WriterConnection):
        db.synchronous_full = full
