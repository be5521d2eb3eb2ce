"""The socket fuzzed: random frames, wrong types, huge payloads, 1,000 connections.

One daemon takes everything hypothesis can think of; after each example it
must still answer, every request with an id must get exactly one valid
JSON-RPC reply, and its memory must stay within what the design bounds it
to (max_clients lines of at most 1 MiB each, plus its working set).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import resource
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import Client, TillProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sdnotify import NotifySocket

from tilld.api.operations import OPERATIONS
from tilld.api.socket import MAX_REQUEST

METHODS = [op.name for op in OPERATIONS] + ["no.such.method", "", "status.get\n"]
MAX_CLIENTS = 64

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
param_names = st.sampled_from(
    ["sale_id", "plu", "barcode", "quantity", "method", "amount", "code", "query", "limit",
     "receipt_no", "copy", "kind", "wait", "topics", "format", "since_seq", "training", "x"]
)  # fmt: skip
requests = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", 2]),
        "method": st.sampled_from(METHODS) | json_values,
        "params": st.dictionaries(param_names, json_values, max_size=4) | json_values,
    },
    optional={"id": st.integers(0, 10**6) | st.text(max_size=8) | json_values},
)


def frames() -> st.SearchStrategy[bytes]:
    as_json = requests.map(lambda r: json.dumps(r).encode() + b"\n")
    batch = st.lists(requests, min_size=1, max_size=4).map(lambda b: json.dumps(b).encode() + b"\n")
    raw = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"") + b"\n")
    return st.one_of(
        as_json, as_json, batch, raw, json_values.map(lambda v: json.dumps(v).encode() + b"\n")
    )


# systemd kills a unit whose pings stop for WATCHDOG_USEC; tilld pings at half of it.
WATCHDOG_USEC = 2_000_000


class WatchdogListener:
    """NOTIFY_SOCKET held by the test: every WATCHDOG=1 the daemon sends, with its time."""

    def __init__(self, path: Path) -> None:
        self.notify = NotifySocket(str(path))
        self.pings: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            datagram = self.notify.receive(0.2)
            if datagram is not None and datagram.has("WATCHDOG=1"):
                self.pings.append(datagram.at)

    def assert_fed_since(self, start: float) -> None:
        """No gap between pings (or since `start`) long enough for systemd to kill tilld."""
        now = time.monotonic()
        times = [start, *(t for t in self.pings if t >= start), now]
        worst = max(b - a for a, b in itertools.pairwise(times))
        assert worst < WATCHDOG_USEC / 1e6, f"the watchdog went {worst:.1f} s without a ping"

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.notify.close()


@pytest.fixture(scope="module")
def fuzz_till():
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="tilld-fz-"))
    watchdog = WatchdogListener(base / "notify.sock")
    till = TillProcess(base, {"api": {"max_clients": MAX_CLIENTS}})
    till.start(
        env={"NOTIFY_SOCKET": str(base / "notify.sock"), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    )
    till.watchdog = watchdog
    till.started_at = time.monotonic()
    yield till
    till.stop()
    watchdog.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def check_message(message: object) -> None:
    """A reply, a batch of replies, or an event notification, each well-formed."""
    if isinstance(message, list):
        assert message, "an empty batch reply"
        for item in message:
            check_message(item)
        return
    assert isinstance(message, dict), message
    assert message.get("jsonrpc") == "2.0", message
    if message.get("method") == "event":
        return
    assert ("result" in message) != ("error" in message), message
    if "error" in message:
        assert isinstance(message["error"]["code"], int)
        assert isinstance(message["error"]["message"], str)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(frames(), min_size=1, max_size=5))
def test_random_frames_never_break_the_daemon(fuzz_till: TillProcess, frames: list[bytes]) -> None:
    client = fuzz_till.client()
    client.sock.settimeout(30)
    try:
        for n, frame in enumerate(frames):
            client.send_raw(frame)
            # After whatever came before, a plain request on the same connection
            # is still answered; everything before its answer must be well-formed.
            probe = f"probe-{n}"
            client.send_raw(
                json.dumps({"jsonrpc": "2.0", "id": probe, "method": "status.get"}).encode() + b"\n"
            )
            while True:
                message = client.read()
                check_message(message)
                if isinstance(message, dict) and message.get("id") == probe:
                    break
            assert message["result"]["till_id"] == "till-test"
    finally:
        client.close()
    assert fuzz_till.proc is not None and fuzz_till.proc.poll() is None


def test_a_thousand_connections_with_half_sent_huge_lines_stay_bounded(
    fuzz_till: TillProcess,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    assert fuzz_till.proc is not None
    pid = fuzz_till.proc.pid
    before = rss_kib(pid)
    sockets = []
    try:
        for n in range(1000):
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(10)
            try:
                sock.connect(str(fuzz_till.socket_path))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
            if n % 4 == 0:
                # Most of a maximal line, never finished: what the daemon may buffer.
                # A connection over max_clients is closed by the daemon.
                with contextlib.suppress(OSError):
                    sock.sendall(b'{"jsonrpc":"2.0","method":"x","params":"' + b"A" * 900_000)
        grown_kib = rss_kib(pid) - before
        bound_kib = (MAX_CLIENTS * MAX_REQUEST + 64 * 2**20) // 1024
        assert grown_kib < bound_kib, f"grew {grown_kib} KiB, bound {bound_kib} KiB"
        # The daemon still serves a newcomer once the crowd leaves.
        for sock in sockets:
            sock.close()
        sockets.clear()
        probe = Client(fuzz_till.socket_path)
        deadline_tries = 200
        for _ in range(deadline_tries):
            try:
                assert probe.call("status.get")["till_id"] == "till-test"
                break
            except (ConnectionError, OSError):
                probe = Client(fuzz_till.socket_path)
        probe.close()
        assert fuzz_till.proc.poll() is None
        # Through the hypothesis run before this test and the crowd in it.
        fuzz_till.watchdog.assert_fed_since(fuzz_till.started_at)
        assert fuzz_till.watchdog.pings, "no WATCHDOG=1 at all"
    finally:
        for sock in sockets:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
