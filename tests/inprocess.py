"""A till built in this process by app.py's Daemon, for tests of the use cases.

The till is the one the daemon runs: ``Daemon(settings)`` builds every part
through its constructor and ``Daemon.run`` starts them in the lifecycle's
order, so a test meets the same wiring as `tilld` does, without a process to
spawn and a socket to speak JSON over. Its journal is a temporary SQLite
file; its back-end, terminal and printer are the real simulators (tests/sims.py)
over TCP on loopback, one set per test module (``Rig``), shared by the tests
in it and put back to their defaults between tests.

The subprocess tests (tests/conftest.py's TillProcess) still prove the
process: the socket, signals, crashes, systemd. These prove the use cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from conftest import DEMO_CATALOG, START_TIMEOUT
from sims import Backend, PrinterSim, Proxy, TerminalSim, online_config

from tilld.app import Daemon
from tilld.config import Settings
from tilld.till import Till

T = TypeVar("T")

# Each till gets an id of its own: the simulators outlive it, and the
# back-end keeps each till's journal apart by id.
_till_numbers = itertools.count(1)


@dataclass
class Rig:
    """The simulators a module's tills talk to, each a real process on loopback."""

    backend: Backend
    server: Proxy  # between the till and the back-end: "refuse" is the server gone
    internet: Proxy  # the internet probe's target: "refuse" is the internet gone
    terminal: TerminalSim
    printer: PrinterSim

    @classmethod
    def start(cls, base: Path) -> Rig:
        backend = Backend(base)
        return cls(
            backend,
            Proxy(base, "server", backend.address),
            Proxy(base, "internet", None),
            TerminalSim(base),
            PrinterSim(base),
        )

    def stop(self) -> None:
        for sim in (self.printer, self.terminal, self.internet, self.server, self.backend):
            sim.stop()

    @classmethod
    @contextlib.contextmanager
    def in_temporary_folder(cls) -> Iterator[Rig]:
        """A rig for a module's tests (a module-scoped fixture), removed after them."""
        base = Path(tempfile.mkdtemp(prefix="tilld-rig-"))
        rig = cls.start(base)
        try:
            yield rig
        finally:
            rig.stop()
            shutil.rmtree(base, ignore_errors=True)

    def reset(self) -> None:
        """Back to an online site with an approving terminal, for the next test."""
        self.server.set_mode("pass")
        self.internet.set_mode("pass")
        self.terminal._control({"op": "reset"})
        self.printer.set_state("ok")

    def config(self) -> dict[str, dict[str, Any]]:
        """A till online through the proxies, with the terminal and the printer on TCP."""
        return {
            **online_config(self.backend, self.server, self.internet),
            "devices.terminal": {"kind": "zvt-tcp", "address": self.terminal.address},
            "devices.printer": {
                "kind": "network",
                "address": self.printer.address,
                "status_interval_s": 0.3,
            },
            "card": {"offline_limit": 250},
        }


def settings_for(base: Path, config: dict[str, dict[str, Any]] | None = None) -> Settings:
    """The settings TillProcess writes as TOML, as the Settings they load into."""
    sections: dict[str, dict[str, Any]] = {
        "till": {"id": f"till-inprocess-{os.getpid()}-{next(_till_numbers)}"},
        "paths": {"state_dir": str(base / "state")},
        "api": {"socket_path": str(base / "tilld.sock"), "dbus": "none"},
        "catalog": {"file": str(DEMO_CATALOG)},
    }
    for section, values in (config or {}).items():
        sections.setdefault(section, {}).update(values)
    nested: dict[str, Any] = {}
    for dotted, values in sections.items():  # "devices.terminal" is [devices.terminal]
        *parents, name = dotted.split(".")
        place = nested
        for parent in parents:
            place = place.setdefault(parent, {})
        place.setdefault(name, {}).update(values)
    return Settings(**nested)


@dataclass
class RunningTill:
    daemon: Daemon
    task: asyncio.Task[None]

    @property
    def till(self) -> Till:
        return self.daemon.till

    @property
    def till_id(self) -> str:
        return self.daemon.settings.till.id

    def status(self) -> dict[str, Any]:
        return self.till.status()

    async def wait_for(
        self, condition: Callable[[], T | Awaitable[T]], what: str, timeout: float = 15.0
    ) -> T:
        """Wait until ``condition()`` is true (or awaits to true), at most ``timeout`` s."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = condition()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value  # type: ignore[return-value]
            if self.task.done():
                self.task.result()  # the till stopped: its error is the failure
                raise AssertionError(f"the till stopped while waiting for {what}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.02)

    async def wait_mode(self, mode: str) -> None:
        await self.wait_for(lambda: self.status()["mode"] == mode, f"mode {mode}")

    async def sell(self, plu: str = "300", method: str = "cash") -> dict[str, Any]:
        """One line of ``plu``, paid in full by ``method``: the pay answer."""
        sale_id = self.till.open_sale()["sale_id"]
        await self.till.add(sale_id, plu=plu, barcode=None, quantity=1)
        total = (await self.till.get(sale_id))["total"]
        return await self.till.pay(sale_id, method, total, None)


@contextlib.asynccontextmanager
async def running_till(
    base: Path, config: dict[str, dict[str, Any]] | None = None
) -> AsyncIterator[RunningTill]:
    """A Daemon built and run in this event loop until the block ends, then stopped."""
    daemon = Daemon(settings_for(base, config))
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.run(on_ready=ready.set), name="in-process till")
    waiting = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiting}, timeout=START_TIMEOUT, return_when="FIRST_COMPLETED")
    waiting.cancel()
    if task.done():
        task.result()  # a failed start-up raises here, as it would have in tilld
    assert ready.is_set(), f"the till did not start within {START_TIMEOUT} s"
    try:
        yield RunningTill(daemon, task)
    finally:
        daemon.stop()
        await task


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


async def off_loop(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking call to a simulator's control API, kept off the till's event loop."""
    return await asyncio.to_thread(call, *args, **kwargs)
