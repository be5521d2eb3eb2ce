"""The till's hardware: builds the configured drivers and routes what they report.

Drivers know bytes; this module knows what their events mean for the till:
a scan is routed like any other (article, ticket, unknown), a status change
is a `device` event and a line in `status.get`, and garbage from a device is
a `device` error event, never a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from drivers.controlunit import open_control_unit
from drivers.device import DeviceStatus, SupervisedDevice
from drivers.escpos.links import PrinterLink, SerialLink, TcpLink, UsbLink
from drivers.escpos.printer import ReceiptPrinter
from drivers.scanner.base import Scanner
from drivers.scanner.decoding import ScanData, ScanRules
from drivers.scanner.hidpos import HidPosScanner
from drivers.scanner.serial import SerialScanner
from drivers.scanner.wedge import WedgeScanner
from drivers.terminal import CardTerminal

from .config import ControlUnitSection, PrinterSection, ScannerSection, TerminalSection
from .events import EventBus

if TYPE_CHECKING:
    from drivers.controlunit.cleancash import CleanCashUnit

log = logging.getLogger("tilld.devices")

SUFFIX_BYTES = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "TAB": b"\t"}
# Scans waiting to be routed; a scanner gone mad cannot grow memory past this.
SCAN_QUEUE_LIMIT = 256
# A scan being routed when the till stops gets this long to finish (it may be in the journal).
ROUTER_STOP_S = 0.25

ScanRouter = Callable[[str, str], Awaitable[Any]]


class Devices:
    def __init__(
        self,
        events: EventBus,
        route: ScanRouter,
        *,
        scanner: ScannerSection,
        printer: PrinterSection,
        terminal: TerminalSection,
        controlunit: ControlUnitSection,
    ) -> None:
        """Build the configured drivers (none is opened yet); ``route`` is where a
        scanned code goes (tilld/ticket_scans.py)."""
        self.events = events
        self._route = route
        self._scans: asyncio.Queue[ScanData] = asyncio.Queue(SCAN_QUEUE_LIMIT)
        self._router: asyncio.Task[None] | None = None
        self.scanner: Scanner | None = build_scanner(scanner, self, self._scanned)
        self.printer: ReceiptPrinter | None = build_printer(printer, self)
        self.terminal = build_terminal(terminal, self)

        self.controlunit: CleanCashUnit | None = None
        if controlunit.kind == "cleancash":
            self.controlunit = open_control_unit(
                "controlunit", self, kind="cleancash-serial", port=controlunit.port
            )
        # Told of every status a device reports, beside the `device` event.
        self.watchers: list[Callable[[str, DeviceStatus], None]] = []

    @property
    def all(self) -> list[SupervisedDevice]:
        devices = (self.scanner, self.printer, self.terminal, self.controlunit)
        return [d for d in devices if isinstance(d, SupervisedDevice)]

    async def start(self) -> None:
        self._router = asyncio.create_task(self._route_scans(), name="scan routing")
        for device in self.all:
            await device.open()

    async def stop(self) -> None:
        """Close every device at once: each close is bounded (drivers/device.py)."""
        if self._router is not None:
            self._router.cancel()
        await asyncio.gather(*(device.close() for device in reversed(self.all)))
        if self._router is not None:
            await asyncio.wait({self._router}, timeout=ROUTER_STOP_S)
            self._router = None

    def status(self) -> dict[str, dict[str, str]]:
        return {
            device.name: {**device.status.as_dict(), "kind": type(device).__name__}
            for device in self.all
        }

    # -- driver listener ----------------------------------------------------------

    def device_status(self, name: str, status: DeviceStatus) -> None:
        self.events.publish("device", device=name, event="status", **status.as_dict())
        for watcher in self.watchers:
            watcher(name, status)

    def device_error(self, name: str, message: str) -> None:
        self.events.publish("device", device=name, event="error", message=message)

    def _scanned(self, name: str, scan: ScanData) -> None:
        try:
            self._scans.put_nowait(scan)
        except asyncio.QueueFull:
            self.device_error(name, f"scan {scan.code!r} dropped: too many scans waiting")

    async def _route_scans(self) -> None:
        # One at a time, in order: two scans of the same ticket must meet
        # the "already scanned" check one after the other.
        while True:
            scan = await self._scans.get()
            try:
                await self._route(scan.code, "scanner")
            except Exception:
                # A refusal or a storage error for one scan must not stop the scanner.
                log.exception("routing scan %r failed", scan.code)


def build_terminal(config: TerminalSection, listener: Devices) -> CardTerminal | None:
    """The card terminal driver for `config.kind`: the one place that knows the protocols."""
    if config.kind == "nexo":
        from drivers.nexo import open_terminal as open_nexo

        return open_nexo(
            "terminal",
            listener,
            address=config.address,
            sale_id=config.sale_id,
            poi_id=config.poi_id,
        )
    if config.kind in ("zvt-tcp", "zvt-serial"):
        from drivers.zvt import open_terminal as open_zvt

        return open_zvt(
            "terminal",
            listener,
            kind=config.kind,
            address=config.address,
            port=config.port,
            password=config.password.get_secret_value(),
        )
    return None


def build_scanner(
    config: ScannerSection, listener: Devices, on_scan: Callable[[str, ScanData], None]
) -> Scanner | None:
    rules = ScanRules(
        prefix=config.prefix,
        suffix=SUFFIX_BYTES[config.suffix],
        max_length=config.max_length,
        aim_ids=config.aim_ids,
    )
    debounce_s = config.debounce_ms / 1000
    if config.kind == "serial":
        return SerialScanner(
            "scanner",
            listener,
            on_scan,
            port=config.port,
            baudrate=config.baudrate,
            rules=rules,
            debounce_s=debounce_s,
        )
    if config.kind == "evdev":
        return WedgeScanner(
            "scanner", listener, on_scan, device=config.device, rules=rules, debounce_s=debounce_s
        )
    if config.kind == "hidpos":
        return HidPosScanner(
            "scanner",
            listener,
            on_scan,
            vendor_id=config.vendor_id,
            product_id=config.product_id,
            rules=rules,
            debounce_s=debounce_s,
        )
    return None


def build_printer(config: PrinterSection, listener: Devices) -> ReceiptPrinter | None:
    link: PrinterLink
    if config.kind == "network":
        host, _, port = config.address.rpartition(":")
        link = TcpLink(host, int(port))
    elif config.kind == "serial":
        link = SerialLink(config.port, config.baudrate)
    elif config.kind == "usb":
        link = UsbLink(config.vendor_id, config.product_id)
    else:
        return None
    return ReceiptPrinter(
        "printer",
        listener,
        link,
        poll_interval_s=config.status_interval_s,
        status_queries=config.status_queries,
    )
