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

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

FIRST, LAST = 0, 1  # priorities: everything, then sync's bookkeeping


class WriterThread:
    def __init__(self, name: str) -> None:
        self._jobs: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._order = itertools.count()  # first in, first out within a priority
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._started = False
        self._closed = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], *args: Any, last: bool = False) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                # After shutdown() nothing would ever run the job: its caller
                # would wait for ever, so it is told at once instead.
                raise RuntimeError("the journal is closed: tilld is stopping")
            if not self._started:
                self._started = True
                self._thread.start()
            self._jobs.put((LAST if last else FIRST, next(self._order), (future, fn, args)))
        return future

    def shutdown(self) -> None:
        """Let the thread end after the jobs already asked for."""
        with self._lock:
            self._closed = True
            if self._started:
                self._jobs.put((LAST + 1, next(self._order), None))

    def _serve(self) -> None:
        while True:
            _, _, job = self._jobs.get()
            if job is None:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting coroutine
                future.set_exception(exc)
            else:
                future.set_result(result)
