"""The serial scanner driver against the scanner simulator over a real pty."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sims import ScannerSim

from drivers.device import Backoff, DeviceState, DeviceStatus
from drivers.scanner.decoding import ScanData, ScanRules
from drivers.scanner.serial import SerialScanner


class Recorder:
    def __init__(self) -> None:
        self.scans: list[ScanData] = []
        self.statuses: list[DeviceStatus] = []
        self.errors: list[str] = []
        self.changed = asyncio.Event()

    def device_status(self, name: str, status: DeviceStatus) -> None:
        self.statuses.append(status)
        self.changed.set()

    def device_error(self, name: str, message: str) -> None:
        self.errors.append(message)
        self.changed.set()

    def scanned(self, name: str, scan: ScanData) -> None:
        self.scans.append(scan)
        self.changed.set()

    async def until(self, condition, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def sim(short_tmp: Path):
    scanner = ScannerSim(short_tmp)
    yield scanner
    scanner.stop()


def make_scanner(sim: ScannerSim, recorder: Recorder, **rules) -> SerialScanner:
    scanner = SerialScanner(
        "scanner",
        recorder,
        recorder.scanned,
        port=str(sim.link),
        baudrate=9600,
        rules=ScanRules(**rules),
        debounce_s=0.5,
    )
    scanner.backoff = Backoff(first_s=0.05, cap_s=0.2)
    return scanner


def test_codes_typed_on_the_pty_arrive_as_scans(sim: ScannerSim) -> None:
    async def run() -> None:
        recorder = Recorder()
        scanner = make_scanner(sim, recorder)
        await scanner.open()
        try:
            assert await scanner.wait_connected(10)
            sim.scan("7310000000001")
            sim.scan("TK00000000DEMO1")
            await recorder.until(lambda: len(recorder.scans) == 2)
            assert [s.code for s in recorder.scans] == ["7310000000001", "TK00000000DEMO1"]
            assert scanner.status == DeviceStatus(DeviceState.OK)
        finally:
            await scanner.close()

    asyncio.run(run())


def test_garbage_is_an_error_event_and_the_next_scan_still_works(sim: ScannerSim) -> None:
    async def run() -> None:
        recorder = Recorder()
        scanner = make_scanner(sim, recorder, max_length=64)
        await scanner.open()
        try:
            assert await scanner.wait_connected(10)
            sim.send_bytes(b"\xff\xfe\x80garbage\r")  # not UTF-8
            sim.send_bytes(b"A" * 1000)  # no line end, far too long
            sim.send_bytes(b"tail\r")  # the end of that over-long line
            sim.send_bytes(b"ab\x01\x02cd\r")  # line noise
            sim.scan("7310000000001")
            await recorder.until(lambda: len(recorder.scans) == 1)
            assert [s.code for s in recorder.scans] == ["7310000000001"]
            assert len(recorder.errors) == 3, recorder.errors
            assert "not UTF-8" in recorder.errors[0]
            # How the pty splits the bytes decides which of the two is seen first.
            assert any(
                why in recorder.errors[1] for why in ("without a line end", "longer than 64")
            )
            assert "control characters" in recorder.errors[2]
            assert scanner.status.state is DeviceState.OK
        finally:
            await scanner.close()

    asyncio.run(run())


def test_the_same_code_within_the_debounce_window_counts_once(sim: ScannerSim) -> None:
    async def run() -> None:
        recorder = Recorder()
        scanner = make_scanner(sim, recorder)
        await scanner.open()
        try:
            assert await scanner.wait_connected(10)
            sim.scan("7310000000001")
            sim.scan("7310000000001")
            sim.scan("TK00000000DEMO1")
            await recorder.until(lambda: len(recorder.scans) == 2)
            await asyncio.sleep(0.6)  # past the debounce window: a new scan of the code
            sim.scan("7310000000001")
            await recorder.until(lambda: len(recorder.scans) == 3)
            assert [s.code for s in recorder.scans] == [
                "7310000000001",
                "TK00000000DEMO1",
                "7310000000001",
            ]
        finally:
            await scanner.close()

    asyncio.run(run())


def test_an_unplugged_scanner_goes_offline_and_recovers_when_plugged_back(
    sim: ScannerSim,
) -> None:
    async def run() -> None:
        recorder = Recorder()
        scanner = make_scanner(sim, recorder)
        await scanner.open()
        try:
            assert await scanner.wait_connected(10)
            sim.unplug()
            await recorder.until(lambda: scanner.status.state is DeviceState.OFFLINE)
            offline_at = len(recorder.statuses)
            await asyncio.sleep(0.5)  # several reconnect attempts while it is gone
            sim.plug()
            await recorder.until(lambda: scanner.status.state is DeviceState.OK)
            # Retries while unplugged do not flood listeners with repeated states.
            assert len(recorder.statuses) - offline_at <= 3, recorder.statuses
            sim.scan("TK00000000DEMO2")
            await recorder.until(lambda: len(recorder.scans) == 1)
            assert recorder.scans[0].code == "TK00000000DEMO2"
        finally:
            await scanner.close()

    asyncio.run(run())
