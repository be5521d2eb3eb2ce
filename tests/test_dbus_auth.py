"""Who may call over D-Bus: the shipped bus policy first, then the daemon's per-method roles.

The bus is a real dbus-daemon whose configuration <include>s
systemd/org.tilld.Till1.conf unchanged, so the groups it names must exist:
the fixture creates tilld-cashier and tilld-tech when missing (as the
sysusers file does on a till) and removes what it created. Clients are
dbus-send (and, for the socket, a stdlib Python client) started as uid 65534
with the groups under test, so the kernel and the bus, not the client, say
who is calling.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import queue
import subprocess
import threading
import time

import pytest
from conftest import TillProcess
from dbussims import Bus, Client, ensure_role_groups, remove_groups, wait_for_name
from test_peercred import CLIENT, NOBODY, python_for_others  # noqa: F401 - a fixture

from tilld.api.dbus_names import BUS_NAME, INTERFACE, OBJECT_PATH, SOCKET_ONLY, method_name
from tilld.api.operations import OPERATIONS
from tilld.api.roles import Role

NO_ROLE_GROUP = 1  # "daemon"


@pytest.fixture(scope="module")
def role_groups():
    if os.geteuid() != 0:
        pytest.skip("needs root to run clients as other users and to create the role groups")
    created = ensure_role_groups()
    yield {name: grp.getgrnam(name).gr_gid for name in ("tilld-cashier", "tilld-tech")}
    remove_groups(created)


@pytest.fixture
def served(short_tmp, role_groups):
    bus = Bus(short_tmp)
    till = TillProcess(short_tmp, {"api": {"dbus": bus.address}}).start()
    client = Client(bus.address)
    wait_for_name(client)
    client.close()
    yield bus, till
    till.kill()
    bus.stop()


def dbus_send(bus: Bus, member: str, *args: str, groups: list[int]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            "dbus-send",
            f"--bus={bus.address}",
            "--print-reply",
            f"--dest={BUS_NAME}",
            OBJECT_PATH,
            f"{INTERFACE}.{member}",
            *args,
        ],
        capture_output=True,
        text=True,
        user=NOBODY,
        group=groups[0],
        extra_groups=groups[1:],
        cwd="/",
        timeout=30,
    )


def test_a_uid_in_no_role_group_is_stopped_by_the_bus(served):
    bus, _till = served
    denied = dbus_send(bus, "StatusGet", groups=[NO_ROLE_GROUP])
    assert denied.returncode != 0
    assert "org.freedesktop.DBus.Error.AccessDenied" in denied.stderr
    # The bus's own words: the daemon never saw the call.
    assert "Rejected send message" in denied.stderr and "uid=65534" in denied.stderr


def test_a_cashier_may_sell_but_the_daemon_refuses_admin_methods(served, role_groups):
    bus, _till = served
    cashier = [NO_ROLE_GROUP, role_groups["tilld-cashier"]]
    status = dbus_send(bus, "StatusGet", groups=cashier)
    assert status.returncode == 0, status.stderr
    assert '"till_id"' in status.stdout and '"till-test"' in status.stdout
    admin = dbus_send(bus, "AdminJournalVerify", groups=cashier)
    assert admin.returncode != 0
    assert "org.freedesktop.DBus.Error.AccessDenied" in admin.stderr
    # The daemon's words this time: the bus let the cashier through.
    # In D-Bus words: the method a D-Bus client called, not the JSON-RPC name.
    assert "uid 65534" in admin.stderr and "may not call AdminJournalVerify" in admin.stderr
    assert "Rejected send message" not in admin.stderr


def test_a_technician_may_administer(served, role_groups):
    bus, _till = served
    tech = [NO_ROLE_GROUP, role_groups["tilld-tech"]]
    verify = dbus_send(bus, "AdminJournalVerify", groups=tech)
    assert verify.returncode == 0, verify.stderr
    assert '"ok"' in verify.stdout and "boolean true" in verify.stdout


def test_roles_are_the_same_on_both_apis_for_every_operation(
    served,
    role_groups,
    python_for_others,  # noqa: F811 - the fixture imported above
):
    bus, till = served
    cashier = [NO_ROLE_GROUP, role_groups["tilld-cashier"]]
    ops = [op for op in OPERATIONS if op.name not in SOCKET_ONLY]
    calls = [(op.name, {}) for op in ops]
    socket = subprocess.run(
        [python_for_others, "-I", "-c", CLIENT, str(till.socket_path), json.dumps(calls)],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
        user=NOBODY,
        group=cashier[0],
        extra_groups=cashier[1:],
    )
    assert socket.returncode == 0, socket.stderr
    replies = json.loads(socket.stdout)["replies"]
    for op, reply in zip(ops, replies, strict=True):
        socket_forbidden = reply.get("error", {}).get("code") == -32001
        sent = dbus_send(bus, method_name(op.name), groups=cashier)
        dbus_forbidden = "may not call" in sent.stderr
        if dbus_forbidden:
            assert "org.freedesktop.DBus.Error.AccessDenied" in sent.stderr
        assert socket_forbidden == dbus_forbidden == (op.role > Role.CASHIER), (op.name, sent)


def _monitor(bus: Bus, groups: list[int]) -> subprocess.Popen:
    """gdbus watching tilld's object, run as uid 65534 with ``groups``."""
    return subprocess.Popen(
        ["gdbus", "monitor", f"--address={bus.address}", f"--dest={BUS_NAME}", "-o", OBJECT_PATH],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        user=NOBODY,
        group=groups[0],
        extra_groups=groups[1:],
        cwd="/",
    )


def _stop(monitor: subprocess.Popen) -> str:
    monitor.terminate()
    out, _ = monitor.communicate(timeout=30)
    return out


def test_only_the_tills_users_receive_its_signals(served, role_groups):
    bus, till = served
    stranger = _monitor(bus, [NO_ROLE_GROUP])
    cashier = _monitor(bus, [NO_ROLE_GROUP, role_groups["tilld-cashier"]])
    # Each monitor prints a line once it watches; its match rules are then in place.
    for monitor in (stranger, cashier):
        assert monitor.stdout.readline().startswith("Monitoring")
    # gdbus prints "Monitoring" as it asks the bus for its match rules, not
    # once the bus has them: under load the first sale's signals can come
    # before. So the till sells again until the cashier's screen hears one,
    # and every sale it sold is then looked for in what the stranger heard.
    heard_by_cashier: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [heard_by_cashier.put(line) for line in cashier.stdout], daemon=True
    ).start()
    client = till.client()
    sold: list[str] = []
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while not any("SaleCompleted" in line for line in seen):
        assert time.monotonic() < deadline, f"the cashier heard no SaleCompleted: {seen}"
        sale_id = client.call("sale.open")["sale_id"]
        client.call("sale.add", sale_id=sale_id, plu="300")
        client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
        sold.append(sale_id)
        with contextlib.suppress(queue.Empty):
            while True:
                seen.append(heard_by_cashier.get(timeout=3))
                if "SaleCompleted" in seen[-1]:
                    break
    client.close()
    # The bus keeps one sender's messages in order, so when the cashier has
    # SaleCompleted the stranger would have it too.
    assert any(sale_id in line for line in seen for sale_id in sold)
    _stop(cashier)
    heard = _stop(stranger)
    assert "SaleCompleted" not in heard and "SaleOpened" not in heard
    assert not any(sale_id in heard for sale_id in sold)
