"""The daemon speaks sd_notify to a real AF_UNIX datagram socket owned by the test.

Nothing of tilld is used on the receiving side: the socket is bound here,
handed to the daemon in NOTIFY_SOCKET exactly as systemd does, and every
datagram is read back in the order the kernel delivered it.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Client, RpcError, TillProcess

from tilld.sdnotify import Notifier, watchdog_interval

WATCHDOG_USEC = 400_000  # pings every 0.2 s: quick to observe, slow enough for 2 shared cores
BLOCKED_STATUS = "STATUS=event loop blocked by a test hook"


@dataclass
class Datagram:
    at: float
    fields: list[str]

    def has(self, field: str) -> bool:
        return field in self.fields

    def value(self, key: str) -> str | None:
        for field in self.fields:
            if field.startswith(key + "="):
                return field[len(key) + 1 :]
        return None


class NotifySocket:
    """What systemd would hold: the receiving end of NOTIFY_SOCKET."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.seen: list[Datagram] = []

    def receive(self, timeout: float) -> Datagram | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        datagram = Datagram(time.monotonic(), data.decode().split("\n"))
        self.seen.append(datagram)
        return datagram

    def wait_for(self, field: str, timeout: float = 20) -> Datagram:
        """The next datagram carrying ``field`` (KEY=value, or KEY= for any value)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            datagram = self.receive(left)
            if datagram is None:
                break
            if any(
                f == field or (field.endswith("=") and f.startswith(field)) for f in datagram.fields
            ):
                return datagram
        raise AssertionError(
            f"no {field!r} within {timeout} s; got {[d.fields for d in self.seen]}"
        )

    def collect(self, seconds: float) -> list[Datagram]:
        """Everything that arrives in the next ``seconds``."""
        got, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            datagram = self.receive(left)
            if datagram is not None:
                got.append(datagram)
        return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(short_tmp):
    listener = NotifySocket(str(short_tmp / "notify.sock"))
    yield listener
    listener.close()


def start(short_tmp: Path, notify: NotifySocket, **extra_env: str) -> TillProcess:
    till = TillProcess(short_tmp)
    address = notify.sock.getsockname()
    if isinstance(address, bytes):  # abstract: systemd writes these with a leading '@'
        address = "@" + address[1:].decode()
    return till.start(wait=False, env={"NOTIFY_SOCKET": address, **extra_env})


def count(datagrams: list[Datagram], field: str) -> int:
    return sum(d.has(field) for d in datagrams)


def test_ready_comes_when_the_socket_answers_then_status_follows_sales(short_tmp, notify):
    till = start(short_tmp, notify)
    try:
        notify.wait_for("READY=1")
        # No retry: at READY=1 the API must already answer.
        client = Client(till.socket_path, timeout=10)
        assert client.call("status.get")["till_id"] == "till-test"
        first = notify.wait_for("STATUS=")
        assert first.value("STATUS").startswith("selling; mode "), first.fields
        assert "pending 0 entries" in first.value("STATUS")

        sale_id = client.call("sale.open")["sale_id"]
        client.call("sale.add", sale_id=sale_id, plu="300")
        client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
        changed = notify.wait_for("STATUS=")
        assert "pending 1 entries" in changed.value("STATUS"), changed.fields
        client.close()

        till.proc.send_signal(signal.SIGTERM)
        stopping = notify.wait_for("STOPPING=1")
        assert stopping.value("STATUS").startswith("stopping, no new sales"), stopping.fields
        assert till.proc.wait(15) == 0
    finally:
        till.kill()
    statuses = [d.value("STATUS") for d in notify.seen if d.value("STATUS")]
    # Sent on change only: never the same text twice in a row.
    assert all(a != b for a, b in itertools.pairwise(statuses)), statuses
    assert statuses[-1].startswith("stopping"), statuses
    assert count(notify.seen, "WATCHDOG=1") == 0  # no WATCHDOG_USEC, no pings


def test_watchdog_pings_at_half_the_interval_and_not_for_another_pid(short_tmp, notify):
    till = start(short_tmp, notify, WATCHDOG_USEC=str(WATCHDOG_USEC))
    try:
        notify.wait_for("READY=1")
        window = notify.collect(2.0)
        # Half of 0.4 s over 2 s is 10 pings; the bounds only catch "none",
        # "at the full interval or slower" and "flooding".
        assert 6 <= count(window, "WATCHDOG=1") <= 20, [d.fields for d in window]
    finally:
        till.stop()

    other = TillProcess(short_tmp)
    other.start(
        wait=False,
        env={
            "NOTIFY_SOCKET": notify.sock.getsockname(),
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "WATCHDOG_PID": "1",  # meant for another process: this one must not ping
        },
    )
    try:
        notify.seen.clear()
        notify.wait_for("READY=1")
        assert count(notify.collect(1.0), "WATCHDOG=1") == 0
    finally:
        other.stop()


def test_a_blocked_event_loop_stops_the_pings_and_sighups_merge_into_one_reload(short_tmp, notify):
    till = start(short_tmp, notify, WATCHDOG_USEC=str(WATCHDOG_USEC), TILLD_TEST_HOOKS="1")
    try:
        notify.wait_for("READY=1")
        notify.wait_for("WATCHDOG=1")
        till.proc.send_signal(signal.SIGUSR2)
        notify.wait_for(BLOCKED_STATUS)
        # Ordered on one socket: after the marker, the loop is wedged.
        for _ in range(3):
            till.proc.send_signal(signal.SIGHUP)
            notify.collect(0.1)  # let each signal be delivered on its own
        blocked = notify.collect(1.5)  # more than 7 ping intervals
        assert count(blocked, "WATCHDOG=1") == 0, [d.fields for d in blocked]
        assert count(blocked, "RELOADING=1") == 0  # a wedged loop reloads nothing either

        (till.state_dir / "unblock-loop").touch()
        notify.wait_for("WATCHDOG=1")
        reloading = notify.wait_for("RELOADING=1")
        assert int(reloading.value("MONOTONIC_USEC")) > 0
        notify.wait_for("READY=1")
        after = notify.collect(1.0)
        assert count(after, "RELOADING=1") == 0, "three SIGHUPs made more than one reload"
        assert count(after, "WATCHDOG=1") >= 2
    finally:
        till.stop()
    assert "TILLD_TEST_HOOKS=1" in till.log()


def test_the_notifier_reaches_an_abstract_socket_and_is_silent_without_one():
    name = f"tilld-test-{os.getpid()}"
    listener = NotifySocket(b"\0" + name.encode())
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert listener.wait_for("READY=1", timeout=5).fields == ["READY=1"]
        notifier.close()
    finally:
        listener.close()
    silent = Notifier.from_environment({})
    assert not silent.enabled and not silent.ready() and not silent.watchdog()


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only():
    me = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None


def test_sighup_reload_applies_live_keys_keeps_restart_only_ones_and_survives_a_bad_file(
    short_tmp, notify
):
    till = start(short_tmp, notify)
    try:
        notify.wait_for("READY=1")
        client = Client(till.socket_path, timeout=10)
        assert client.call("status.get")["offline_card"]["limit"] == 250
        original = till.config_path.read_text()
        till.config_path.write_text(
            original.replace('"till-test"', '"renamed"') + "[card]\noffline_limit = 100\n"
        )
        till.proc.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1")
        notify.wait_for("READY=1")
        status = client.call("status.get")
        assert status["offline_card"]["limit"] == 100  # live
        assert status["till_id"] == "till-test"  # restart-only: kept
        assert "till.id changed but needs a restart" in till.log()

        till.config_path.write_text("[card]\noffline_limit = -5\n")
        till.proc.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1")
        notify.wait_for("READY=1")
        assert client.call("status.get")["offline_card"]["limit"] == 100
        assert "card.offline_limit" in till.log() and "keeping the running configuration" in (
            till.log()
        )
        with pytest.raises(RpcError) as refused:
            client.call("admin.reload")
        assert refused.value.reason == "config-invalid"
        assert "card.offline_limit" in " ".join(refused.value.error["data"]["problems"])

        till.config_path.write_text(
            original + '[card]\noffline_limit = 7\n[log]\nlevel = "debug"\n'
        )
        result = client.call("admin.reload")
        assert result == {
            "changed": ["card.offline_limit", "log.level"],
            "applied": ["card.offline_limit", "log.level"],
            "restart_required": [],
        }
        assert client.call("status.get")["offline_card"]["limit"] == 7
        client.close()
    finally:
        assert till.stop() == 0
    assert "Traceback" not in till.log()
