"""The receipt printer as a supervised device: status polling, print jobs, drawer kicks.

One lock orders everything sent to the printer, so a status query is never
interleaved with a job and its one-byte answer is never misread. After each
job the status is read again: a printer that ran out of paper or had its
cover opened while printing reports it then, and the job is returned as
`interrupted` so the caller can print it again, marked, once the printer is
back — never silently twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

from ..device import Backoff, DeviceListener, DeviceState, DeviceUnavailable, SupervisedDevice
from . import status as escpos_status
from .links import PrinterLink
from .render import drawer_kick
from .status import PrinterStatus, StatusByteError


class PrintOutcome(StrEnum):
    PRINTED = "printed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class PrintResult:
    outcome: PrintOutcome
    detail: str = ""


class PrinterNotReady(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ReceiptPrinter(SupervisedDevice):
    kind = "printer"

    def __init__(
        self,
        name: str,
        listener: DeviceListener,
        link: PrinterLink,
        *,
        poll_interval_s: float = 2.0,
        status_timeout_s: float = 1.0,
        status_queries: bool = True,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(name, listener, backoff=backoff)
        self.link = link
        self.poll_interval_s = poll_interval_s
        self.status_timeout_s = status_timeout_s
        self.status_queries = status_queries
        self.printer_status: PrinterStatus | None = None
        self._lock = asyncio.Lock()
        self._broken: asyncio.Event = asyncio.Event()
        self._ready = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self.connected and self._ready.is_set()

    async def wait_ready(self, timeout_s: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    async def _connect(self) -> None:
        self._broken.clear()
        await self.link.open()
        try:
            async with self._lock:
                await self._poll()
        except BaseException:
            await self.link.close()
            raise

    async def _serve(self) -> None:
        self._apply(self.printer_status or PrinterStatus())
        while True:
            try:
                # Not wait_for: on Python 3.11 it can swallow the cancellation
                # that closes the printer (drivers/device.py).
                async with asyncio.timeout(self.poll_interval_s):
                    await self._broken.wait()
            except TimeoutError:
                async with self._lock:
                    await self._poll()
            else:
                raise DeviceUnavailable("link lost while printing")

    async def _disconnect(self) -> None:
        self._ready.clear()
        self.printer_status = None
        await self.link.close()

    async def _poll(self) -> None:
        if not self.status_queries:
            self.printer_status = PrinterStatus()
            self._apply(self.printer_status)
            return
        # Bytes left from an earlier answer would shift every answer after it.
        while await self.link.read(64, 0.001):
            pass
        answers: dict[int, int] = {}
        for n in escpos_status.QUERIES:
            await self.link.write(escpos_status.query(n))
            answer = await self.link.read(1, self.status_timeout_s)
            if not answer:
                raise DeviceUnavailable("the printer does not answer status queries")
            answers[n] = answer[0]
        try:
            self.printer_status = escpos_status.parse(answers)
        except StatusByteError as exc:
            self._report_error(f"garbage status answer discarded: {exc}")
            raise DeviceUnavailable("garbled status answer; reconnecting") from exc
        if self.connected:
            self._apply(self.printer_status)

    def _apply(self, status: PrinterStatus) -> None:
        if status.ready:
            self._set_status(DeviceState.OK, status.detail)
            self._ready.set()
        else:
            self._set_status(DeviceState.ERROR, status.detail)
            self._ready.clear()

    async def print_job(self, data: bytes) -> PrintResult:
        """Send one job and say whether the printer stayed ready through it.

        Raises PrinterNotReady before sending anything when the printer is
        offline or reports a fault, so nothing is half-printed needlessly.
        """
        async with self._lock:
            self._check_ready()
            try:
                await self.link.write(data)
                await self._poll()
            except (OSError, DeviceUnavailable) as exc:
                self._broken.set()
                self._ready.clear()
                return PrintResult(PrintOutcome.INTERRUPTED, f"link lost: {exc}")
            status = self.printer_status
            if status is not None and not status.ready:
                return PrintResult(PrintOutcome.INTERRUPTED, status.detail)
            return PrintResult(PrintOutcome.PRINTED)

    async def kick_drawer(self, pin: int = 2) -> None:
        async with self._lock:
            if not self.connected:
                raise PrinterNotReady(self.status.detail or "offline")
            try:
                await self.link.write(drawer_kick(pin))
            except OSError as exc:
                self._broken.set()
                raise PrinterNotReady(f"link lost: {exc}") from exc

    def _check_ready(self) -> None:
        if not self.connected:
            raise PrinterNotReady(self.status.detail or "offline")
        if self.printer_status is not None and not self.printer_status.ready:
            raise PrinterNotReady(self.printer_status.detail)
