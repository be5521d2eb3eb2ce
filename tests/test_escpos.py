"""ESC/POS: the bytes tilld sends, the status it reads, and the printer driver over real TCP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tty
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sims import PrinterSim
from test_scanner_pty import Recorder

from drivers.device import Backoff, DeviceState
from drivers.escpos import status
from drivers.escpos.document import Barcode, Columns, Cut, QrCode, Text
from drivers.escpos.interpret import Interpreter
from drivers.escpos.links import TcpLink
from drivers.escpos.printer import PrinterNotReady, PrintOutcome, ReceiptPrinter
from drivers.escpos.render import drawer_kick, render

ESC, GS = b"\x1b", b"\x1d"


def test_drawer_kick_is_esc_p_on_the_chosen_pin() -> None:
    # ESC p m t1 t2: m 0 = connector pin 2, m 1 = pin 5; t1/t2 the pulse in 2 ms units.
    assert drawer_kick(2) == ESC + b"p\x00" + bytes([50, 50])
    assert drawer_kick(5) == ESC + b"p\x01" + bytes([50, 50])


def test_swedish_letters_are_sent_in_code_page_858() -> None:
    data = render((Text("ÅÄÖ åäö"),))
    assert data.startswith(ESC + b"@" + ESC + b"t\x13")  # initialise, then ESC t 19 (CP858)
    assert "ÅÄÖ åäö".encode("cp858") in data
    assert b"\x8f\x8e\x99 \x86\x84\x94" in data


def test_qr_code_and_barcode_commands_are_present() -> None:
    data = render((QrCode("TK00000000DEMO1"), Barcode("TK00000000DEMO1"), Cut()))
    # GS ( k: store the QR data (fn 80) then print it (fn 81).
    stored = b"TK00000000DEMO1"
    length = len(stored) + 3
    assert GS + b"(k" + bytes([length, 0]) + b"1P0" + stored in data
    assert GS + b"(k\x03\x001Q0" in data
    # GS k 73 n: CODE128, code set B.
    assert GS + b"kI" + bytes([len(stored) + 2]) + b"{B" + stored in data
    assert GS + b"V" in data


def test_the_interpreter_reads_back_what_render_wrote() -> None:
    document = (
        Text("Demomuseet AB", align="center", bold=True, large=True),
        Columns("Ostsmörgås", "65,00"),
        QrCode("TK123"),
        Barcode("TK123"),
        Cut(),
    )
    interpreter = Interpreter()
    data = render(document, width=32)
    actions = []
    for i in range(0, len(data), 5):  # in small pieces, as TCP may deliver them
        actions += interpreter.feed(data[i : i + 5])
    cuts = [a for a in actions if a[0] == "cut"]
    assert len(cuts) == 1
    lines = [line for line in cuts[0][1] if line.strip()]
    assert lines == [
        "Demomuseet AB",
        "Ostsmörgås                 65,00",
        "[QR TK123]",
        "[BARCODE CODE128 TK123]",
    ]


@pytest.mark.parametrize(
    ("answers", "detail", "ready"),
    [
        ({1: 0x12, 2: 0x12, 3: 0x12, 4: 0x12}, "", True),
        ({1: 0x16, 2: 0x12, 3: 0x12, 4: 0x12}, "", True),  # drawer sensor only
        ({1: 0x12, 2: 0x12, 3: 0x12, 4: 0x1E}, "paper-low", True),
        ({1: 0x1A, 2: 0x32, 3: 0x12, 4: 0x72}, "paper-out", False),
        ({1: 0x1A, 2: 0x16, 3: 0x12, 4: 0x12}, "cover-open", False),
        ({1: 0x1A, 2: 0x52, 3: 0x52, 4: 0x12}, "printer-error", False),
    ],
)
def test_status_bytes_per_the_dle_eot_bit_tables(answers, detail, ready) -> None:
    parsed = status.parse(answers)
    assert (parsed.detail, parsed.ready) == (detail, ready)
    assert status.parse(status.encode(parsed)).detail == detail


def test_a_byte_that_is_not_a_status_byte_is_rejected() -> None:
    with pytest.raises(status.StatusByteError):
        status.parse({1: 0x41})  # 'A': print data echoed back, not a status


@given(st.lists(st.binary(max_size=64), max_size=30))
def test_random_bytes_never_crash_the_interpreter(chunks: list[bytes]) -> None:
    interpreter = Interpreter()
    for chunk in chunks:
        for action in interpreter.feed(chunk):
            assert action[0] in ("query", "cut", "kick", "init")
    interpreter.take_lines()


@given(st.dictionaries(st.sampled_from(status.QUERIES), st.integers(0, 255)))
def test_random_status_bytes_parse_or_are_rejected(answers: dict[int, int]) -> None:
    with contextlib.suppress(status.StatusByteError):
        status.parse(answers)


@pytest.fixture
def sim(short_tmp: Path):
    printer = PrinterSim(short_tmp)
    yield printer
    printer.stop()


def make_printer(sim: PrinterSim, recorder: Recorder) -> ReceiptPrinter:
    host, _, port = sim.address.rpartition(":")
    return ReceiptPrinter(
        "printer",
        recorder,
        TcpLink(host, int(port)),
        poll_interval_s=0.1,
        backoff=Backoff(first_s=0.05, cap_s=0.2),
    )


def test_the_driver_follows_paper_and_cover_state(sim: PrinterSim) -> None:
    async def run() -> None:
        recorder = Recorder()
        printer = make_printer(sim, recorder)
        await printer.open()
        try:
            await recorder.until(lambda: printer.status.state is DeviceState.OK)
            await asyncio.to_thread(sim.set_state, "paper-low")
            await recorder.until(lambda: printer.status.detail == "paper-low")
            assert printer.status.state is DeviceState.OK  # still prints
            await asyncio.to_thread(sim.set_state, "cover-open")
            await recorder.until(lambda: printer.status.detail == "cover-open")
            assert printer.status.state is DeviceState.ERROR
            with pytest.raises(PrinterNotReady):
                await printer.print_job(render((Text("never printed"), Cut())))
            await asyncio.to_thread(sim.set_state, "ok")
            await recorder.until(lambda: printer.status.state is DeviceState.OK)
            result = await printer.print_job(render((Text("after the lid"), Cut())))
            assert result.outcome is PrintOutcome.PRINTED
        finally:
            await printer.close()
        receipts = sim.receipts()
        assert [r["lines"] for r in receipts] == [["after the lid"]]

    asyncio.run(run())


def test_paper_out_during_a_job_is_reported_as_interrupted(sim: PrinterSim) -> None:
    async def run() -> None:
        recorder = Recorder()
        printer = make_printer(sim, recorder)
        await printer.open()
        try:
            await recorder.until(lambda: printer.status.state is DeviceState.OK)
            sim.paper_out_after(40)
            job = render((*tuple(Text(f"line {n}") for n in range(20)), Cut()))
            result = await printer.print_job(job)
            assert (result.outcome, result.detail) == (PrintOutcome.INTERRUPTED, "paper-out")
            assert printer.status.detail == "paper-out"
        finally:
            await printer.close()
        assert [r["partial"] for r in sim.receipts()] == [True]

    asyncio.run(run())


def test_a_pulled_printer_goes_offline_and_comes_back_by_itself(sim: PrinterSim) -> None:
    async def run() -> None:
        recorder = Recorder()
        printer = make_printer(sim, recorder)
        await printer.open()
        try:
            await recorder.until(lambda: printer.status.state is DeviceState.OK)
            await asyncio.to_thread(sim.pull)
            await recorder.until(lambda: printer.status.state is DeviceState.OFFLINE)
            await asyncio.to_thread(sim.plug)
            await recorder.until(lambda: printer.status.state is DeviceState.OK)
            await printer.kick_drawer(2)
        finally:
            await printer.close()
        assert sim.state()["drawer_kicks"] == 1

    asyncio.run(run())


def test_typography_outside_the_code_page_prints_plain() -> None:
    data = render((Text("Entré barn 7–17 år “fri”"),))
    assert 'Entré barn 7-17 år "fri"'.encode("cp858") in data


def test_a_serial_printer_on_a_real_pty_prints_and_answers_status(tmp_path: Path) -> None:
    from drivers.escpos.links import SerialLink
    from drivers.sim.printer import PrinterSim as PrinterModel

    master, slave = os.openpty()
    tty.setraw(slave)
    model = PrinterModel(tmp_path)
    interpreter = Interpreter()

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def printer_side() -> None:
            # The far end of the cable: the same printer model the TCP simulator uses.
            answer = model.feed(interpreter, os.read(master, 4096))
            if answer:
                os.write(master, answer)

        loop.add_reader(master, printer_side)
        recorder = Recorder()
        printer = ReceiptPrinter(
            "printer",
            recorder,
            SerialLink(os.ttyname(slave), 19200),
            poll_interval_s=0.1,
            backoff=Backoff(first_s=0.05, cap_s=0.2),
        )
        await printer.open()
        try:
            await recorder.until(lambda: printer.status.state is DeviceState.OK)
            result = await printer.print_job(render((Text("Kvitto över serieporten"), Cut())))
            assert result.outcome is PrintOutcome.PRINTED
            model.state = "paper-out"
            await recorder.until(lambda: printer.status.detail == "paper-out")
        finally:
            await printer.close()
            loop.remove_reader(master)

    try:
        asyncio.run(run())
    finally:
        os.close(master)
        os.close(slave)
    assert [r.lines for r in model.receipts] == [["Kvitto över serieporten"]]
    assert model.queries >= 8  # status read before and after the job, and polled


def test_a_usb_printer_that_is_not_there_is_offline_with_a_reason() -> None:
    from drivers.escpos.links import UsbLink

    async def run() -> None:
        recorder = Recorder()
        printer = ReceiptPrinter(
            "printer", recorder, UsbLink(0x04B8, 0x0E15), backoff=Backoff(0.05, 0.1)
        )
        await printer.open()
        try:
            await recorder.until(lambda: printer.status.detail not in ("", "not opened"))
            assert printer.status.state is DeviceState.OFFLINE
            # No USB printer here: libusb is either missing or finds none; both say so.
            assert "04b8:0e15" in printer.status.detail or "libusb" in printer.status.detail
        finally:
            await printer.close()

    asyncio.run(run())


PROFILES_IMPORT = """
import json, os, sys
from pathlib import Path
from drivers.escpos import profiles
profiles.cache(Path(sys.argv[1]))
profiles.import_escpos_printer()
import escpos.capabilities as c
count = len(c.CAPABILITIES["profiles"])
print(json.dumps({"dir": c.pickle_dir, "parsed": c.full_load, "profiles": count,
                  "left_in_environment": os.environ.get("ESCPOS_CAPABILITIES_PICKLE_DIR")}))
"""


def _import_profiles(cache: Path, tmp_root: Path) -> dict:
    env = {**os.environ, "TMPDIR": str(tmp_root)}
    env.pop("ESCPOS_CAPABILITIES_PICKLE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", PROFILES_IMPORT, str(cache)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout)


def test_python_escpos_reads_its_profiles_from_tilld_s_cache_and_writes_nothing_to_tmp(
    tmp_path: Path,
) -> None:
    # Without the cache python-escpos parsed its YAML on every import and wrote
    # the result as a pickle into a new directory in $TMPDIR each time.
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    cache = tmp_path / "state" / "cache"
    first = _import_profiles(cache, tmp_root)
    pickle_file = next(cache.iterdir())
    written = pickle_file.stat().st_mtime_ns
    second = _import_profiles(cache, tmp_root)
    assert (
        first
        == second
        == {
            "dir": str(cache),
            "parsed": False,
            "profiles": first["profiles"],
            "left_in_environment": None,  # a child process must not inherit a folder
        }
    )
    assert first["profiles"] > 10
    assert pickle_file.stat().st_mtime_ns == written  # the second start only read it
    # python-escpos still makes an empty directory (it evaluates mkdtemp() as
    # the default even when the variable is set), but writes nothing into it.
    assert [p for p in tmp_root.rglob("*") if not p.is_dir()] == []
    assert cache.stat().st_mode & 0o077 == 0  # a pickle is code: only tilld may write it


def test_a_truncated_profile_cache_is_written_again(tmp_path: Path) -> None:
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    cache = tmp_path / "cache"
    expected = _import_profiles(cache, tmp_root)
    pickle_file = next(cache.iterdir())
    pickle_file.write_bytes(b"")  # as a power cut could leave a file never synced
    assert _import_profiles(cache, tmp_root) == expected
    assert pickle_file.stat().st_size > 0


def test_a_profile_folder_inherited_from_the_environment_that_is_gone_does_not_break_receipts(
    tmp_path: Path,
) -> None:
    # A daemon started by a process that had imported python-escpos with its
    # own cache folder once inherited that folder's name, and every receipt
    # then failed to render once the folder was gone.
    tmp_root = tmp_path / "tmp"
    tmp_root.mkdir()
    env = {**os.environ, "ESCPOS_CAPABILITIES_PICKLE_DIR": str(tmp_path / "gone")}
    done = subprocess.run(
        [sys.executable, "-c", RENDER_WITH_CACHE, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        env={**env, "TMPDIR": str(tmp_root)},
    )
    assert done.returncode == 0, done.stderr
    assert "ÅÄÖ".encode("cp858").hex() in done.stdout


RENDER_WITH_CACHE = """
import sys
from pathlib import Path
from drivers.escpos import profiles
from drivers.escpos.document import Text
from drivers.escpos.render import render
profiles.cache(Path(sys.argv[1]))
print(render((Text("ÅÄÖ"),)).hex())
"""


def test_a_profile_cache_removed_before_the_first_receipt_does_not_break_it(
    tmp_path: Path,
) -> None:
    # An in-process till's state folder (and its cache) goes with its test;
    # a later render in the same process must not look for it.
    script = RENDER_WITH_CACHE.replace(
        "print(render(", "import shutil; shutil.rmtree(sys.argv[1]); print(render("
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert "ÅÄÖ".encode("cp858").hex() in done.stdout
