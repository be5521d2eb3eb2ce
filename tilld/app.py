"""The composition root: builds every object, starts them in order, stops them in reverse.

Start-up reads like the list it is: check the state directory, open the
journal, load the catalog and open sales, serve the API. Nothing here waits
for the back-end or a device, so a till with its server gone still comes up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable

from .api.jsonrpc import Dispatcher
from .api.roles import RoleMap
from .api.socket import SocketServer
from .config import Settings
from .errors import StartupError
from .events import EventBus
from .journal import Journal
from .till import Till

log = logging.getLogger("tilld")


def check_state_dir(settings: Settings) -> None:
    state = settings.paths.state_dir
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"cannot create the state directory {state}: {exc.strerror}. "
            "Create it and give it to the tilld user, or set paths.state_dir."
        ) from exc
    if not os.access(state, os.W_OK | os.X_OK):
        raise StartupError(
            f"the state directory {state} is not writable by uid {os.getuid()}; "
            "the journal cannot be kept there. Give it to the tilld user "
            "(chown tilld: it) or set paths.state_dir."
        )


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.events = EventBus()
        self.journal = Journal(settings.journal_path, settings.till.id)
        self.till = Till(settings, self.journal, self.events)
        self.api = SocketServer(
            settings.api.socket_path,
            Dispatcher(self.till),
            self.events,
            RoleMap(settings.api.cashier_group, settings.api.tech_group),
            settings.api.max_clients,
        )
        self._stop = asyncio.Event()

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        started = time.monotonic()
        check_state_dir(self.settings)
        await self.journal.open()
        try:
            await self.till.start()
            await self.api.start()
            try:
                log.info(
                    "till %s ready in %.0f ms: mode %s, journal at seq %d",
                    self.settings.till.id,
                    (time.monotonic() - started) * 1000,
                    self.till.connectivity.mode.value,
                    self.journal.head_seq,
                )
                if on_ready is not None:
                    on_ready()
                self._install_signal_handlers()
                await self._stop.wait()
                log.info("stopping: no new sales")
                self.till.accepting_sales = False
            finally:
                await self.api.stop()
        finally:
            # The journal's writer finishes what it was given before closing,
            # so a sale being committed is either fully stored or not at all.
            await self.journal.close()
        log.info("stopped")

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)

    def stop(self) -> None:
        self._stop.set()
