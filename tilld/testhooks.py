"""Hooks for the test suite only, off unless the environment says TILLD_TEST_HOOKS=1.

The watchdog test must show that a wedged event loop stops the WATCHDOG=1
pings. SIGSTOP would stop the whole process, not the loop, so it proves
nothing about the ping task; an API operation would sit in the contract.
With the hooks on, SIGUSR2 runs a handler *on the loop* that blocks it, as a
careless blocking call would, until the file ``<state_dir>/unblock-loop``
appears (or 60 s pass). Before it blocks it sends ``STATUS=event loop
blocked by a test hook`` so the test knows, in order on the notify socket,
from which datagram on no ping may come. Production units never set the
variable; the daemon logs a warning when it is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from .sdnotify import Notifier

log = logging.getLogger("tilld.testhooks")

ENV = "TILLD_TEST_HOOKS"
BLOCKED_STATUS = "event loop blocked by a test hook"
MAX_BLOCK_S = 60


def install(loop: asyncio.AbstractEventLoop, notifier: Notifier, state_dir: Path) -> None:
    if os.environ.get(ENV) != "1":
        return
    log.warning("%s=1: SIGUSR2 blocks the event loop (for tests; never set it on a till)", ENV)
    loop.add_signal_handler(signal.SIGUSR2, _block_loop, notifier, state_dir / "unblock-loop")


def _block_loop(notifier: Notifier, release: Path) -> None:
    notifier.status(BLOCKED_STATUS)
    log.warning("test hook: blocking the event loop until %s exists", release)
    deadline = time.monotonic() + MAX_BLOCK_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # deliberately blocking: this hook exists to wedge the loop
    release.unlink(missing_ok=True)
    log.warning("test hook: event loop released")
