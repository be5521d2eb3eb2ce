"""The D-Bus API on a real private dbus-daemon enforcing systemd/org.tilld.Till1.conf.

The daemon is a real subprocess owning org.tilld.Till1 on a system-type bus
whose configuration is the system bus's default policy plus an <include> of
the shipped policy file; the client is dbus-fast in the test process (root).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import REPO, TillProcess
from dbus_fast import Variant
from dbussims import Bus, Client, DBusCallError, options, wait_for_name
from sims import Backend, PrinterSim, Proxy, online_config, wait_for

from tilld.api.dbus_names import BUS_NAME, INTERFACE, OBJECT_PATH
from tilld.cli.dbus_xml import documents

TICKET_CODE = "TK00000000DEMO1"  # matches the demo catalog's ticket code pattern


@pytest.fixture
def bus(short_tmp):
    b = Bus(short_tmp)
    yield b
    b.stop()


@pytest.fixture
def till(short_tmp, bus):
    process = TillProcess(short_tmp, {"api": {"dbus": bus.address}}).start()
    yield process
    process.kill()


@pytest.fixture
def dbus(bus, till):
    client = Client(bus.address)
    wait_for_name(client)
    yield client
    client.close()


def test_a_full_sale_over_dbus(dbus):
    sale_id = dbus.call("SaleOpen")["sale_id"]
    added = dbus.call("SaleAdd", "sa{sv}", sale_id, options(plu="300", quantity=2))
    assert added["line_id"] == 1 and added["sale"]["total"] == 7000
    paid = dbus.call("SalePay", "ssx", sale_id, "cash", 10000)
    assert (paid["status"], paid["change"], paid["receipt_no"]) == ("completed", 3000, 1)
    receipt = dbus.call("SaleGet", "s", sale_id)
    assert receipt["state"] == "completed" and receipt["receipt_no"] == 1
    assert receipt["lines"][0]["name"] == "Kaffe" and receipt["payments"][0]["method"] == "cash"
    signal = dbus.wait_signal("SaleCompleted", lambda body: body[0] == sale_id)
    assert signal[1]["receipt_no"] == 1 and signal[1]["total"] == 7000
    dbus.wait_property("PendingEntries", 1)
    assert dbus.properties()["PendingEntries"] == 1


def test_refusals_are_named_errors_with_plain_words(dbus):
    sale_id = dbus.call("SaleOpen")["sale_id"]
    dbus.call("SaleAdd", "sa{sv}", sale_id, options(plu="300"))
    with pytest.raises(DBusCallError) as refused:
        dbus.call("SalePay", "ssxa{sv}", sale_id, "swish", 3500, {})
    assert refused.value.name == "org.tilld.Till1.Error.MethodUnavailableOffline"
    assert "unreachable" in refused.value.text and "Take cash" in refused.value.text


def test_invalid_params_are_invalid_args_with_the_models_words(dbus):
    sale_id = dbus.call("SaleOpen")["sale_id"]
    with pytest.raises(DBusCallError) as negative:
        dbus.call("SalePay", "ssx", sale_id, "cash", -1)
    assert negative.value.name == "org.freedesktop.DBus.Error.InvalidArgs"
    assert "amount: must be an integer from 0 to 100000000" in negative.value.text
    with pytest.raises(DBusCallError) as wrong_type:
        dbus.call("SaleAdd", "sa{sv}", sale_id, options(plu="300", quantity="2"))
    assert "quantity: Input should be a valid integer" in wrong_type.value.text
    with pytest.raises(DBusCallError) as signature:
        dbus.call("SalePay", "ss", sale_id, "cash")
    assert signature.value.name == "org.freedesktop.DBus.Error.InvalidArgs"
    assert "SalePay takes (s sale_id, s method, x amount, a{sv} options)" in signature.value.text


def test_properties_are_read_only_and_unknown_methods_are_named(dbus):
    with pytest.raises(DBusCallError) as read_only:
        dbus.raw_call(
            "Set",
            "ssv",
            [INTERFACE, "Mode", options(m="online")["m"]],
            "org.freedesktop.DBus.Properties",
        )
    assert read_only.value.name == "org.freedesktop.DBus.Error.PropertyReadOnly"
    with pytest.raises(DBusCallError) as unknown:
        dbus.call("EventsSubscribe")
    assert unknown.value.name == "org.freedesktop.DBus.Error.UnknownMethod"


def test_introspection_xml_in_docs_matches_the_running_service(dbus):
    served = documents(dbus.introspect())
    stale = [
        name
        for name, text in served.items()
        if not (REPO / "docs" / "dbus" / name).exists()
        or (REPO / "docs" / "dbus" / name).read_text(encoding="utf-8") != text
    ]
    assert not stale, f"docs/dbus/{stale} differ from the running service; run make dbus-xml"


@pytest.fixture
def site(short_tmp, bus):
    backend = Backend(short_tmp)
    server = Proxy(short_tmp, "server", backend.address)
    internet = Proxy(short_tmp, "internet", None)
    config = online_config(backend, server, internet)
    config["api"] = {"dbus": bus.address}
    till = TillProcess(short_tmp, config).start()
    client = Client(bus.address)
    wait_for_name(client)
    yield till, server, client
    client.close()
    till.kill()
    for p in (internet, server, backend):
        p.stop()


def test_mode_and_scan_signals_follow_the_back_end_going_down(site):
    _till, server, dbus = site
    wait_for(lambda: dbus.properties()["Mode"] == "online", what="mode online")
    # The start's own mode changes (no-internet, server-unreachable, online) may
    # still be queued here; only what follows the refusal counts.
    assert dbus.forget_signals()["Mode"] == "online"
    server.set_mode("refuse")
    assert dbus.wait_signal("ModeChanged") == ["server-unreachable"]
    dbus.wait_property("Mode", "server-unreachable")
    assert dbus.properties()["ServerReachable"] is False

    result = dbus.call("ScanSubmit", "s", TICKET_CODE)
    assert (result["kind"], result["status"]) == ("ticket", "captured")
    _code, scanned = dbus.wait_signal("Scanned", lambda body: body[0] == TICKET_CODE)
    assert scanned["status"] == "captured" and scanned["scan_id"] == result["scan_id"]
    dbus.wait_property("PendingEntries", 1)

    server.set_mode("pass")
    assert dbus.wait_signal("ModeChanged") == ["online"]
    # Sync delivers the scan: the pending count falls back to zero, signalled.
    dbus.wait_property("PendingEntries", 0)
    assert dbus.wait_signal("SyncProgress", lambda body: body == [0]) == [0]


def test_the_till_sells_when_the_bus_refuses_its_name(short_tmp):
    # The same bus without the shipped policy: nobody may own org.tilld.Till1.
    bus = Bus(short_tmp, policy=None)
    till = TillProcess(short_tmp, {"api": {"dbus": bus.address}}).start()
    try:
        client = till.client()
        sale_id = client.call("sale.open")["sale_id"]
        client.call("sale.add", sale_id=sale_id, plu="300")
        assert client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)["status"] == (
            "completed"
        )
        client.close()
        # D-Bus is set up beside the socket API, not before it: its refusal is
        # logged when the bus answers, which on a busy machine may be after the sale.
        wait_for(lambda: "the socket API keeps serving" in till.log(), what="the refusal logged")
        log = till.log()
        assert "refused org.tilld.Till1" in log and "AccessDenied" in log
    finally:
        till.kill()
        bus.stop()


def test_the_till_comes_back_on_a_restarted_bus_and_sells_meanwhile(short_tmp):
    bus = Bus(short_tmp)
    till = TillProcess(short_tmp, {"api": {"dbus": bus.address}}).start()
    try:
        client = Client(bus.address)
        wait_for_name(client)
        client.close()
        bus.stop()  # the system bus restarted (dbus-broker can be), or crashed
        socket_api = till.client()
        sale_id = socket_api.call("sale.open")["sale_id"]
        socket_api.call("sale.add", sale_id=sale_id, plu="300")
        paid = socket_api.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
        assert paid["status"] == "completed"
        wait_for(lambda: "lost the D-Bus connection" in till.log(), 10, what="loss noticed")
        bus.socket_path.unlink(missing_ok=True)
        bus = Bus(short_tmp)  # the same address, a new daemon
        client = Client(bus.address)
        wait_for_name(client, timeout=40)
        assert client.call("SaleGet", "s", sale_id)["receipt_no"] == paid["receipt_no"]
        assert client.properties()["PendingEntries"] == 1
        client.close()
        socket_api.close()
    finally:
        till.kill()
        bus.stop()


def test_the_till_starts_without_any_bus(short_tmp):
    till = TillProcess(short_tmp, {"api": {"dbus": f"unix:path={short_tmp}/no-bus"}}).start()
    try:
        client = till.client()
        assert client.call("status.get")["till_id"] == "till-test"
        client.close()
        assert "cannot connect to the bus at unix:path=" in till.log()
    finally:
        till.kill()


def test_the_demo_serves_dbus_on_a_private_bus(short_tmp):
    demo = subprocess.Popen(
        [sys.executable, "-m", "tilld.cli.daemon", "demo", "--state-dir", str(short_tmp / "d")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    try:
        announced = {}
        while "dbus" not in announced:
            line = demo.stdout.readline()
            assert line, "the demo exited before announcing dbus="
            key, _, value = line.strip().partition("=")
            announced[key] = value
        assert announced["dbus"].startswith(f"unix:path={short_tmp / 'd' / 'dbus.sock'}")
        shown = subprocess.run(
            ["busctl", f"--address={announced['dbus']}", "introspect", BUS_NAME, OBJECT_PATH],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        assert INTERFACE in shown.stdout and ".SaleOpen" in shown.stdout
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(30)
        demo.stdout.close()


@pytest.mark.parametrize("document", ["org.tilld.Till1.xml", "org.tilld.Till1.Till.xml"])
def test_gdbus_codegen_accepts_the_shipped_xml(document, tmp_path):
    codegen = shutil.which("gdbus-codegen")
    assert codegen, "gdbus-codegen is missing: make system-deps installs libglib2.0-dev-bin"
    made = subprocess.run(
        [
            codegen,
            "--interface-prefix",
            "org.tilld.Till1.",
            "--c-namespace",
            "Tilld",
            "--generate-c-code",
            str(tmp_path / "tilld-generated"),
            str(REPO / "docs" / "dbus" / document),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    header = (tmp_path / "tilld-generated.h").read_text()
    # A generated binding has the calls a screen needs, typed.
    assert "tilld_till_call_sale_pay" in header and "tilld_till_call_last_refusal" in header
    assert "tilld_till_get_pending_scans" in header


def _dummy(signature: str) -> Variant:
    values = {"s": "1", "x": 1, "b": False, "aa{sv}": [], "as": [], "a{sv}": {}}
    return Variant(signature, values[signature])


def test_every_option_in_the_xml_is_a_key_the_daemon_takes(dbus):
    # From the shipped XML, not from the code that wrote it: a key the XML
    # names but the daemon refuses (`as_copy` for `copy`) fails here.
    root = ET.fromstring((REPO / "docs" / "dbus" / "org.tilld.Till1.Till.xml").read_text())
    checked = 0
    for method in root.iter("method"):
        args = [a for a in method.findall("arg") if a.get("direction") == "in"]
        for arg in args:
            note = arg.find("annotation[@name='org.tilld.Till1.Options']")
            if note is None:
                continue
            for item in note.get("value").split(", "):
                key, signature = item.split(": ")
                required = [_dummy(a.get("type")) for a in args if a is not arg]
                body = [v.value for v in required] + [{key: _dummy(signature)}]
                sig = "".join(a.get("type") for a in args)
                try:
                    dbus.call(method.get("name"), sig, *body)
                except DBusCallError as refused:
                    assert f"options.{key}: unknown parameter" not in refused.text, refused.text
                    assert f"{key}: Input should be a valid" not in refused.text, refused.text
                checked += 1
    assert checked >= 10


def test_last_refusal_gives_the_details_the_socket_gives_in_data(bus, dbus):
    assert dbus.call("LastRefusal") == {}  # nothing refused on this connection yet
    sale_id = dbus.call("SaleOpen")["sale_id"]
    dbus.call("SaleAdd", "sa{sv}", sale_id, options(plu="300"))
    with pytest.raises(DBusCallError) as over:
        dbus.call("SalePay", "ssx", sale_id, "swish-manual", 5000)
    last = dbus.call("LastRefusal")
    assert last["reason"] == "amount-exceeds-due" == over.value.reason
    assert last["due"] == 3500 and last["message"] == over.value.text
    assert (last["method"], last["error"]) == ("SalePay", over.value.name)
    with pytest.raises(DBusCallError):
        dbus.call("SalePay", "ssx", sale_id, "cash", -1)
    invalid = dbus.call("LastRefusal")
    assert invalid["errors"] == ["amount: must be an integer from 0 to 100000000"]
    # Another connection has its own: it never reads this one's.
    other = Client(bus.address)
    try:
        assert other.call("LastRefusal") == {}
    finally:
        other.close()


def test_printing_calls_answer_at_once_while_the_printer_hangs(short_tmp):
    """ReceiptPrint and AdminReport wait on the paper over the socket; over D-Bus
    they answer at once and end as job signals. The printer's process is frozen
    (SIGSTOP): it takes the bytes and never answers. A call that waited would
    be logged as slow, which fails the test when the till stops (conftest.py)."""
    bus = Bus(short_tmp)
    printer = PrinterSim(short_tmp)
    printer_config = {"kind": "network", "address": printer.address, "status_interval_s": 0.2}
    till = TillProcess(
        short_tmp, {"api": {"dbus": bus.address}, "devices.printer": printer_config}
    ).start()
    dbus = Client(bus.address)
    try:
        wait_for_name(dbus)
        wait_for(
            lambda: dbus.call("StatusGet")["devices"]["printer"]["state"] == "ok",
            20,
            what="the printer",
        )
        sale_id = dbus.call("SaleOpen")["sale_id"]
        dbus.call("SaleAdd", "sa{sv}", sale_id, {"plu": Variant("s", "300")})
        receipt_no = dbus.call("SalePay", "ssx", sale_id, "cash", 5000)["receipt_no"]
        dbus.wait_signal("DevicePrinted", lambda b: b[0]["receipt_no"] == receipt_no)
        os.kill(printer.proc.pid, signal.SIGSTOP)
        try:
            report = dbus.call("AdminReport", "s", "x")
            copy = dbus.call(
                "ReceiptPrint",
                "a{sv}",
                {"receipt_no": Variant("x", receipt_no), "copy": Variant("b", True)},
            )
        finally:
            os.kill(printer.proc.pid, signal.SIGCONT)
        for answer, operation in ((report, "admin.report"), (copy, "receipt.print")):
            if answer.get("status") == "running":  # the paper took longer than the answer
                assert answer["operation"] == operation
                dbus.wait_signal(
                    "JobFinished", lambda b, a=answer: b[0]["job_id"] == a["job_id"], timeout=30
                )
        assert report.get("status") == "running" or report["kind"] == "x"
    finally:
        dbus.close()
        till.stop()
        for sim in (printer, bus):
            sim.stop()


def test_a_scan_is_signalled_before_the_properties_it_changes_and_the_last_value_is_sent(site):
    """The properties are told once per turn of the daemon's loop, after that
    turn's signals: a gate's `Scanned` never waits behind a status rebuild, and
    however many changes come at once, the last value is the one sent."""
    till, server, dbus = site
    server.set_mode("refuse")
    dbus.wait_property("Mode", "server-unreachable")
    dbus.forget_signals()
    dbus.call("ScanSubmit", "s", TICKET_CODE)
    order = []
    while True:
        member, body = dbus.signals.get(timeout=20)
        order.append(member)
        if member == "PropertiesChanged" and body[1].get("PendingEntries") == 1:
            break
    assert "Scanned" in order and order.index("Scanned") < len(order) - 1, order

    # Twenty scans in one line: many changes, and PendingEntries ends at their count.
    client = till.client()
    codes = [f"TK{n:08d}BURST" for n in range(20)]
    requests = [
        {"jsonrpc": "2.0", "id": n, "method": "scan.submit", "params": {"code": code}}
        for n, code in enumerate(codes)
    ]
    client.send_raw(json.dumps(requests).encode() + b"\n")
    assert len(client.read()) == 20
    client.close()
    dbus.wait_property("PendingEntries", 21)
    assert dbus.properties()["PendingEntries"] == 21
