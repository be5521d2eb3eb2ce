"""Shared fixtures: tilld as a real subprocess on a private state folder, and a socket client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest
from reliability import Recorder

from tilld.api.dbus import SLOW_CALL_WARNING

REPO = Path(__file__).resolve().parent.parent
DEMO_CATALOG = REPO / "tilld" / "demo" / "catalog.json"
START_TIMEOUT = 20.0


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(json.dumps(error, ensure_ascii=False))
        self.code = error["code"]
        self.error = error
        data = error.get("data")
        self.reason = data.get("reason") if isinstance(data, dict) else None


class Client:
    """A plain JSON-RPC client over the real Unix socket (no tilld code involved)."""

    def __init__(self, path: Path, timeout: float = 30) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rwb")
        self.next_id = 0
        self.notifications: list[dict[str, Any]] = []

    def send_raw(self, data: bytes) -> None:
        self.file.write(data)
        self.file.flush()

    def read(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise ConnectionError("tilld closed the connection")
        return json.loads(line)

    def request(self, rpc_method: str, /, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": rpc_method, "params": params}
        self.send_raw(json.dumps(message).encode() + b"\n")
        while True:
            reply = self.read()
            if "id" not in reply:
                self.notifications.append(reply)
                continue
            assert reply["id"] == self.next_id, reply
            return reply

    def call(self, rpc_method: str, /, **params: Any) -> Any:
        reply = self.request(rpc_method, **params)
        if "error" in reply:
            raise RpcError(reply["error"])
        return reply["result"]

    def next_event(self) -> dict[str, Any]:
        if self.notifications:
            return self.notifications.pop(0)["params"]
        message = self.read()
        assert message.get("method") == "event", message
        return message["params"]

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# What tilld/api/dbus.py logs for a D-Bus call that took over SLOW_CALL_S.
SLOW_DBUS_CALL = SLOW_CALL_WARNING


class TillProcess:
    """tilld run as a subprocess with a TOML configuration of its own."""

    started: ClassVar[list[TillProcess]] = []  # every daemon a test started, to catch leaks

    def __init__(self, base: Path, config: dict[str, dict[str, Any]] | None = None) -> None:
        self.base = base
        self.state_dir = base / "state"
        self.socket_path = base / "tilld.sock"
        self.config_path = base / "tilld.toml"
        self.log_path = base / "tilld.log"
        sections: dict[str, dict[str, Any]] = {
            "till": {"id": "till-test"},
            "paths": {"state_dir": str(self.state_dir)},
            "api": {"socket_path": str(self.socket_path), "dbus": "none"},
            "catalog": {"file": str(DEMO_CATALOG)},
        }
        for section, values in (config or {}).items():
            sections.setdefault(section, {}).update(values)
        self.config_path.write_text(to_toml(sections), encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None
        self.serves_dbus = sections["api"].get("dbus", "none") != "none"
        self._log_start = 0

    def start(self, wait: bool = True, env: dict[str, str] | None = None) -> TillProcess:
        """``env`` adds variables (NOTIFY_SOCKET, TILLD_TEST_HOOKS...) to a clean environment."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TILLD_")}
        inherited.pop("NOTIFY_SOCKET", None)  # a suite run under systemd must not leak it
        env = {**inherited, **(env or {})}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._log_start = self._log.tell()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tilld.cli.daemon", "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        TillProcess.started.append(self)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"tilld exited with {self.proc.returncode}:\n{self.log()}")
            try:
                client = Client(self.socket_path, timeout=5)
                client.call("status.get")
                client.close()
                return
            except (OSError, ConnectionError):
                time.sleep(0.02)
        raise AssertionError(f"tilld did not become ready:\n{self.log()}")

    def client(self) -> Client:
        return Client(self.socket_path)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.assert_no_dbus_call_waited()

    def stop(self, timeout: float = 10) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        self._log.close()
        self.assert_no_dbus_call_waited()
        return self.proc.returncode

    def assert_no_dbus_call_waited(self) -> None:
        """No D-Bus method may wait on a person or a peer (docs/api.md): tilld logs
        each call that took over a second, and any such line fails the test."""
        if not self.serves_dbus:
            return
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            text = log.read().decode("utf-8", errors="replace")
        slow = [line for line in text.splitlines() if SLOW_DBUS_CALL in line]
        assert not slow, f"D-Bus calls waited over a second: {slow}"


def to_toml(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session", autouse=True)
def no_daemon_outlives_the_tests():
    """A daemon left running by a test would outlive CI; kill it and say which.

    Under pytest-xdist each worker is a session of its own with its own
    TillProcess.started, so each checks the daemons its own tests started.
    """
    yield
    leaked = [p for p in TillProcess.started if p.proc is not None and p.proc.poll() is None]
    for process in leaked:
        process.kill()
    assert not leaked, f"tests left {len(leaked)} tilld running: {[str(p.base) for p in leaked]}"


# -- running the suite in parallel (pytest-xdist, `make test`) ---------------------

# Tests that time something the other workers would slow down: each stops
# tilld under its own CPU hogs (one per core) and asserts the stop took under
# 8 s. A second worker's tests on the same two cores would make that a measure
# of the neighbours. `make test` runs them alone, after the parallel run.
SERIAL = {
    "test_hardening_stop.py": {
        "test_sigterm_while_the_printer_is_polled_and_the_scanner_streams_under_load",
        "test_sigterm_with_a_stalled_printer_mid_job_and_a_drawer_kick_waiting",
        "test_sigterm_with_a_serial_printer_that_never_reads",
        "test_sigterm_while_name_lookups_hang",
    },
}


# The files that take longest, longest first (measured with --junitxml on
# 2026-11-27). `make test` passes --no-loadscope-reorder, so the collection
# order below is the order xdist hands files to its workers: the long files
# start first and the many short ones fill in behind them. With xdist's own
# order (most tests first) the crash test, two tests that take minutes,
# started last and the run ended waiting on it alone.
LONGEST_FILES = (
    "test_crash.py",
    "test_card_payments.py",
    "test_demo_cli.py",
    "test_z_terminal.py",
    "test_outage.py",
    "test_fiscal_controlunit.py",
    "test_chaos.py",
    "test_devices_e2e.py",
    "test_durability.py",
    "test_offline_card_budget.py",
    "test_hardening_backend.py",
    "test_bulk_sync.py",
    "test_controlunit_settle.py",
    "test_tamper.py",
    "test_install.py",
    "test_hardening_fiscal.py",
)


def pytest_collection_modifyitems(items):
    longest = {name: rank for rank, name in enumerate(LONGEST_FILES)}
    per_file = Counter(item.path.name for item in items)

    def order(item):
        name = item.path.name
        return (longest.get(name, len(longest)), -per_file[name], name)

    items.sort(key=order)  # stable: a file's own tests keep their order


def pytest_itemcollected(item):
    # Marked as each test is collected, before `-m serial` selects on it.
    if getattr(item, "originalname", None) in SERIAL.get(item.path.name, ()):
        item.add_marker(pytest.mark.serial)


def pytest_runtest_setup(item):
    item.first_daemon = len(TillProcess.started)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.passed_call = report.passed
        if report.failed:
            # CI keeps no state folders: a failure shows what its daemons logged.
            for process in TillProcess.started[getattr(item, "first_daemon", 0) :]:
                report.sections.append((f"tilld errors in {process.base}", errors_in(process)))
    return report


def errors_in(process: TillProcess) -> str:
    """The log from five lines before the first warning or error, 60 lines of it."""
    try:
        lines = process.log().splitlines()
    except OSError as exc:
        return f"(no log: {exc})"
    first = next((n for n, line in enumerate(lines) if line.startswith(("<3>", "<4>"))), None)
    return (
        "(no warning or error logged)"
        if first is None
        else "\n".join(lines[max(0, first - 5) : first + 60])
    )


@pytest.fixture
def reliability(request):
    """Record what a hardening test tried; it held if the test passed (tests/reliability.py)."""
    recorder = Recorder(request.node.nodeid)
    yield recorder
    recorder.finish(getattr(request.node, "passed_call", False))


@pytest.fixture
def short_tmp():
    """A short directory: a Unix socket path must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="tilld-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def till(short_tmp):
    process = TillProcess(short_tmp).start()
    yield process
    process.kill()


@pytest.fixture
def client(till):
    c = till.client()
    yield c
    c.close()
