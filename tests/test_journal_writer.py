"""The journal's writer thread (tilld/journal/writer.py): its order, and its end."""

from __future__ import annotations

import threading

import pytest

from tilld.journal.writer import WriterThread


def test_bookkeeping_waits_behind_everything_else_and_keeps_its_own_order() -> None:
    writer = WriterThread("test-writer")
    ran: list[str] = []
    gate = threading.Event()
    first = writer.submit(gate.wait, 10)  # holds the thread while the rest queue up
    jobs = [
        writer.submit(ran.append, "result 1", last=True),
        writer.submit(ran.append, "sale"),
        writer.submit(ran.append, "result 2", last=True),
        writer.submit(ran.append, "scan"),
    ]
    gate.set()
    assert first.result(10) is True
    for job in jobs:
        job.result(10)
    assert ran == ["sale", "scan", "result 1", "result 2"]
    writer.shutdown()


def test_a_job_after_shutdown_is_refused_at_once_not_left_waiting() -> None:
    writer = WriterThread("test-writer")
    assert writer.submit(lambda: 1).result(10) == 1
    writer.shutdown()
    with pytest.raises(RuntimeError, match="journal is closed"):
        writer.submit(lambda: 2)


def test_an_error_in_a_job_reaches_its_caller_and_the_thread_goes_on() -> None:
    writer = WriterThread("test-writer")

    def fails() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        writer.submit(fails).result(10)
    assert writer.submit(lambda: "still writing").result(10) == "still writing"
    writer.shutdown()
