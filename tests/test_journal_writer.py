"""The journal's writer thread (tilld/journal/writer.py): its order, and its end."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tilld.journal.writer import WriterThread


def test_bookkeeping_waits_behind_everything_else_and_keeps_its_own_order() -> None:
    writer = WriterThread("test-writer")
    ran: list[str] = []
    gate = threading.Event()

    async def main() -> None:
        first = writer.run(gate.wait, 10)  # holds the thread while the rest queue up
        jobs = [
            writer.run(ran.append, "result 1", last=True),
            writer.run(ran.append, "sale"),
            writer.run(ran.append, "result 2", last=True),
            writer.run(ran.append, "scan"),
        ]
        gate.set()
        assert await first is True
        await asyncio.gather(*jobs)

    asyncio.run(main())
    assert ran == ["sale", "scan", "result 1", "result 2"]
    writer.shutdown()


def test_a_job_after_shutdown_is_refused_at_once_not_left_waiting() -> None:
    writer = WriterThread("test-writer")

    async def main() -> None:
        assert await writer.run(lambda: 1) == 1
        writer.shutdown()
        with pytest.raises(RuntimeError, match="journal is closed"):
            writer.run(lambda: 2)

    asyncio.run(main())


def test_an_error_in_a_job_reaches_its_caller_and_the_thread_goes_on() -> None:
    writer = WriterThread("test-writer")

    def fails() -> None:
        raise OSError("disk full")

    async def main() -> None:
        with pytest.raises(OSError, match="disk full"):
            await writer.run(fails)
        assert await writer.run(lambda: "still writing") == "still writing"

    asyncio.run(main())
    writer.shutdown()


def test_a_job_from_the_event_loop_answers_into_its_future_errors_too() -> None:
    writer = WriterThread("test-writer")

    async def main() -> None:
        assert await writer.run(lambda: "committed") == "committed"
        with pytest.raises(OSError, match="disk full"):
            await writer.run(_raise, OSError("disk full"))
        # An asyncio future cannot carry StopIteration: it still reaches the caller.
        with pytest.raises(RuntimeError, match="StopIteration"):
            await writer.run(_raise, StopIteration())

    asyncio.run(main())
    writer.shutdown()


def test_a_job_cancelled_before_the_thread_reaches_it_is_not_run() -> None:
    writer = WriterThread("test-writer")
    ran: list[str] = []
    gate = threading.Event()

    async def main() -> None:
        holding = writer.run(gate.wait, 10)  # holds the thread while the next one queues
        cancelled = writer.run(ran.append, "cancelled")
        cancelled.cancel()
        gate.set()
        assert await holding is True
        assert await writer.run(ran.append, "after") is None

    asyncio.run(main())
    assert ran == ["after"]
    writer.shutdown()


def _raise(exc: BaseException) -> None:
    raise exc
