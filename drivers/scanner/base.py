"""What every scanner kind shares: debounce, garbage reporting, the scan callback."""

from __future__ import annotations

from collections.abc import Callable

from ..device import DeviceListener, SupervisedDevice
from .decoding import Debouncer, ScanData, ScanGarbage, ScanRules

# (device name, scan): the daemon routes it as article, ticket or unknown.
ScanCallback = Callable[[str, ScanData], None]


class Scanner(SupervisedDevice):
    kind = "scanner"

    def __init__(
        self,
        name: str,
        listener: DeviceListener,
        on_scan: ScanCallback,
        *,
        rules: ScanRules,
        debounce_s: float,
    ) -> None:
        super().__init__(name, listener)
        self.rules = rules
        self.on_scan = on_scan
        self.debouncer = Debouncer(debounce_s)

    def _deliver(self, result: ScanData | ScanGarbage | None) -> None:
        if isinstance(result, ScanGarbage):
            self._report_error(f"garbage from the scanner discarded: {result.reason}")
        elif isinstance(result, ScanData) and self.debouncer.accept(result.code):
            self.on_scan(self.name, result)
