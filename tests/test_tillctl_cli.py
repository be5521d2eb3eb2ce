"""tillctl as a technician meets it: every subcommand, good and bad input, no traceback ever.

Each case runs `python -m tilld.cli.tillctl` as a subprocess against one
running daemon (a real tilld, no back-end, no devices) and checks the exit
code, what stdout says and that stderr is one plain line, never a traceback.
Then the parts that need a terminal: the question before a Z report or a
rollback acknowledgement, answered through a real pty, and colour.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, TillProcess

DEADLINE_S = 30


def tillctl(socket_path, *args, env=None, stdin=subprocess.DEVNULL):
    return subprocess.run(
        [sys.executable, "-m", "tilld.cli.tillctl", "--socket", str(socket_path), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        stdin=stdin,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def shared_till():
    base = Path(tempfile.mkdtemp(prefix="tilld-"))
    os.chmod(base, 0o755)
    till = TillProcess(base).start()
    client = till.client()
    sale = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale, plu="300")
    client.call("sale.pay", sale_id=sale, method="cash", amount=5000)  # receipt 1
    client.call("scan.submit", code="TK00000000DEMO1")
    client.close()
    yield till
    till.kill()


# (arguments, exit code, what stdout holds, what stderr holds)
CASES = [
    (["status"], 0, "mode           no-internet", ""),
    (["status", "--json"], 0, '"till_id": "till-test"', ""),
    (["--json", "status"], 0, '"till_id": "till-test"', ""),
    (["--version"], 0, "tillctl 0.1.0", ""),
    ([], 2, "", "required: COMMAND"),
    (["nonsense"], 2, "", "invalid choice"),
    (["pending"], 0, "oldest unsynced: sale receipt 1", ""),
    (["pending", "--type", "scan"], 0, "scan", ""),
    (["pending", "--limit", "0"], 2, "", "not between 1 and 1000"),
    (["pending", "--limit", "many"], 2, "", "not a whole number"),
    (["sync"], 1, "", "refused (no-backend)"),
    (["sync", "--wait", "--timeout", "1"], 1, "", "refused (no-backend)"),
    (["sync", "--wait", "--timeout", "-5"], 2, "", "not between 0 and 86400"),
    (["sync", "--wait", "--timeout", "soon"], 2, "", "not a number of seconds"),
    (["scans"], 0, "1 scan waiting to be registered", ""),
    (["scans", "--pending", "--code", "DEMO1"], 0, "TK00000000DEMO1", ""),
    (["scans", "--state", "lost"], 2, "", "invalid choice"),
    (["scans", "--pending", "--state", "registered"], 2, "", "not allowed with"),
    (["journal"], 2, "", "{verify,export,acknowledge-rollback}"),
    (["journal", "verify"], 0, "ok: 2 entries, hash chain intact", ""),
    (["journal", "export", "--format", "csv"], 0, "seq,", ""),
    (["journal", "export", "--since-seq", "-1"], 2, "", "not between"),
    (["journal", "export", "--receipt", "1"], 0, '"receipt_no":1,', ""),
    (["journal", "export", "--type", "scan", "--format", "csv"], 0, ",scan,", ""),
    (["journal", "export", "--receipt", "0"], 2, "", "not between"),
    (["journal", "acknowledge-rollback"], 2, "", "pass --yes"),
    (["journal", "acknowledge-rollback", "--yes"], 1, "", "refused ("),
    (["report", "x"], 0, "X report (the day so far)", ""),
    (["report", "y"], 2, "", "invalid choice"),
    (["report", "z"], 2, "", "pass --yes"),
    (["receipt"], 2, "", "{show,print}"),
    (["receipt", "show", "1"], 0, "Kvitto nr", ""),
    (["receipt", "show", "99"], 1, "", "refused (unknown-receipt)"),
    (["receipt", "show", "one"], 2, "", "not a whole number"),
    (["receipt", "print", "1"], 1, "", "refused (printer-not-configured)"),
    (["terminal"], 0, "none configured", ""),
    (["terminal", "flush"], 2, "", "pass --yes"),
    (["terminal", "flush", "--yes"], 0, "nothing sent: no card terminal", ""),
    (["terminal", "explode"], 2, "", "invalid choice"),
    (["devices"], 0, "no devices configured", ""),
    (["printer", "test"], 1, "", "refused (printer-not-configured)"),
    (["printer"], 2, "", "required: action"),
    (["drawer"], 1, "", "refused (printer-not-configured)"),
    (["logs", "-n", "3"], 0, "ready in", ""),  # TillProcess logs to tilld.log beside its socket
    (["watch", "weather"], 2, "", "invalid choice"),
    (["demo", "server", "down"], 1, "", "refused (not-a-demo)"),
    (["demo", "moon", "down"], 2, "", "invalid choice"),
    (["call"], 2, "", "required: method"),
    (["call", "status.get", "--get", "mode"], 0, "no-internet", ""),
    (["call", "status.get", "--get", "pending.entries"], 0, "2", ""),
    (["call", "sale.list", "--get", "sales.0.lines.0.ticket_codes.0"], 1, "", "has no '0'"),
    (["call", "status.get", "--get", "payment_methods.nothing"], 1, "", "its fields are"),
    (["call", "catalog.search", '{"query": '], 2, "", "bad params: not JSON"),
    (["call", "catalog.search", "limit:=five"], 2, "", "must be JSON"),
    (["call", "no.such.method"], 1, "", "error -32601"),
    (["call", "admin.report", "kind=z"], 2, "", "pass --yes"),
    (["completion", "bash"], 0, "complete -F _tillctl tillctl", ""),
    (["completion", "fish"], 2, "", "invalid choice"),
]


@pytest.mark.parametrize(("args", "code", "out", "err"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_every_subcommand_answers_plainly(shared_till, args, code, out, err):
    result = tillctl(shared_till.socket_path, *args)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert out in result.stdout, result.stdout
    assert err in result.stderr, result.stderr
    if code == 1 or code == 3:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("tillctl: "), result.stderr
    if "journal_command" in result.stderr or "params" in result.stderr.split(":")[-1]:
        pytest.fail(f"an internal name leaked: {result.stderr}")


def test_no_line_of_the_human_output_ends_in_a_space(shared_till):
    for args in (["status"], ["pending"], ["scans"], ["terminal"], ["report", "x"]):
        out = tillctl(shared_till.socket_path, *args).stdout
        assert out and not [line for line in out.splitlines() if line.endswith(" ")], args


def test_journal_export_filters_by_type_and_receipt(shared_till):
    lines = tillctl(shared_till.socket_path, "journal", "export", "--type", "scan").stdout
    assert [json.loads(line)["type"] for line in lines.splitlines()] == ["scan"]
    rows = tillctl(
        shared_till.socket_path, "journal", "export", "--format", "csv", "--receipt", "1"
    ).stdout.splitlines()
    assert rows[0].startswith("seq,uuid,type") and len(rows) == 2 and ",sale," in rows[1]


def test_pending_leaves_housekeeping_out_and_shows_kronor(shared_till):
    out = tillctl(shared_till.socket_path, "pending").stdout
    assert "35,00 kr" in out and "15000" not in out and ".000" not in out


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_socket_path_that_is_not_a_socket_says_so(tmp_path, kind):
    path = tmp_path / "thing"
    path.mkdir() if kind == "folder" else path.write_text("")
    result = tillctl(path, "status")
    assert result.returncode == 3
    assert f"is a {kind}, not tilld's socket" in result.stderr, result.stderr


# -- questions on a terminal --------------------------------------------------------------


def run_on_pty(socket_path, *args, answer: str, env=None) -> tuple[int, str]:
    """tillctl with a pty as stdin and stderr; answer its question once it is asked."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tilld.cli.tillctl", "--socket", str(socket_path), *args],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + DEADLINE_S
    try:
        while b"Type yes" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            if ready:
                seen += os.read(master, 4096)
        assert b"Type yes" in seen, seen
        os.write(master, answer.encode() + b"\n")
        out, _ = proc.communicate(timeout=DEADLINE_S)
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    return proc.returncode, seen.decode(errors="replace") + out.decode()


def test_a_z_report_asks_on_a_terminal_and_no_keeps_the_day_open(short_tmp):
    till = TillProcess(short_tmp).start()
    try:
        client = till.client()
        sale = client.call("sale.open")["sale_id"]
        client.call("sale.add", sale_id=sale, plu="300")
        client.call("sale.pay", sale_id=sale, method="cash", amount=3500)
        code, shown = run_on_pty(till.socket_path, "report", "z", answer="no")
        assert code == 2 and "close the fiscal day" in shown, shown
        assert client.call("admin.report", kind="x")["sales"] == 1  # still open
        code, shown = run_on_pty(till.socket_path, "report", "z", answer="yes")
        assert code == 0 and "Z report 1" in shown, shown
        assert client.call("admin.report", kind="x")["sales"] == 0  # closed
        client.close()
    finally:
        till.kill()


def test_piped_without_yes_a_z_report_is_refused_and_nothing_closes(short_tmp):
    till = TillProcess(short_tmp).start()
    try:
        client = till.client()
        sale = client.call("sale.open")["sale_id"]
        client.call("sale.add", sale_id=sale, plu="300")
        client.call("sale.pay", sale_id=sale, method="cash", amount=3500)
        result = tillctl(till.socket_path, "report", "z", stdin=subprocess.PIPE)
        assert result.returncode == 2 and "pass --yes" in result.stderr
        assert client.call("admin.report", kind="x")["sales"] == 1
        done = tillctl(till.socket_path, "report", "z", "--yes")
        assert done.returncode == 0 and done.stdout.startswith("Z report 1")
        client.close()
    finally:
        till.kill()


# -- colour ---------------------------------------------------------------------------------


def status_on_a_pty(socket_path, env) -> str:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tilld.cli.tillctl", "--socket", str(socket_path), "status"],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "TERM": "xterm", **env},
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the pty
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(DEADLINE_S) == 0
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    return out.decode()


def test_status_is_red_and_green_on_a_terminal_and_plain_otherwise(shared_till):
    env = {k: "" for k in ("NO_COLOR",)}
    coloured = status_on_a_pty(shared_till.socket_path, {})
    if os.environ.get("NO_COLOR"):
        pytest.skip("NO_COLOR is set for the whole test run")
    assert "\x1b[1;31mno-internet\x1b[0m" in coloured, coloured
    assert "\x1b[32mavailable\x1b[0m" in coloured, coloured
    plain = status_on_a_pty(shared_till.socket_path, {"NO_COLOR": "1"})
    assert "\x1b[" not in plain and "no-internet" in plain
    piped = tillctl(shared_till.socket_path, "status", env=env).stdout
    assert "\x1b[" not in piped and "no-internet" in piped


def test_watch_prints_one_timed_line_per_event(shared_till):
    watcher = subprocess.Popen(
        [sys.executable, "-m", "tilld.cli.tillctl", "watch", "scan",
         "--socket", str(shared_till.socket_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )  # fmt: skip
    try:
        assert watcher.stderr.readline().startswith("tillctl: watching scan")
        client = shared_till.client()
        client.call("scan.submit", code="TK00000000WATCH")
        client.close()
        line = watcher.stdout.readline()
        assert line[:8].count(":") == 2 and "scan" in line and "TK00000000WATCH" in line, line
        assert "{" not in line, line
    finally:
        watcher.terminate()
        watcher.wait(10)
    assert "Traceback" not in watcher.stderr.read()


def test_the_help_of_watch_names_every_topic():
    from tilld.events import TOPICS

    shown = subprocess.run(
        [sys.executable, "-m", "tilld.cli.tillctl", "watch", "--help"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    ).stdout  # fmt: skip
    assert "terminal" in TOPICS
    assert all(topic in shown for topic in TOPICS), shown


# -- rendering, as pure functions -------------------------------------------------------------


def test_ages_and_clock_times_read_at_a_glance():
    from datetime import datetime

    from tilld.cli.tillctl.render import age, clock

    now = datetime.fromisoformat("2026-11-27T14:30:00.000+01:00")
    assert age("2026-11-27T14:29:18.512+01:00", now) == "41 s"
    assert age("2026-11-27T14:23:00.000+01:00", now) == "7 min"
    assert age("2026-11-27T11:25:00.000+01:00", now) == "3 h 05 min"
    assert age("2026-11-25T10:00:00.000+01:00", now) == "2 d 4 h"
    assert clock("2026-11-27T14:29:18.512+01:00", now) == "14:29:18"
    assert clock("2026-11-26T09:05:00.000+01:00", now) == "2026-11-26 09:05"
    assert clock(None, now) == "-"


def test_a_till_still_probing_says_starting_rather_than_offline():
    from tilld.cli.tillctl.render import render_status

    shown = render_status(
        {
            "till_id": "t",
            "version": "0",
            "mode": "no-internet",
            "probing": True,
            "server": False,
            "internet": False,
            "pending": {"entries": 0, "tickets": 0, "scans": 0},
            "offline_card": {"stored": 0, "limit": 3},
            "payment_methods": {},
        }
    )
    assert "mode           starting (the first connectivity checks" in shown
    assert "no-internet" not in shown


def test_tillctl_imports_nothing_beyond_the_standard_library():
    """It runs for any user on the till's system Python, where tilld's dependencies are not."""
    probe = (
        "import sys, tilld.cli.tillctl, tilld.cli.tillctl.commands;"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60
    ).stdout.split()
    # The rest is how Python found tilld (an editable install's finder, site hooks).
    foreign = {m for m in loaded if m not in sys.stdlib_module_names} - {
        "tilld",
        "__main__",
        "sitecustomize",
        "_distutils_hack",
    }
    foreign = {m for m in foreign if not m.startswith("__editable__")}  # fmt: skip
    assert "tilld" in loaded and not foreign, foreign
