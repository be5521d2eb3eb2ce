"""Benchmark: a durable cash sale with the control unit on a pty, against one without.

Run with `make bench` (appends its section to docs/benchmarks.md) or directly:
    .venv/bin/python tests/bench/controlunit_sale.py [--sales N] [--append FILE]

With a unit the sale's answer waits for its control code: the registration
(RR and its answer over the pty) and two more journal writes (the request
marked sent, the code journaled). A pty passes bytes at memory speed, so
the line's own time at 9600 baud, computed from the frames' lengths, is
stated beside the figures: on a real RS-232 line it is a floor that adds to
the pty figure.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import TillProcess
from controlunit_sim import ControlUnitSim
from report import append_section, median, ms, percentile, section, table
from sims import wait_for
from workload import sale_latencies

from drivers.controlunit import ReceiptKind, ReceiptRegistration, Registration, StorageStatus
from drivers.controlunit.cleancash import messages

BAUD_BITS_PER_BYTE = 10  # 8N1: a start bit, 8 data bits, a stop bit


def line_floor_s() -> float:
    """The 9600 baud line time of one registration: RR out, its answer back."""
    receipt = ReceiptRegistration(
        date_time=datetime(2026, 11, 27, 12, 0),
        receipt_number=1234,
        till_id="till-test",
        org_number="5566778899",
        total_ore=11500,
        kind=ReceiptKind.NORMAL,
        vat_ore={25: 300, 12: 696},
    )
    request = messages.register_receipt(1234, receipt)
    answer = messages.registration_reply(
        Registration("0" * 32, "TILLDSIM00000042", StorageStatus.OK), 1234
    )
    frames = len(request) + len(answer)
    return frames * BAUD_BITS_PER_BYTE / 9600


def measure(base: Path, sales: int, unit: ControlUnitSim | None) -> tuple[list[float], list]:
    config = {"till": {"org_number": "556677-8899"}}
    if unit is not None:
        config["devices.controlunit"] = {"kind": "cleancash", "port": str(unit.link)}
    till = TillProcess(base, config).start()
    try:
        client = till.client()
        if unit is not None:
            wait_for(
                lambda: client.call("status.get")["control_unit"]["working"] is True,
                20,
                what="the control unit",
            )
        whole, pay = sale_latencies(client, sales)
        client.close()
    finally:
        till.stop()
    return whole, pay


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sales", type=int, default=300)
    parser.add_argument("--append", help="append this section to a Markdown file")
    args = parser.parse_args()
    plain_dir = Path(tempfile.mkdtemp(prefix="tilld-bench-"))
    unit_dir = Path(tempfile.mkdtemp(prefix="tilld-bench-"))
    unit = ControlUnitSim(unit_dir)
    try:
        plain, plain_pay = measure(plain_dir, args.sales, None)
        with_unit, unit_pay = measure(unit_dir, args.sales, unit)
    finally:
        unit.stop()
        shutil.rmtree(plain_dir, ignore_errors=True)
        shutil.rmtree(unit_dir, ignore_errors=True)
    floor = line_floor_s()
    rows = [
        ("cash sale, no control unit", ms(median(plain)), ms(percentile(plain, 99)), ""),
        ("  of which sale.pay", ms(median(plain_pay)), ms(percentile(plain_pay, 99)), ""),
        (
            "cash sale, control unit on a pty",
            ms(median(with_unit)),
            ms(percentile(with_unit, 99)),
            f"+{ms(median(with_unit) - median(plain))} p50",
        ),
        (
            "  of which sale.pay (commit + registration)",
            ms(median(unit_pay)),
            ms(percentile(unit_pay, 99)),
            f"{median(unit_pay) / median(plain_pay):.2f}x",
        ),
        ("9600 baud line time of RR + answer (floor)", ms(floor), "", "not on a pty"),
    ]
    intro = [
        "Produced by `make bench` (`.venv/bin/python tests/bench/controlunit_sale.py`):",
        f"{args.sales} durable cash sales (open, three `sale.add`, `sale.pay`) without a",
        "control unit, then as many with `tilld sim controlunit` on a pty; with the unit",
        "`sale.pay` answers once the receipt's control code is journaled. A pty has no",
        "baud rate: on a real 9600 8N1 line the frames' own time (last row) adds to it.",
    ]
    body = table(("figure", "p50", "p99", "vs without"), rows)
    append_section(args.append, section("Cash sale with the control unit", intro, body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
