"""USB HID POS scanners (usage page 0x8C, "Barcode Scanner"), read through pyusb.

In HID POS mode a scanner sends its codes as Scanned Data Reports instead
of keystrokes: nothing reaches the UI as typing, and the report names the
symbology. The layout used by Honeywell, Zebra and Datalogic devices, per
the HID Point of Sale Usage Tables:

    byte 0      report id 0x02 (Scanned Data Report)
    byte 1      number of code bytes in this report (at most 56)
    bytes 2-4   AIM symbology identifier, e.g. "]E0"
    bytes 5-60  code bytes, zero padded
    byte 63     bit 0 set: the code continues in the next report

A code longer than one report arrives in several, the last with bit 0 clear.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from ..device import DeviceListener, DeviceUnavailable
from ..usb import claim as claim_usb
from ..usb import release as release_usb
from .base import ScanCallback, Scanner
from .decoding import AIM_SYMBOLOGIES, ScanData, ScanGarbage, ScanRules, clean

SCANNED_DATA_REPORT = 0x02
REPORT_SIZE = 64
DATA_OFFSET = 5
DATA_MAX = 56
CONTINUED_BYTE = 63


@dataclass
class HidPosDecoder:
    """Feed raw input reports; get a scan or a garbage report per completed code."""

    rules: ScanRules = field(default_factory=ScanRules)
    _parts: bytearray = field(default_factory=bytearray)
    _aim: bytes = b""

    def feed(self, report: bytes) -> ScanData | ScanGarbage | None:
        if not report or report[0] != SCANNED_DATA_REPORT:
            # Other reports (status, settings) carry no code; ignore them.
            return None
        if len(report) < DATA_OFFSET:
            self._parts.clear()
            return ScanGarbage(f"scanned data report of {len(report)} bytes is truncated")
        length = report[1]
        if length > DATA_MAX or DATA_OFFSET + length > len(report):
            self._parts.clear()
            return ScanGarbage(f"scanned data report claims {length} bytes of code")
        self._aim = bytes(report[2:5])
        self._parts += report[DATA_OFFSET : DATA_OFFSET + length]
        continued = len(report) > CONTINUED_BYTE and report[CONTINUED_BYTE] & 0x01
        if len(self._parts) > 4 * self.rules.max_length:
            self._parts.clear()
            return ScanGarbage("a code continued past any barcode's length")
        if continued:
            return None
        raw, self._parts = bytes(self._parts), bytearray()
        # The report's own AIM identifier names the symbology; prefix rules
        # still apply because scanners can add a configured prefix here too.
        result = clean(raw, ScanRules(self.rules.prefix, b"", self.rules.max_length, False))
        if isinstance(result, ScanData):
            return ScanData(result.code, _symbology(self._aim))
        return result


def _symbology(aim: bytes) -> str:
    if len(aim) == 3 and aim[:1] == b"]":
        char = chr(aim[1])
        return AIM_SYMBOLOGIES.get(char, f"aim-{char}")
    return ""


class HidPosScanner(Scanner):
    """Reads a HID POS scanner's interrupt endpoint in a thread of its own.

    pyusb reads block, and a blocking call must never run on the event loop
    (it would stall every sale), so one reader thread per scanner owns the
    USB handle and hands reports to the loop.
    """

    def __init__(
        self,
        name: str,
        listener: DeviceListener,
        on_scan: ScanCallback,
        *,
        vendor_id: int,
        product_id: int,
        rules: ScanRules,
        debounce_s: float,
    ) -> None:
        super().__init__(name, listener, on_scan, rules=rules, debounce_s=debounce_s)
        self.vendor_id = vendor_id
        self.product_id = product_id
        self.decoder = HidPosDecoder(rules)
        self._device: Any = None
        self._endpoint: Any = None
        self._stopping = threading.Event()

    async def _connect(self) -> None:
        self._device, self._endpoint = await asyncio.to_thread(self._claim)

    def _claim(self) -> tuple[Any, Any]:
        claimed = claim_usb(self.vendor_id, self.product_id, "scanner")
        if claimed.endpoint_in is None:
            raise DeviceUnavailable("the scanner has no input endpoint; is it in HID POS mode?")
        return claimed.device, claimed.endpoint_in

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        reports: asyncio.Queue[bytes | BaseException] = asyncio.Queue(256)
        self._stopping.clear()
        thread = threading.Thread(
            target=self._read_reports, args=(loop, reports), name=f"hidpos {self.name}"
        )
        thread.start()
        try:
            while True:
                item = await reports.get()
                if isinstance(item, BaseException):
                    raise DeviceUnavailable(f"USB read failed: {item}")
                self._deliver(self.decoder.feed(item))
        finally:
            self._stopping.set()
            await asyncio.to_thread(thread.join, 2.0)

    def _read_reports(self, loop: asyncio.AbstractEventLoop, reports: asyncio.Queue) -> None:
        import usb.core

        while not self._stopping.is_set():
            try:
                data = self._endpoint.read(REPORT_SIZE, timeout=500)
            except usb.core.USBTimeoutError:
                continue
            except usb.core.USBError as exc:
                loop.call_soon_threadsafe(reports.put_nowait, exc)
                return
            loop.call_soon_threadsafe(reports.put_nowait, bytes(data))

    async def _disconnect(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            await asyncio.to_thread(release_usb, device)
