"""USB keyboard-wedge scanners through evdev, grabbed so codes never become typing.

Without the exclusive grab every scan would also arrive as keystrokes in
whatever window has focus on the till: a ticket code typed into the price
field. The grab makes the scanner ours alone while tilld runs.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..device import DeviceListener, DeviceUnavailable
from .base import ScanCallback, Scanner
from .decoding import ScanRules, clean
from .keymap import KeyDecoder


class WedgeScanner(Scanner):
    def __init__(
        self,
        name: str,
        listener: DeviceListener,
        on_scan: ScanCallback,
        *,
        device: str,
        rules: ScanRules,
        debounce_s: float,
    ) -> None:
        super().__init__(name, listener, on_scan, rules=rules, debounce_s=debounce_s)
        self.device = device
        self._input: Any = None

    async def _connect(self) -> None:
        try:
            import evdev
        except ImportError as exc:
            raise DeviceUnavailable("python-evdev is not installed") from exc
        device = evdev.InputDevice(self.device)
        try:
            device.grab()
        except OSError as exc:
            device.close()
            raise DeviceUnavailable(
                f"cannot grab {self.device} ({exc.strerror}); another program holds it"
            ) from exc
        self._input = device

    async def _serve(self) -> None:
        decoder = KeyDecoder(max_length=self.rules.max_length)
        async for event in self._input.async_read_loop():
            line = decoder.feed(event.type, event.code, event.value)
            if line is not None:
                self._deliver(clean(line.encode(), self.rules))

    async def _disconnect(self) -> None:
        device, self._input = self._input, None
        if device is not None:
            # An unplugged device is already ungrabbed.
            with contextlib.suppress(OSError):
                device.ungrab()
            device.close()
