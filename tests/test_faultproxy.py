"""The fault proxy as a real subprocess between a raw client and a real HTTP target on loopback.

Each test switches the mode through the control port, as the outage tests and
the demo do from another process, and checks what a client can observe.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tilld.sim.faultproxy import InvalidMode, Mode
from tilld.sim.faultproxy.delay import due_time

REPO = Path(__file__).resolve().parent.parent
BODY = b"0123456789" * 400  # long enough that a reset after a few bytes visibly cuts it
STATUS_LINE = b"HTTP/1.1 200 OK\r\n"
START_TIMEOUT_S = 20.0
READ_TIMEOUT_S = 5.0
BLACKHOLE_WAIT_S = 0.5


# -- the target, the proxy process and a raw HTTP client ---------------------


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # The proxy resets its target connection in refuse and reset modes, by design.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Target:
    """A keep-alive HTTP/1.1 server in a thread; it records each path it is asked for."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                paths.append(self.path)
                self.reply(BODY)

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers["Content-Length"]))
                paths.append(self.path)
                self.reply(b"echo:" + data)

            def reply(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        # A short poll interval only makes shutdown() at teardown quicker.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ProxyProcess:
    """``python -m tilld.sim.faultproxy`` with its announced addresses and its control API."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "tilld.sim.faultproxy", "--log-level", "debug"),
                *("--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", *args),
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=REPO,
        )
        announced = self._read_announcements(("listening", "control"))
        host, _, port = announced["listening"].rpartition(":")
        self.address = (host, int(port))
        self.control = announced["control"]

    def _read_announcements(self, keys: tuple[str, ...]) -> dict[str, str]:
        assert self.proc.stdout is not None
        announced: dict[str, str] = {}
        buffer = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(key in announced for key in keys):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the proxy did not announce {keys}: {self.log()}"
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            assert chunk, f"the proxy exited: {self.log()}"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                key, _, value = line.decode().strip().partition("=")
                announced[key] = value
        return announced

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def control_request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://{self.control}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=READ_TIMEOUT_S) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def set_mode(self, mode: str, **options: Any) -> dict[str, Any]:
        status, answer = self.control_request("POST", "/mode", {"mode": mode, **options})
        assert status == 200, answer
        return answer

    def stats(self) -> dict[str, Any]:
        status, answer = self.control_request("GET", "/stats")
        assert status == 200, answer
        return answer

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class Response(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


def request_bytes(path: str = "/", body: bytes | None = None) -> bytes:
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: target\r\n\r\n".encode()
    head = f"POST {path} HTTP/1.1\r\nHost: target\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class HttpConnection:
    """A raw keep-alive HTTP/1.1 client on one socket, so a test sees just what the proxy did."""

    def __init__(self, address: tuple[str, int], timeout: float = READ_TIMEOUT_S) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.buffer = b""
        self.received = 0

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the proxy closed the connection")
        self.received += len(chunk)
        self.buffer += chunk

    def send(self, path: str = "/", body: bytes | None = None) -> None:
        self.sock.sendall(request_bytes(path, body))

    def response(self) -> Response:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(int(status_line.split()[1]), headers, body)

    def exchange(self, path: str = "/", body: bytes | None = None) -> Response:
        self.send(path, body)
        return self.response()

    def close(self) -> None:
        self.sock.close()


def read_until_closed(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything the peer sends until it closes; True if it ended with a reset."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        return received, True
    return received, False


def wait_for(predicate: Any, what: str, timeout: float = READ_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def target():
    server = Target()
    yield server
    server.close()


@contextlib.contextmanager
def running_proxy(tmp_path: Path, *args: str) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(tmp_path / "proxy.log", *args)
    try:
        yield proxy
    finally:
        returncode = proxy.stop()
    assert returncode == 0, proxy.log()
    # Client and target errors are logged at debug and never crash or leak a traceback.
    assert "Traceback" not in proxy.log() and "<3>" not in proxy.log(), proxy.log()


@pytest.fixture
def proxy(tmp_path, target):
    with running_proxy(tmp_path, "--target", target.address) as proxy:
        yield proxy


@pytest.fixture
def switch(tmp_path):
    with running_proxy(tmp_path) as switch:
        yield switch


# -- pure: mode options --------------------------------------------------------


def test_mode_options_default_and_show_only_where_they_apply():
    assert Mode.parse("slow").describe() == {"mode": "slow", "delay_s": 1.0}
    assert Mode.parse("reset", after_bytes=0).describe() == {"mode": "reset", "after_bytes": 0}
    assert Mode.parse("blackhole").describe() == {"mode": "blackhole"}


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("explode", {}),
        (None, {}),
        ("pass", {"delay_s": 1}),
        ("slow", {"delay_s": -0.1}),
        ("slow", {"delay_s": float("nan")}),
        ("slow", {"delay_s": "1"}),
        ("reset", {"after_bytes": 1.5}),
        ("reset", {"after_bytes": True}),
    ],
)
def test_unknown_modes_and_bad_options_are_refused(name, options):
    with pytest.raises(InvalidMode):
        Mode.parse(name, **options)


# -- pass and the command line -------------------------------------------------


def test_pass_forwards_requests_and_responses_both_ways(proxy, target):
    conn = HttpConnection(proxy.address)
    answer = conn.exchange("/echo", b"hello target")
    assert (answer.status, answer.body) == (200, b"echo:hello target")
    assert conn.exchange("/again").body == BODY  # the same keep-alive connection
    assert target.paths == ["/echo", "/again"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_announces_real_ports_and_exits_cleanly_on_a_signal(tmp_path, target, signum):
    proxy = ProxyProcess(tmp_path / "proxy.log", "--target", target.address)
    assert proxy.address[1] != 0 and not proxy.control.endswith(":0")
    assert HttpConnection(proxy.address).exchange("/").status == 200
    assert proxy.stop(signum) == 0, proxy.log()


def test_starting_in_refuse_holds_the_announced_port_for_pass(tmp_path, target):
    with running_proxy(tmp_path, "--target", target.address, "--mode", "refuse") as proxy:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(proxy.address, timeout=READ_TIMEOUT_S)
        proxy.set_mode("pass")
        assert HttpConnection(proxy.address).exchange("/").status == 200


def test_an_unreachable_target_resets_the_client_and_the_proxy_carries_on(tmp_path):
    with running_proxy(tmp_path, "--target", f"127.0.0.1:{closed_port()}") as proxy:
        for _ in range(2):
            with pytest.raises((ConnectionError, EOFError)):
                HttpConnection(proxy.address).exchange("/")
        assert proxy.stats()["by_mode"]["pass"]["connections"] == 2


# -- refuse ----------------------------------------------------------------------


def test_refuse_refuses_connects_and_pass_listens_again_on_the_same_port(proxy):
    proxy.set_mode("refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=READ_TIMEOUT_S)
    proxy.set_mode("pass")
    assert HttpConnection(proxy.address).exchange("/").body == BODY


def test_refuse_breaks_an_open_keep_alive_connection(proxy, target):
    conn = HttpConnection(proxy.address)
    assert conn.exchange("/before").status == 200
    proxy.set_mode("refuse")
    with pytest.raises((ConnectionError, EOFError)):
        conn.exchange("/during")
    assert target.paths == ["/before"]


def test_refuse_resets_an_idle_open_connection_at_once(proxy):
    conn = HttpConnection(proxy.address)
    assert conn.exchange("/before").status == 200
    proxy.set_mode("refuse")
    # Not only when it next sends: a client waiting to read learns now.
    with pytest.raises(ConnectionResetError):
        conn.sock.recv(1)


# -- blackhole -----------------------------------------------------------------


def test_blackhole_accepts_but_never_answers(proxy, target):
    proxy.set_mode("blackhole")
    conn = HttpConnection(proxy.address, timeout=BLACKHOLE_WAIT_S)  # the connect succeeds
    conn.send("/lost")
    with pytest.raises(TimeoutError):
        conn.response()
    assert target.paths == []


def test_blackhole_stalls_an_open_connection_and_pass_delivers_what_was_held(proxy, target):
    conn = HttpConnection(proxy.address)
    assert conn.exchange("/before").status == 200
    proxy.set_mode("blackhole")
    conn.sock.settimeout(BLACKHOLE_WAIT_S)
    conn.send("/held")
    with pytest.raises(TimeoutError):
        conn.response()
    proxy.set_mode("pass")
    conn.sock.settimeout(READ_TIMEOUT_S)
    assert conn.response().body == BODY
    assert target.paths == ["/before", "/held"]


# -- halfdead --------------------------------------------------------------------


def test_halfdead_lets_open_connections_pass_and_holds_new_ones(proxy, target):
    opened = HttpConnection(proxy.address)
    assert opened.exchange("/before").status == 200
    proxy.set_mode("halfdead")
    assert opened.exchange("/open-still-passes").body == BODY
    fresh = HttpConnection(proxy.address, timeout=BLACKHOLE_WAIT_S)  # the connect succeeds
    fresh.send("/held")
    with pytest.raises(TimeoutError):
        fresh.response()
    assert opened.exchange("/open-again").status == 200  # the open one is unaffected
    assert target.paths == ["/before", "/open-still-passes", "/open-again"]
    assert proxy.stats()["by_mode"]["halfdead"]["connections"] == 1


def test_halfdead_delivers_what_it_held_once_left_and_the_connection_then_counts_as_open(
    proxy, target
):
    proxy.set_mode("halfdead")
    held = HttpConnection(proxy.address, timeout=BLACKHOLE_WAIT_S)
    held.send("/held")
    with pytest.raises(TimeoutError):
        held.response()
    proxy.set_mode("pass")
    held.sock.settimeout(READ_TIMEOUT_S)
    assert held.response().body == BODY
    proxy.set_mode("halfdead")  # accepted under the last halfdead, open under this one
    assert held.exchange("/now-open").status == 200
    assert target.paths == ["/held", "/now-open"]


def test_switch_in_halfdead_holds_new_connections(switch):
    switch.set_mode("halfdead")
    with (
        socket.create_connection(switch.address, timeout=BLACKHOLE_WAIT_S) as sock,
        pytest.raises(TimeoutError),
    ):
        sock.recv(1)


# -- reset -----------------------------------------------------------------------


@pytest.mark.parametrize(("options", "limit"), [({}, 10), ({"after_bytes": 5}, 5)])
def test_reset_forwards_the_request_then_resets_within_the_response(proxy, target, options, limit):
    proxy.set_mode("reset", **options)
    conn = HttpConnection(proxy.address)
    conn.send("/cut")
    received, reset = read_until_closed(conn.sock)
    assert target.paths == ["/cut"]
    assert reset, f"closed without a reset after {received!r}"
    # Linux hands over what arrived before the RST, but a client may not count on it.
    assert len(received) <= limit
    assert received == STATUS_LINE[: len(received)]


def test_reset_counts_the_response_from_the_latest_request_of_an_open_connection(proxy):
    conn = HttpConnection(proxy.address)
    assert conn.exchange("/whole").body == BODY  # thousands of bytes before the switch
    proxy.set_mode("reset", after_bytes=len(STATUS_LINE))
    conn.send("/cut")
    received, reset = read_until_closed(conn.sock)
    assert reset, f"closed without a reset after {received!r}"
    assert received == STATUS_LINE[: len(received)]


# -- slow ------------------------------------------------------------------------


def timed_exchange(proxy: ProxyProcess) -> float:
    conn = HttpConnection(proxy.address)
    began = time.monotonic()
    assert conn.exchange("/timed").body == BODY
    elapsed = time.monotonic() - began
    conn.close()
    return elapsed


def test_slow_delays_an_exchange_compared_with_pass(proxy):
    delay_s = 0.3
    passing = timed_exchange(proxy)
    proxy.set_mode("slow", delay_s=delay_s)
    slowed = timed_exchange(proxy)
    # The request and the response each wait delay_s at least once.
    assert slowed >= passing + delay_s


# -- latency -----------------------------------------------------------------------


def test_latency_options_default_to_a_50_ms_round_trip_and_bad_ones_are_refused():
    assert Mode.parse("latency").describe() == {
        "mode": "latency",
        "up_s": 0.025,
        "down_s": 0.025,
        "jitter_s": 0.005,
    }
    for bad in ({"up_s": -0.01}, {"down_s": "1"}, {"jitter_s": float("inf")}, {"delay_s": 1}):
        with pytest.raises(InvalidMode):
            Mode.parse("latency", **bad)


def test_a_delay_line_due_time_is_late_by_the_delay_and_never_overtakes():
    previous = 0.0
    for now, draw in [(1.0, 0.9), (1.001, 0.0), (1.002, 0.5), (2.0, 0.1)]:
        due = due_time(now, 0.05, 0.02, previous, draw)
        assert due >= now + 0.05 + 0.02 * draw and due >= previous
        previous = due


def test_latency_delays_each_direction_on_an_open_connection(proxy):
    conn = HttpConnection(proxy.address)
    conn.exchange("/warm")  # connected before the mode: no handshake cost below
    proxy.set_mode("latency", up_s=0.1, down_s=0.15, jitter_s=0)
    began = time.monotonic()
    assert conn.exchange("/late").body == BODY
    assert time.monotonic() - began >= 0.25  # the request's way up and the answer's way down
    conn.close()


def test_latency_costs_a_new_connection_a_round_trip_more(proxy):
    proxy.set_mode("latency", up_s=0.1, down_s=0.1, jitter_s=0)
    conn = HttpConnection(proxy.address)
    began = time.monotonic()
    assert conn.exchange("/first").body == BODY
    assert time.monotonic() - began >= 0.4  # handshake round trip, then the exchange's
    conn.close()


def test_latency_delivers_the_bytes_unchanged_and_in_order_under_jitter(proxy, target):
    # Jitter ten times the delay: chunks would overtake each other if the line let them.
    proxy.set_mode("latency", up_s=0.002, down_s=0.002, jitter_s=0.02)
    body = b"".join(b"%06d:" % i + os.urandom(57) for i in range(3000))  # 192 kB, numbered
    conn = HttpConnection(proxy.address)
    head = f"POST /order HTTP/1.1\r\nHost: target\r\nContent-Length: {len(body)}\r\n\r\n"
    conn.sock.sendall(head.encode())
    for start in range(0, len(body), 4096):
        conn.sock.sendall(body[start : start + 4096])
        time.sleep(0.001)  # separate chunks at the proxy, each with its own jitter
    answer = conn.response()
    assert (answer.status, answer.body) == (200, b"echo:" + body)
    assert conn.exchange("/after").body == BODY  # the connection carries on
    assert target.paths == ["/order", "/after"]
    conn.close()


def test_leaving_latency_delivers_the_bytes_in_flight_first(proxy):
    conn = HttpConnection(proxy.address)
    conn.exchange("/warm")
    proxy.set_mode("latency", up_s=1.0, down_s=0, jitter_s=0)
    body = b"first half|second half"
    head = f"POST /mixed HTTP/1.1\r\nHost: target\r\nContent-Length: {len(body)}\r\n\r\n"
    conn.sock.sendall(head.encode() + body[:11])
    wait_for(lambda: proxy.stats()["in_flight"] > 0, "the request to be in flight")
    proxy.set_mode("pass")
    conn.sock.sendall(body[11:])  # must not overtake the first half, still in flight
    assert conn.response().body == b"echo:" + body
    conn.close()


def test_stats_count_the_bytes_moved_under_latency(proxy):
    proxy.set_mode("latency", up_s=0.01, down_s=0.01, jitter_s=0.01)
    conn = HttpConnection(proxy.address)
    conn.exchange("/echo", b"12345")
    latency = proxy.stats()["by_mode"]["latency"]
    assert latency == {
        "connections": 1,
        "to_target": len(request_bytes("/echo", b"12345")),
        "to_client": conn.received,
    }
    conn.close()


# -- http500 / http401 -----------------------------------------------------------


@pytest.mark.parametrize(("mode", "status"), [("http500", 500), ("http401", 401)])
def test_http_error_modes_answer_with_json_and_close_without_the_target(
    proxy, target, mode, status
):
    proxy.set_mode(mode)
    conn = HttpConnection(proxy.address)
    answer = conn.exchange("/v1/tills/t1/journal", b'{"entries": []}')
    assert answer.status == status
    assert answer.headers["connection"] == "close"
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body)["error"]
    assert ("www-authenticate" in answer.headers) == (status == 401)
    with pytest.raises(EOFError):  # a clean close after the answer, not a reset
        conn.response()
    assert target.paths == []


@pytest.mark.parametrize(("mode", "status"), [("http500", 500), ("http401", 401)])
def test_http_error_answers_parse_as_http_errors_for_a_standard_client(proxy, mode, status):
    proxy.set_mode(mode)
    host, port = proxy.address
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"http://{host}:{port}/v1/health", timeout=READ_TIMEOUT_S)
    assert caught.value.code == status


def test_http500_answers_the_next_request_of_an_open_connection(proxy, target):
    conn = HttpConnection(proxy.address)
    assert conn.exchange("/before").status == 200
    proxy.set_mode("http500")
    assert conn.exchange("/after", b"x" * 1000).status == 500
    assert target.paths == ["/before"]


# -- without a target: the internet probe switch ---------------------------------


def test_switch_in_pass_accepts_and_closes_at_once(switch):
    with socket.create_connection(switch.address, timeout=READ_TIMEOUT_S) as sock:
        assert sock.recv(1) == b""


def test_switch_refuses_when_down_and_accepts_again_when_up(switch):
    switch.set_mode("refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(switch.address, timeout=READ_TIMEOUT_S)
    switch.set_mode("pass")
    with socket.create_connection(switch.address, timeout=READ_TIMEOUT_S) as sock:
        assert sock.recv(1) == b""


def test_switch_in_blackhole_accepts_and_holds(switch):
    switch.set_mode("blackhole")
    with (
        socket.create_connection(switch.address, timeout=BLACKHOLE_WAIT_S) as sock,
        pytest.raises(TimeoutError),
    ):
        sock.recv(1)


# -- control API and counters -----------------------------------------------------


def test_control_api_shows_the_mode_with_its_options(proxy):
    assert proxy.control_request("GET", "/mode") == (200, {"mode": "pass"})
    assert proxy.set_mode("slow", delay_s=2) == {"mode": "slow", "delay_s": 2.0}
    assert proxy.control_request("GET", "/mode") == (200, {"mode": "slow", "delay_s": 2.0})


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"mode": "explode"}, "invalid-mode"),
        ({"mode": "pass", "delay_s": 1}, "invalid-mode"),
        ({"mode": "slow", "delay_s": -1}, "invalid-mode"),
        ({"delay_s": 1}, "bad-request"),
        (b"not json", "bad-request"),
    ],
)
def test_control_api_refuses_bad_modes_and_keeps_the_mode(proxy, body, error):
    status, answer = proxy.control_request("POST", "/mode", body)
    assert (status, answer["error"]) == (400, error)
    assert proxy.control_request("GET", "/mode") == (200, {"mode": "pass"})


def test_control_api_answers_unknown_paths_and_methods(proxy):
    assert proxy.control_request("GET", "/nowhere")[0] == 404
    assert proxy.control_request("DELETE", "/mode")[0] == 405


def test_stats_count_connections_and_bytes_each_way_per_mode(proxy):
    passing = HttpConnection(proxy.address)
    passing.exchange("/echo", b"12345")
    proxy.set_mode("http500")
    failing = HttpConnection(proxy.address)
    failing.exchange("/echo", b"12345")
    stats = proxy.stats()
    assert stats["mode"] == "http500"
    assert stats["by_mode"]["pass"] == {
        "connections": 1,
        "to_target": len(request_bytes("/echo", b"12345")),
        "to_client": passing.received,
    }
    assert stats["by_mode"]["http500"] == {
        "connections": 1,
        "to_target": 0,
        "to_client": failing.received,
    }
    assert stats["total"]["connections"] == 2
    passing.close()
    failing.close()
    wait_for(lambda: proxy.stats()["open_connections"] == 0, "both connections to be closed")
