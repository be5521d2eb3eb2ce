"""Socket abuse: local users who try to lock the till out, and requests that got no answer.

The daemon is a real subprocess on a real Unix socket, run as root with
api.cashier_group = "nogroup" (gid 65534) and api.tech_group = "users"
(gid 100). Attackers and cashiers are small stdlib-only programs started with
other uids and groups (as tests/test_peercred.py does), so the kernel, not
the client, says who is calling.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Client, TillProcess
from pydantic import BaseModel, ValidationError
from test_api_fuzz import rss_kib
from test_peercred import python_other_users_may_run

from tilld.api.operations import OPERATIONS
from tilld.api.socket import encode_line
from tilld.config import ApiSection

NOBODY = 65534
NOGROUP = 65534  # the cashier group here
DAEMON_UID = DAEMON_GROUP = 1  # "daemon": no role of its own
BIN_UID = 2
SYS_UID = 3
SYNC_UID = 4
FORBIDDEN = -32001
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
PARSE_ERROR = -32700
INT64 = (-(2**63), 2**63 - 1)  # what SQLite stores in an INTEGER

# Half a request, and the rest of it: a slow-loris holds the first part.
HALF_LINE = '{"jsonrpc":"2.0","id":1,"method":"sta'
REST_OF_LINE = 'tus.get"}\n'
STATUS = '{"jsonrpc":"2.0","id":1,"method":"status.get"}\n'

# Opens COUNT connections and sends FIRST on each; reports, then holds them
# all until told, then sends THEN on each and reports the first line each got.
# After a refusal (an error with id null) it also reports whether the daemon
# hung up ("closed") or kept the connection open ("open", after 60 s).
HOLDER = r"""
import json, os, socket, sys
path, count, first, then = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def first_line(stream):
    try:
        line = stream.readline()
    except OSError as exc:
        return {"lost": type(exc).__name__}
    return json.loads(line) if line else {"lost": "eof"}
def hung_up(stream):
    try:
        return "closed" if not stream.readline() else "more"
    except TimeoutError:
        return "open"
    except OSError:
        return "closed"  # reset: the daemon closed with our unread bytes in its queue
socks, streams, early = [], [], []
for _ in range(count):
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)  # blocking: waits while the daemon's backlog is full
    sock.settimeout(60)
    try:
        sock.sendall(first.encode())
    except OSError:
        pass  # refused and closed already; the daemon's reply is still there to read
    socks.append(sock)
    streams.append(sock.makefile("rb"))
    if first.endswith("\n"):
        early.append(first_line(streams[-1]))
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
                  "opened": len(socks), "replies": early}), flush=True)
sys.stdin.readline()  # hold every connection until the test has probed the daemon
for sock in socks:
    try:
        sock.sendall(then.encode())
    except OSError:
        pass
replies = early or [first_line(stream) for stream in streams]
for reply, stream in zip(replies, streams):
    if "error" in reply and reply.get("id") is None:
        reply["then"] = hung_up(stream)
print(json.dumps(replies), flush=True)
sys.stdin.readline()
"""


class Holder:
    """A HOLDER program running as another user; `opened` is its first report."""

    def __init__(
        self,
        python: str,
        till: TillProcess,
        count: int,
        first: str,
        then: str = "",
        *,
        user: int,
        group: int,
        extra_groups: list[int],
    ) -> None:
        self.proc = subprocess.Popen(
            [python, "-I", "-c", HOLDER, str(till.socket_path), str(count), first, then],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            user=user,
            group=group,
            extra_groups=extra_groups,
        )
        self.opened = self._report()
        assert (self.opened["uid"], self.opened["gid"]) == (user, group), self.opened
        assert self.opened["opened"] == count, self.opened

    def _report(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            raise AssertionError(f"the holder died: {self.proc.communicate()[1]}")
        return json.loads(line)

    def replies(self) -> list[dict[str, Any]]:
        """Let go of the connections: finish each line and read what each got first."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self._report()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@contextlib.contextmanager
def holding(*args: Any, **kwargs: Any):
    holder = Holder(*args, **kwargs)
    try:
        yield holder
    finally:
        holder.close()


@pytest.fixture(scope="module")
def python_for_others() -> str:
    return python_other_users_may_run()


@pytest.fixture
def start_till(short_tmp):
    """tilld as root with the test's [api] keys; killed after the test."""
    started: list[TillProcess] = []

    def start(**api: Any) -> TillProcess:
        process = TillProcess(
            short_tmp, {"api": {"cashier_group": "nogroup", "tech_group": "users", **api}}
        ).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def root_status(till: TillProcess) -> tuple[dict[str, Any], float]:
    """status.get as root on a new connection: the reply and how long it took."""
    begun = time.monotonic()
    sock = socket.socket(socket.AF_UNIX)
    # As tillctl does: a blocking connect() waits for room in the accept queue,
    # which the attack may have filled for a moment (a timeout would make it fail).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 30, 0))
    try:
        sock.connect(str(till.socket_path))
        sock.settimeout(30)
        sock.sendall(STATUS.encode())
        line = sock.makefile("rb").readline()
    finally:
        sock.close()
    return json.loads(line), time.monotonic() - begun


def cashier_status(python: str, till: TillProcess, uid: int) -> dict[str, Any]:
    """status.get from a cashier: uid with the cashier group as a supplementary group."""
    with holding(python, till, 1, STATUS, user=uid, group=uid, extra_groups=[NOGROUP]) as one:
        return one.opened["replies"][0]


def daemon_connections(till: TillProcess) -> int:
    """Connections the daemon has accepted and not yet closed (from /proc/net/unix)."""
    listening = 0x10000  # __SO_ACCEPTCON in the Flags column
    count = 0
    for row in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = row.split()
        if len(fields) == 8 and fields[7] == str(till.socket_path):
            count += not int(fields[3], 16) & listening
    return count


def settled_connections(till: TillProcess, expected: int) -> int:
    """Poll until the daemon holds `expected` connections (or 30 s pass); what it holds."""
    deadline = time.monotonic() + 30
    while (held := daemon_connections(till)) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return held


def codes(replies: list[dict[str, Any]]) -> dict[Any, int]:
    tally: dict[Any, int] = {}
    for reply in replies:
        if "error" in reply:
            key = reply["error"]["code"]
        else:
            key = "result" if "result" in reply else str(reply)
        tally[key] = tally.get(key, 0) + 1
    return tally


# -- item 7: one local user must not lock everyone out ------------------------------


def test_role_less_peers_are_refused_at_once_and_hold_no_slot(
    python_for_others, start_till, reliability
):
    till = start_till(max_clients=20)
    rss_before = rss_kib(till.proc.pid)
    with holding(
        python_for_others, till, 260, HALF_LINE, REST_OF_LINE,
        user=NOBODY, group=DAEMON_GROUP, extra_groups=[],
    ) as attacker:  # fmt: skip
        root, took = root_status(till)
        assert "result" in root, root
        cashier = cashier_status(python_for_others, till, DAEMON_UID)
        assert "result" in cashier, cashier
        # The attacker still holds its 260 ends; the daemon holds none of them.
        held = settled_connections(till, 0)
        assert held == 0, f"the daemon holds {held} connections of a user without a role"
        rss_grown = rss_kib(till.proc.pid) - rss_before
        replies = attacker.replies()
    assert codes(replies) == {FORBIDDEN: 260}, codes(replies)
    assert {r["then"] for r in replies} == {"closed"}
    message = replies[0]["error"]["data"]["message"]
    assert "uid 65534" in message and "nogroup" in message and "users" in message, message
    reliability.record(
        "socket abuse",
        "slow-loris without a role: 260 half-line connections as uid 65534, max_clients 20",
        tries=260,
        figure=f"root answered in {took:.3f} s, a cashier too; all 260 refused -32001 and "
        f"closed; the daemon held 0 of them; RSS +{rss_grown} KiB",
    )


def test_one_uid_holds_at_most_max_clients_per_uid(python_for_others, start_till, reliability):
    till = start_till(max_clients=20, max_clients_per_uid=5, line_timeout_s=60)
    rss_before = rss_kib(till.proc.pid)
    with holding(
        python_for_others, till, 260, HALF_LINE, REST_OF_LINE,
        user=NOBODY, group=NOGROUP, extra_groups=[],
    ) as attacker:  # fmt: skip
        root, took = root_status(till)
        assert "result" in root, root
        cashier = cashier_status(python_for_others, till, DAEMON_UID)
        assert "result" in cashier, cashier
        held = settled_connections(till, 5)
        assert held == 5, f"the daemon holds {held} connections of one uid, not 5"
        rss_grown = rss_kib(till.proc.pid) - rss_before
        replies = attacker.replies()
    # The five it was allowed kept their half lines and were answered once finished.
    assert codes(replies) == {"result": 5, INVALID_REQUEST: 255}, codes(replies)
    assert {r.get("then") for r in replies if "error" in r} == {"closed"}
    refusal = next(r for r in replies if "error" in r)["error"]["message"]
    assert "uid 65534" in refusal and "api.max_clients_per_uid" in refusal, refusal
    reliability.record(
        "socket abuse",
        "slow-loris as a cashier: 260 half-line connections from one uid, per-uid cap 5",
        tries=260,
        figure=f"5 held, 255 refused; root answered in {took:.3f} s, another cashier too; "
        f"the daemon held 5 of the 260; RSS +{rss_grown} KiB",
    )


def test_cashiers_cannot_take_the_slots_kept_for_technicians(
    python_for_others, start_till, reliability
):
    till = start_till(max_clients=20, max_clients_per_uid=5, tech_reserved_clients=2)
    with contextlib.ExitStack() as stack:
        held: list[dict[str, Any]] = []
        for uid in (NOBODY, DAEMON_UID, BIN_UID, SYS_UID):
            holder = stack.enter_context(
                holding(
                    python_for_others, till, 5, STATUS, user=uid, group=uid, extra_groups=[NOGROUP]
                )
            )
            held += holder.opened["replies"]
        # 20 idle cashier connections tried; 18 fit beside the 2 kept for technicians.
        assert codes(held) == {"result": 18, INVALID_REQUEST: 2}, codes(held)
        refusal = next(r for r in held if "error" in r)["error"]["message"]
        assert "api.tech_reserved_clients" in refusal, refusal
        late = cashier_status(python_for_others, till, SYNC_UID)
        assert late["error"]["code"] == INVALID_REQUEST, late
        root, took = root_status(till)
        assert "result" in root, root
    reliability.record(
        "socket abuse",
        "cashiers from 5 uids fill every slot they may (max_clients 20, 2 kept for tech)",
        tries=25,
        figure=f"18 cashier connections held, the rest refused; root answered in {took:.3f} s",
    )


def tillctl_watch(till: TillProcess) -> subprocess.Popen[str]:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "tilld.cli.tillctl", "--socket", str(till.socket_path),
         "--json", "watch", "sale"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    assert watcher.stderr is not None
    assert watcher.stderr.readline().startswith("tillctl: watching sale")
    return watcher


def sell_coffee(client: Client) -> str:
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
    return sale_id


def test_a_half_written_line_times_out_but_idle_clients_and_watchers_stay(start_till, reliability):
    till = start_till(line_timeout_s=1)
    watcher = tillctl_watch(till)
    idle = till.client()
    try:
        assert idle.call("status.get")["till_id"] == "till-test"
        loris = socket.socket(socket.AF_UNIX)
        loris.settimeout(60)
        loris.connect(str(till.socket_path))
        begun = time.monotonic()
        loris.sendall(HALF_LINE.encode())
        stream = loris.makefile("rb")
        reply = json.loads(stream.readline())
        took = time.monotonic() - begun
        assert reply["error"]["code"] == INVALID_REQUEST and reply["id"] is None, reply
        assert "api.line_timeout_s" in reply["error"]["message"], reply
        assert stream.readline() == b"", "the connection stays open after a timed-out line"
        assert took >= 1.0, f"cut off after {took:.2f} s, before api.line_timeout_s"
        loris.close()
        # Both were idle between whole requests for longer than the line timeout.
        assert idle.call("status.get")["till_id"] == "till-test"
        sale_id = sell_coffee(idle)
        assert watcher.stdout is not None
        events = [json.loads(watcher.stdout.readline()) for _ in range(3)]
        assert [(e["topic"], e["event"], e["sale_id"]) for e in events] == [
            ("sale", "opened", sale_id),
            ("sale", "line-added", sale_id),
            ("sale", "completed", sale_id),
        ]
    finally:
        idle.close()
        watcher.terminate()
        watcher.wait(10)
    reliability.record(
        "socket abuse",
        "half a line then silence (line_timeout_s 1), beside an idle client and tillctl watch",
        tries=1,
        figure=f"cut off after {took:.2f} s with -32600; the idle client and the watcher stayed",
    )


def test_a_line_dripped_a_byte_at_a_time_is_cut_off_at_its_deadline(start_till, reliability):
    till = start_till(line_timeout_s=1)
    loris = socket.socket(socket.AF_UNIX)
    loris.settimeout(60)
    loris.connect(str(till.socket_path))
    stop = threading.Event()
    dripped = 0

    def drip() -> None:
        # The pace of the attack, not synchronisation: a byte every 50 ms, for ever.
        nonlocal dripped
        payload = b'{"jsonrpc":"2.0","id":1,"method":"status.get","params":{"x":"' + b"x" * 10**6
        for byte in payload:
            if stop.wait(0.05):
                return
            try:
                loris.send(bytes([byte]))
            except OSError:
                return
            dripped += 1

    dripper = threading.Thread(target=drip, daemon=True)
    begun = time.monotonic()
    dripper.start()
    try:
        stream = loris.makefile("rb")
        reply = json.loads(stream.readline())
        took = time.monotonic() - begun
        assert reply["error"]["code"] == INVALID_REQUEST, reply
        assert "api.line_timeout_s" in reply["error"]["message"], reply
    finally:
        stop.set()
        dripper.join()
        loris.close()
    assert took >= 1.0, f"cut off after {took:.2f} s, before api.line_timeout_s"
    assert root_status(till)[0]["result"]["till_id"] == "till-test"
    reliability.record(
        "socket abuse",
        "a request line dripped a byte every 50 ms (line_timeout_s 1)",
        tries=dripped,
        figure=f"cut off after {took:.2f} s and {dripped} bytes",
    )


def test_a_tech_reserve_that_leaves_cashiers_nothing_is_a_config_error():
    with pytest.raises(ValidationError) as caught:
        ApiSection(max_clients=4, tech_reserved_clients=4)
    assert "tech_reserved_clients (4) must be less than max_clients (4)" in str(caught.value)


@pytest.mark.parametrize("key", ["max_clients_per_uid", "line_timeout_s", "tech_reserved_clients"])
def test_the_socket_limits_refuse_nonsense(key):
    with pytest.raises(ValidationError) as caught:
        ApiSection(**{key: -1})
    assert key in str(caught.value)


# -- tillctl when the daemon hangs up ------------------------------------------------


def tillctl(socket_path: Path, *args: str, **run: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tilld.cli.tillctl", "--socket", str(socket_path), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        **run,
    )


@contextlib.contextmanager
def resetting_server(path: Path, *, read_first: bool):
    """A peer that accepts one client and resets it: after its request arrives, or at once."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        if read_first:
            # Peek: the request stays unread, so closing resets the client (ECONNRESET).
            seen.append(conn.recv(65536, socket.MSG_PEEK))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        thread.join(30)
        server.close()


def assert_one_line(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tillctl: "), result.stderr
    assert result.returncode == exit_code, (result.returncode, result.stderr)
    return lines[0]


def test_tillctl_says_in_one_line_that_the_daemon_reset_the_connection(short_tmp, reliability):
    path = short_tmp / "reset.sock"
    with resetting_server(path, read_first=True) as seen:
        result = tillctl(path, "status")
    assert b"status.get" in seen[0]
    line = assert_one_line(result, 3)
    assert "reset" in line and str(path) in line, line
    reliability.record("socket abuse", "tillctl's peer resets after the request", tries=1)


def test_tillctl_says_in_one_line_that_the_daemon_hung_up_at_once(short_tmp):
    path = short_tmp / "reset.sock"
    with resetting_server(path, read_first=False):
        result = tillctl(path, "status")
    # Whether the write or the read notices first, it is the same one line.
    line = assert_one_line(result, 3)
    assert str(path) in line, line


# Queues connections without waiting until the daemon's accept queue is full.
FILLER = r"""
import json, socket, sys
socks = []
while True:
    sock = socket.socket(socket.AF_UNIX)
    sock.setblocking(False)
    try:
        sock.connect(sys.argv[1])
    except BlockingIOError:
        break  # the listener's queue is full
    socks.append(sock)
print(json.dumps({"queued": len(socks)}), flush=True)
sys.stdin.readline()
"""


def waiting_in_connect(pid: int) -> bool:
    """The process sleeps in connect() until the listener's full queue has room."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/wchan").read_text() == "unix_wait_for_peer"
    return False


def test_tillctl_waits_for_room_in_a_full_accept_queue(python_for_others, start_till, reliability):
    till = start_till()
    till.proc.send_signal(signal.SIGSTOP)  # accepts nothing until SIGCONT
    filler = ctl = None
    try:
        filler = subprocess.Popen(
            [python_for_others, "-I", "-c", FILLER, str(till.socket_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd="/",
            user=NOBODY,
            group=DAEMON_GROUP,
            extra_groups=[],
        )
        queued = json.loads(filler.stdout.readline())["queued"]
        ctl = subprocess.Popen(
            [sys.executable, "-m", "tilld.cli.tillctl", "--socket", str(till.socket_path),
             "--json", "status"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )  # fmt: skip
        # Poll until tillctl gave up, or waits in connect() for room in the queue.
        while ctl.poll() is None and not waiting_in_connect(ctl.pid):
            time.sleep(0.01)
        till.proc.send_signal(signal.SIGCONT)
        out, err = ctl.communicate(timeout=60)
    finally:
        till.proc.send_signal(signal.SIGCONT)
        for process in (filler, ctl):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()
    assert ctl.returncode == 0, err
    assert json.loads(out)["till_id"] == "till-test"
    reliability.record(
        "socket abuse",
        "the daemon's accept queue filled by a user without a role; then tillctl status",
        tries=queued,
        figure=f"tillctl waited for room behind {queued} queued connections and got its answer",
    )


def test_tillctl_without_a_role_prints_the_refusal_in_one_line(python_for_others, start_till):
    till = start_till()
    result = subprocess.run(
        [python_for_others, "-m", "tilld.cli.tillctl", "--socket", str(till.socket_path),
         "status"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        timeout=60,
        user=NOBODY,
        group=DAEMON_GROUP,
        extra_groups=[],
    )  # fmt: skip
    line = assert_one_line(result, 1)
    assert line.startswith("tillctl: error -32001") and "uid 65534" in line, line


# -- item 11: every bad request gets an answer ---------------------------------------


@pytest.fixture(scope="module")
def shared_till():
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="tilld-hs-"))
    os.chmod(base, 0o755)
    process = TillProcess(base).start()
    yield process
    process.kill()


@pytest.fixture
def conn(shared_till):
    client = shared_till.client()
    yield client
    # Whatever came before, the same connection still answers.
    assert client.call("status.get")["till_id"] == "till-test"
    client.close()


def raw(client: Client, data: bytes) -> Any:
    client.send_raw(data)
    return client.read()


@pytest.mark.parametrize(
    "frame",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"status.get","params":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    ],
    ids=["params", "batch", "objects"],
)
def test_json_nested_100000_deep_is_a_parse_error(conn, frame, reliability):
    reply = raw(conn, frame + b"\n")
    assert reply["error"]["code"] == PARSE_ERROR and reply["id"] is None, reply
    assert "nested" in reply["error"]["message"], reply
    reliability.record("bad requests", "JSON nested 100,000 deep", tries=1, figure="-32700")


def test_an_id_with_a_lone_surrogate_is_an_invalid_request(conn, reliability):
    for escape in ("\\ud800", "\\udfff", "x\\ud83d"):
        frame = '{"jsonrpc":"2.0","id":"' + escape + '","method":"status.get"}\n'
        reply = raw(conn, frame.encode())
        assert reply["error"]["code"] == INVALID_REQUEST and reply["id"] is None, reply
        assert "surrogate" in reply["error"]["message"], reply
    reliability.record("bad requests", "ids with lone surrogates", tries=3, figure="-32600")


def test_a_lone_surrogate_id_in_a_batch_spoils_only_its_own_request(conn):
    frame = b'[{"jsonrpc":"2.0","id":"\\ud800","method":"status.get"},' \
        b'{"jsonrpc":"2.0","id":2,"method":"status.get"}]\n'  # fmt: skip
    bad, good = raw(conn, frame)
    assert bad["error"]["code"] == INVALID_REQUEST and bad["id"] is None, bad
    assert good["id"] == 2 and good["result"]["till_id"] == "till-test", good


def test_an_id_with_a_whole_surrogate_pair_is_answered_with_that_id(conn):
    reply = raw(conn, b'{"jsonrpc":"2.0","id":"\\ud83d\\ude00","method":"status.get"}\n')
    assert reply["id"] == "\U0001f600" and "result" in reply, reply


def test_an_answer_holding_a_lone_surrogate_still_goes_out_as_json_escapes():
    # Nothing a client sends reaches an answer this way any more; a driver's
    # text might. The answer must still be one line of valid UTF-8.
    data = encode_line({"jsonrpc": "2.0", "method": "event", "params": {"code": "a\ud800"}})
    assert data.endswith(b"\n") and data.decode("ascii")
    assert json.loads(data)["params"]["code"] == "a\ud800"


def integer_params(model: type[BaseModel], path: tuple[str | int, ...] = ()):
    """(path, lowest, highest) of every integer field, nested models included."""
    for name, field in model.model_fields.items():
        here = (*path, field.alias or name)
        kinds = _kinds(field.annotation)
        if int in kinds:
            low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
            high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
            yield here, low, high
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                yield from integer_params(kind, (*here, 0))


def _kinds(annotation: Any) -> set[Any]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return _kinds(args[0])
    if not args:
        return {annotation}
    return set().union(*(_kinds(a) for a in args))


INTEGER_PARAMS = [
    (op.name, path, low, high) for op in OPERATIONS for path, low, high in integer_params(op.params)
]


def test_the_operation_table_has_integer_parameters():
    names = {(name, ".".join(map(str, path))) for name, path, _, _ in INTEGER_PARAMS}
    assert {
        ("sale.refund", "receipt_no"),
        ("admin.journal_export", "since_seq"),
        ("sale.refund", "lines.0.line_id"),
        ("receipt.print", "receipt_no"),
    } <= names


@pytest.mark.parametrize(
    ("name", "path", "low", "high"),
    INTEGER_PARAMS,
    ids=[f"{n}:{'.'.join(map(str, p))}" for n, p, _, _ in INTEGER_PARAMS],
)
def test_every_integer_parameter_is_bounded_to_what_sqlite_stores(name, path, low, high):
    assert low is not None and high is not None, f"{name} {path}: from {low} to {high}"
    assert INT64[0] <= low <= high <= INT64[1], f"{name} {path}: from {low} to {high}"


# Otherwise valid params, so that the one bad integer is all that is wrong.
VALID_PARAMS: dict[str, dict[str, Any]] = {
    "sale.add": {"sale_id": "s", "plu": "300"},
    "sale.remove": {"sale_id": "s", "line_id": 1},
    "sale.pay": {"sale_id": "s", "method": "cash", "amount": 100},
    "sale.refund": {"receipt_no": 1, "method": "cash", "lines": [{"line_id": 1}]},
    "receipt.print": {"receipt_no": 1},
}


def with_value(params: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """``params`` with the value at ``path`` (keys and list indexes) replaced."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(params or [{}])
        items[head] = with_value(items[head], rest, value)
        return items
    return {**(params or {}), head: with_value((params or {}).get(head), rest, value)}


@pytest.mark.parametrize(
    "value", [2**63, 2**64 + 1, -(2**63) - 1], ids=["2^63", "2^64+1", "-2^63-1"]
)
@pytest.mark.parametrize(
    ("name", "path", "low", "high"),
    INTEGER_PARAMS,
    ids=[f"{n}:{'.'.join(map(str, p))}" for n, p, _, _ in INTEGER_PARAMS],
)
def test_an_integer_beyond_64_bits_is_invalid_params_naming_it_and_its_range(
    conn, name, path, low, high, value
):
    reply = conn.request(name, **with_value(VALID_PARAMS.get(name, {}), path, value))
    assert reply["error"]["code"] == INVALID_PARAMS, reply
    where = ".".join(map(str, path))
    problems = [p for p in reply["error"]["data"]["errors"] if p.startswith(where + ":")]
    assert problems, reply
    assert f"from {low} to {high}" in problems[0], problems
