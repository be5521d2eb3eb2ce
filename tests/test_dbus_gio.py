"""A cashier screen no one here wrote the transport of: GLib's Gio drives the outage routine.

docs/examples/cashier_screen.py (the example docs/ui-guide.md shows) runs
under Debian's /usr/bin/python3 with python3-gi, against the demo on its
private bus: cash, a held card payment cancelled and another approved as
signals, the server off, an event ticket refused and its fallback sold, a
scan captured, the server back and the pending counts at zero.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SLOW_DBUS_CALL

SYSTEM_PYTHON = "/usr/bin/python3"
EXAMPLE = REPO / "docs" / "examples" / "cashier_screen.py"


def _has_gi() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.fixture
def demo(short_tmp):
    if not _has_gi():
        pytest.fail("python3-gi is missing: make system-deps installs it")
    process = subprocess.Popen(
        [sys.executable, "-m", "tilld.cli.daemon", "demo", "--state-dir", str(short_tmp / "d")],
        stdout=subprocess.PIPE,
        stderr=(short_tmp / "demo.log").open("wb"),
        text=True,
        cwd=REPO,
    )
    announced: dict[str, str] = {}
    while "dbus" not in announced:
        line = process.stdout.readline()
        assert line, "the demo exited before announcing dbus="
        key, _, value = line.strip().partition("=")
        announced[key] = value
    yield announced["dbus"]
    process.send_signal(signal.SIGINT)
    process.wait(30)
    process.stdout.close()


def test_a_gio_screen_does_the_outage_routine(demo, short_tmp):
    assert shutil.which(SYSTEM_PYTHON)
    run = subprocess.run(
        [SYSTEM_PYTHON, "-I", str(EXAMPLE), demo],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    steps = {}
    for line in run.stdout.splitlines():
        record = json.loads(line)
        steps[record.pop("step")] = record
    assert run.returncode == 0, (run.stdout, run.stderr, (short_tmp / "demo.log").read_text())
    assert steps["cash"]["status"] == "completed" and steps["cash"]["change"] == 1500
    assert steps["card-started"]["payment_id"]
    assert steps["terminal-text"]["text"]
    assert steps["card-cancelled"]["reason"]
    assert steps["card-approved"]["receipt_no"] > steps["cash"]["receipt_no"]
    assert steps["offline"]["mode"] == "server-unreachable" and steps["offline"]["since"]
    refused = steps["refused"]
    assert refused["error"] == "org.tilld.Till1.Error.EventTicketOffline"
    assert refused["fallback_plu"] == "100" and "sale.add" not in refused["message"]
    assert steps["sold-offline"]["tickets"] >= 1
    assert steps["scan-captured"] == {"status": "captured", "scans": 1}
    assert steps["synced"]["last_success"]
    assert "done" in steps
    # No D-Bus method waited on the terminal, the back-end or the cashier.
    log = (short_tmp / "demo.log").read_text(encoding="utf-8", errors="replace")
    assert SLOW_DBUS_CALL not in log, [line for line in log.splitlines() if SLOW_DBUS_CALL in line]
