"""`tilld demo` as a newcomer and a technician meet it, driven with tillctl.

The demo runs as a real subprocess with its simulators, standard input not
a terminal (as under a service or CI). Checked: what it announces, the
first mode it tells (no red flash), the printer's files named by receipt
number across a restart, the restored-sales log line, a clean stop.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

DEADLINE_S = 60


class Demo:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.socket = state_dir / "tilld.sock"
        self.announced = ""

    def start(self) -> Demo:
        self.err = open(self.state_dir.parent / "demo.err", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tilld.cli.daemon", "demo", "--state-dir", str(self.state_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.err,
            cwd=REPO,
        )
        out = b""
        deadline = time.monotonic() + DEADLINE_S
        # The announcement ends with the D-Bus lines.
        while out.count(b"busctl") < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
        self.announced = out.decode()
        assert "socket=" in self.announced, self.announced
        return self

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(DEADLINE_S)
        self.proc.stdout.close()
        self.err.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tillctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "tilld.cli.tillctl", "--socket", str(self.socket), *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def ok(self, *args: str) -> str:
        result = self.tillctl(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout.strip()

    def log(self) -> str:
        return (self.state_dir / "tilld.log").read_text(encoding="utf-8")


@pytest.fixture
def demo_dir(short_tmp):
    return short_tmp / "demo"


def wait_until(condition, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def sell(demo: Demo, plu: str, amount: int) -> str:
    sale = demo.ok("call", "sale.open", "--get", "sale_id")
    demo.ok("call", "sale.add", f"sale_id={sale}", f"plu={plu}")
    demo.ok("call", "sale.pay", f"sale_id={sale}", "method=cash", f"amount:={amount}")
    return sale


def test_the_demo_announces_its_parts_and_starts_without_a_red_mode(demo_dir):
    demo = Demo(demo_dir).start()
    try:
        for key in ("socket=", "dbus=", "scanner-control=http://127.0.0.1:", "log="):
            assert key in demo.announced, key
        # stdin is not a terminal: the control port is offered instead of typing.
        assert "/scan" in demo.announced and "type a code here" not in demo.announced

        def modes() -> list[str]:
            return [line for line in demo.log().splitlines() if "tilld.connectivity: mode" in line]

        # The first mode told is online: no no-internet, then server-unreachable, first.
        modes = wait_until(modes, "the first mode")
        assert modes and modes[0].endswith("mode online (first probes answered)"), modes
    finally:
        assert demo.stop() == 0
    assert not (demo_dir / "dbus.sock").exists()
    assert "Traceback" not in (demo_dir / "scanner.log").read_text()
    for log in demo_dir.glob("*.log"):
        assert "Traceback" not in log.read_text(errors="replace"), log


def test_the_suggested_ticket_code_is_a_sold_ticket_registered_after_the_outage(demo_dir):
    demo = Demo(demo_dir).start()
    try:
        assert "--get sale.lines.0.ticket_codes.0" in demo.announced
        sale = demo.ok("call", "sale.open", "--get", "sale_id")
        demo.ok("call", "sale.add", f"sale_id={sale}", "plu=100")
        code = demo.ok(
            "call", "sale.pay", f"sale_id={sale}", "method=cash", "amount:=20000",
            "--get", "sale.lines.0.ticket_codes.0",
        )  # fmt: skip
        demo.ok("demo", "server", "down")
        wait_until(lambda: "server-unreachable" in demo.ok("status"), "the outage")
        scanned = demo.ok("call", "scan.submit", f"code={code}", "--get", "local_check")
        assert scanned == "sold-here"
        why = demo.ok("call", "admin.sync_now", "wait:=true", "timeout_s:=1", "--get", "why")
        assert why.startswith("the back-end is unreachable (") and "{" not in why, why
        waited = demo.tillctl("sync", "--wait", "--timeout", "2")
        assert waited.returncode == 1, waited
        assert "waiting for the back-end" in waited.stderr
        assert "the back-end is still unreachable" in waited.stderr
        demo.ok("demo", "server", "up")
        wait_until(lambda: "mode           online" in demo.ok("status"), "the server back")
        assert demo.ok("sync", "--wait", "--timeout", "30").startswith("synced")
        scans = demo.ok("scans")
        assert code in scans and "registered" in scans and "unknown" not in scans, scans
    finally:
        demo.stop()


def test_receipt_files_are_named_by_number_and_survive_a_restart(demo_dir):
    demo = Demo(demo_dir).start()
    receipts = demo_dir / "receipts"
    try:
        sell(demo, "300", 3500)
        sell(demo, "301", 3000)
        wait_until(lambda: (receipts / "receipt-0002.txt").exists(), "receipt 2's file")
        # A card payment the terminal declines takes no money.
        sale = demo.ok("call", "sale.open", "--get", "sale_id")
        demo.ok("call", "sale.add", f"sale_id={sale}", "plu=300")
        demo.ok("demo", "card", "decline")
        declined = demo.tillctl(
            "call", "sale.pay", f"sale_id={sale}", "method=card", "amount:=3500"
        )
        assert declined.returncode == 1 and "card-declined" in declined.stderr, declined.stderr
    finally:
        assert demo.stop() == 0
    first = {p.name: p.read_text() for p in receipts.iterdir()}
    assert "Kvitto nr" in first["receipt-0001.txt"] and "Kaffe" in first["receipt-0001.txt"]

    demo = Demo(demo_dir).start()
    try:
        sell(demo, "400", 1500)
        wait_until(lambda: (receipts / "receipt-0003.txt").exists(), "receipt 3's file")
        again = demo.tillctl("receipt", "print", "1")
        assert again.returncode == 1, again
        assert "refused (receipt-already-printed)" in again.stderr
        assert "(tillctl receipt print 1 --copy)" in again.stderr, again.stderr
        assert demo.ok("receipt", "print", "1", "--copy").endswith("printed")
        wait_until(lambda: (receipts / "receipt-0001-kopia.txt").exists(), "the copy's file")
        log = demo.log()
    finally:
        demo.stop()
    for name, text in first.items():
        assert (receipts / name).read_text() == text, f"{name} was overwritten"
    assert "Vykort" in (receipts / "receipt-0003.txt").read_text()
    assert "KOPIA" in (receipts / "receipt-0001-kopia.txt").read_text()
    assert "had taken payments" not in log
    assert "restored 1 open sale(s), none with money taken" in log
    assert "scanner scanner" not in log and "printer printer" not in log


def test_the_scanner_simulator_with_stdin_not_a_terminal_says_so_without_a_traceback(short_tmp):
    sim = subprocess.Popen(
        [sys.executable, "-m", "drivers.sim.scanner", "--link", str(short_tmp / "scanner"),
         "--stdin"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )  # fmt: skip
    try:
        announced = ""
        while "control=" not in announced:
            line = sim.stdout.readline()
            assert line, sim.stderr.read()
            announced += line
        said = sim.stderr.readline()  # logged once the stdin reader gave up
        assert "standard input is not a terminal" in said, said
    finally:
        sim.send_signal(signal.SIGINT)
        _, rest = sim.communicate(timeout=DEADLINE_S)
    assert "Traceback" not in rest, rest
