"""A bounded stop: SIGTERM to exit within STOP_BUDGET_S, whatever is stuck.

systemd waits TimeoutStopSec before it kills a stopping till, and a till
that is killed leaves its print jobs and card payments for the next start.
So the stop is a list of steps, each with a time limit, run in order under
one deadline: a step that fails or runs out of time is logged and the next
one is still attempted. The journal is closed last, with time reserved for
it, so every sale a cashier was told about is on disk before the exit.

Three things would otherwise hold the exit however well the steps behave,
and this module bounds each of them:

- A task that swallows its cancellation keeps running. Python 3.11's
  ``asyncio.wait_for`` returns the inner result when a cancel arrives just as
  the inner await completes (fixed in 3.12, gh-86296), so a device loop can
  go on forever after ``task.cancel()``; ``await task`` then never returns.
  Steps are awaited with ``asyncio.wait`` (which never waits for a cancelled
  task to finish) and ``cancel_and_wait`` cancels again until a time limit.
- ``asyncio.run`` waits without limit for every task it cancels at the end
  and for every thread of the default executor (``asyncio.to_thread``: a DNS
  lookup that never gets an answer, a device write). ``run_until_stopped``
  gives both a time limit instead.
- The interpreter joins every executor thread at exit. A thread blocked in
  the kernel (a USB transfer, getaddrinfo) is not interruptible from Python,
  so ``exit_now`` leaves them behind with ``os._exit`` once the journal is
  closed: what they were doing was never acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn

log = logging.getLogger("tilld")

# SIGTERM to exit, the contract with systemd and the operator (docs/install.md).
STOP_BUDGET_S = 5.0
# Kept back from the steps for the journal's close and the process exit.
JOURNAL_CLOSE_S = 1.0
EXIT_S = 0.5
# Every step gets at least this, even when the ones before it used the budget up.
MIN_STEP_S = 0.05
# After a step's time is up: how long its cancellation may take before it is left.
CANCEL_GRACE_S = 0.1
# Threads still running once the journal is closed get this long to end.
THREAD_GRACE_S = 0.25


@dataclass(frozen=True)
class StopStep:
    name: str  # what stops, as the log says it: "the devices", "the APIs"
    action: Callable[[], Awaitable[Any]]
    limit_s: float
    # Given even when the steps before used the deadline up.
    at_least_s: float = MIN_STEP_S
    # Kept back for this step from the deadline of the steps before it (the journal's close).
    reserved_s: float = 0.0


@dataclass
class StopProblem:
    step: str
    what: str  # "did not finish within 1 s", or the error

    def __str__(self) -> str:
        return f"{self.step}: {self.what}"


async def run_steps(steps: list[StopStep], deadline: float) -> list[StopProblem]:
    """Run each step in order, each within its limit and the deadline (time.monotonic()).

    Every step is attempted; the problems are logged and returned. A step
    ends by ``deadline`` less the time the steps after it keep back."""
    problems: list[StopProblem] = []
    for index, step in enumerate(steps):
        began = time.monotonic()
        kept = sum(later.reserved_s for later in steps[index + 1 :])
        limit = max(step.at_least_s, min(step.limit_s, deadline - kept - began))
        problem = await _run_step(step, limit)
        if problem is not None:
            problems.append(problem)
        log.debug("stopping %s took %.3f s", step.name, time.monotonic() - began)
    return problems


async def _run_step(step: StopStep, limit_s: float) -> StopProblem | None:
    task = asyncio.ensure_future(step.action())
    done, _ = await asyncio.wait({task}, timeout=limit_s)
    if not done:
        finished = await cancel_and_wait(task, CANCEL_GRACE_S)
        problem = StopProblem(step.name, f"did not finish within {limit_s:.2g} s")
        log.error(
            "stopping %s: %s; %s and went on stopping",
            step.name,
            problem.what,
            "cancelled it" if finished else "left it running",
        )
        return problem
    if task.cancelled():
        return StopProblem(step.name, "was cancelled")
    exc = task.exception()
    if exc is not None:
        log.error("stopping %s failed; went on stopping", step.name, exc_info=exc)
        return StopProblem(step.name, f"{type(exc).__name__}: {exc}")
    return None


async def cancel_and_wait(task: asyncio.Future[Any], limit_s: float) -> bool:
    """Cancel ``task`` and wait at most ``limit_s`` for it to end; True if it did.

    The cancel is repeated: a task that swallowed one (see the module's
    docstring) gets another at its next await."""
    deadline = time.monotonic() + limit_s
    while not task.done():
        task.cancel()
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.wait({task}, timeout=min(left, 0.05))
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: its failure is not logged twice at exit
    return task.done()


def run_until_stopped(main: Coroutine[Any, Any, Any], cleanup_s: float) -> None:
    """``asyncio.run(main)``, with time limits where asyncio.run has none.

    Tasks still running after ``main`` get ``cleanup_s`` to end once
    cancelled; threads of the default executor are not waited for."""
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(thread_name_prefix="tilld-blocking")
    loop.set_default_executor(executor)
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    finally:
        try:
            leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
            if leftovers:
                loop.run_until_complete(_cancel_leftovers(leftovers, cleanup_s))
            loop.run_until_complete(_bounded(loop.shutdown_asyncgens(), cleanup_s))
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            asyncio.set_event_loop(None)
            loop.close()


async def _cancel_leftovers(tasks: list[asyncio.Task[Any]], limit_s: float) -> None:
    results = await asyncio.gather(*(cancel_and_wait(t, limit_s) for t in tasks))
    stuck = [t.get_name() for t, ended in zip(tasks, results, strict=True) if not ended]
    if stuck:
        log.error("tasks still running at exit, left behind: %s", ", ".join(stuck))


async def _bounded(coro: Coroutine[Any, Any, Any], limit_s: float) -> None:
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=limit_s)
    if not done:
        await cancel_and_wait(task, CANCEL_GRACE_S)


def exit_now(code: int, deadline: float) -> NoReturn:
    """Leave the process once the journal is closed, by ``deadline`` at the latest.

    Threads still running get until ``deadline`` (at most THREAD_GRACE_S) to
    end; one that does not is blocked in the kernel (a device write, a DNS
    lookup) and is left behind: nothing it does was acknowledged to anyone.
    The interpreter's own teardown (joining every thread, freeing every
    module) is skipped: it takes seconds on a loaded machine and does nothing
    a till needs once its journal is closed and its log flushed."""
    main = threading.current_thread()
    until = min(deadline, time.monotonic() + THREAD_GRACE_S)
    for thread in _running_threads(main):
        thread.join(max(0.0, until - time.monotonic()))
    stuck = [t.name for t in _running_threads(main)]
    if stuck:
        log.warning(
            "exiting without waiting for %d blocked thread(s) (%s): a device or DNS call "
            "that does not return; nothing it did was acknowledged",
            len(stuck),
            ", ".join(stuck),
        )
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _running_threads(main: threading.Thread) -> list[threading.Thread]:
    """The threads the interpreter would wait for at exit."""
    return [t for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]
