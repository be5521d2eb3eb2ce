"""The device model every driver shares, in the spirit of UnifiedPOS.

A device is opened once and then looks after itself: a supervisor task
connects, serves until the link breaks, reports the device `offline`, waits a
jittered, growing delay and connects again. Unplugging a scanner or switching
off a printer therefore never needs a restart, and a device that is gone for
good costs one connection attempt every few seconds, not a busy loop.

Listeners hear three kinds of event: status changes (`ok`, `offline`,
`error`, each with a detail such as `paper-out`), errors that do not change
the state (garbage from a scanner), and device-specific data (a scan), which
each driver passes to a callback of its own.

Drivers bound their waits with `asyncio.timeout`, not `asyncio.wait_for`:
on Python 3.11, `wait_for` returns the inner result when a cancellation
arrives just as the inner await completes (gh-86296), and a supervisor that
lost its cancellation that way would keep polling a printer after the till
asked it to stop. `close()` is bounded all the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from .backoff import Backoff

log = logging.getLogger("tilld.drivers")

# How long closing a device may take when the till stops (docs/install.md).
CLOSE_TIMEOUT_S = 1.0


class DeviceState(StrEnum):
    OK = "ok"
    OFFLINE = "offline"
    ERROR = "error"


@dataclass(frozen=True)
class DeviceStatus:
    state: DeviceState
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"state": self.state.value, "detail": self.detail}


class DeviceUnavailable(Exception):
    """The device cannot be reached now; the supervisor will try again."""


class DeviceListener(Protocol):
    def device_status(self, name: str, status: DeviceStatus) -> None: ...

    def device_error(self, name: str, message: str) -> None: ...


class SupervisedDevice(ABC):
    """A device with a connect/serve loop that survives unplug and replug.

    Subclasses implement `_connect` (raise DeviceUnavailable or OSError when
    the device is not there), `_serve` (return or raise when the link is
    lost) and `_disconnect` (release the transport; must not raise).
    """

    kind = "device"

    def __init__(
        self,
        name: str,
        listener: DeviceListener,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.listener = listener
        self.backoff = backoff or Backoff()
        self._status = DeviceStatus(DeviceState.OFFLINE, "not opened")
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    @property
    def status(self) -> DeviceStatus:
        return self._status

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def open(self) -> None:
        """Start looking after the device; returns at once, connected or not."""
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"device {self.name}")

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop looking after the device and release it, within ``timeout_s``.

        A till that is stopping must not wait on a device: a supervisor that
        does not end in time (a driver that swallowed its cancellation) is
        cancelled again until the time is up, then left behind and logged."""
        task, self._task = self._task, None
        if task is not None:
            deadline = time.monotonic() + timeout_s
            task.cancel()
            # Time to release the transport; then cancel again, a driver may have lost the first.
            await asyncio.wait({task}, timeout=timeout_s / 2)
            while not task.done() and time.monotonic() < deadline:
                task.cancel()
                await asyncio.wait({task}, timeout=min(0.05, deadline - time.monotonic()))
            if not task.done():
                log.error(
                    "%s did not close within %.1f s; left behind (a driver that does "
                    "not honour cancellation)",
                    self.label,
                    timeout_s,
                )
            elif not task.cancelled() and task.exception() is not None:
                log.error("%s failed while closing", self.label, exc_info=task.exception())
        self._set_status(DeviceState.OFFLINE, "closed")

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    @property
    def ready(self) -> bool:
        """Able to take a command now; a device with more to check (a live link) says more."""
        return self.connected

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until ``ready``, at most ``timeout_s``; False if it did not become ready."""
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            if time.monotonic() > deadline:
                return False
            await self.wait_connected(max(0.0, deadline - time.monotonic()))
            if not self.ready:
                await asyncio.sleep(0.02)  # connected, its link not yet: look again soon
        return True

    async def _supervise(self) -> None:
        while True:
            try:
                await self._connect()
            except (DeviceUnavailable, OSError) as exc:
                self._set_status(DeviceState.OFFLINE, _reason(exc))
                await asyncio.sleep(self.backoff.next_delay())
                continue
            self._connected.set()
            self.backoff.reset()
            self._set_status(DeviceState.OK, "")
            try:
                await self._serve()
                reason = "disconnected"
            except (DeviceUnavailable, OSError) as exc:
                reason = _reason(exc)
            except asyncio.CancelledError:
                self._connected.clear()
                await self._disconnect()
                raise
            except Exception:
                # A driver bug must not end supervision: the device would
                # stay dead until a restart, which is what this loop avoids.
                log.exception("%s failed; reconnecting", self.label)
                reason = "driver error (see log)"
            self._connected.clear()
            await self._disconnect()
            self._set_status(DeviceState.OFFLINE, reason)
            await asyncio.sleep(self.backoff.next_delay())

    @property
    def label(self) -> str:
        """How log lines name the device: "scanner", or "scanner entrance" when it has a name."""
        return self.name if self.name == self.kind else f"{self.kind} {self.name}"

    def _set_status(self, state: DeviceState, detail: str) -> None:
        status = DeviceStatus(state, detail)
        if status == self._status:
            return
        self._status = status
        log.info("%s: %s%s", self.label, state, f" ({detail})" if detail else "")
        self.listener.device_status(self.name, status)

    def _report_error(self, message: str) -> None:
        log.warning("%s: %s", self.label, message)
        self.listener.device_error(self.name, message)

    @abstractmethod
    async def _connect(self) -> None: ...

    @abstractmethod
    async def _serve(self) -> None: ...

    @abstractmethod
    async def _disconnect(self) -> None: ...


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
