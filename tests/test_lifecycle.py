"""Starting and stopping the daemon: what systemd relies on.

SIGTERM answers what is in flight and loses no acknowledged sale; a state
directory the daemon cannot write stops it at once with exit code 73 and a
message that says what to do.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from os import EX_CANTCREAT

import pytest
from conftest import REPO, START_TIMEOUT, RpcError, TillProcess

SELLERS = 4


def test_sigterm_during_a_stream_of_sales_loses_no_acknowledged_sale(short_tmp):
    till = TillProcess(short_tmp).start()
    acknowledged: dict[str, int] = {}  # sale_id -> receipt_no, as the cashier was told
    refused: list[str] = []
    lock = threading.Lock()
    enough_sales = threading.Event()

    def sell_until_stopped() -> None:
        client = till.client()
        try:
            while True:
                try:
                    sale_id = client.call("sale.open")["sale_id"]
                    client.call("sale.add", sale_id=sale_id, plu="300")
                    paid = client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
                    with lock:
                        acknowledged[sale_id] = paid["receipt_no"]
                        if len(acknowledged) >= 40:
                            enough_sales.set()
                except RpcError as err:
                    with lock:
                        refused.append(err.reason)
        except (OSError, ConnectionError):
            return  # the daemon hung up after answering what was in flight

    sellers = [threading.Thread(target=sell_until_stopped) for _ in range(SELLERS)]
    for seller in sellers:
        seller.start()
    assert enough_sales.wait(30)
    till.proc.send_signal(signal.SIGTERM)
    assert till.proc.wait(15) == 0
    for seller in sellers:
        seller.join(15)
        assert not seller.is_alive()
    assert till.log().count("stopped") == 1
    assert set(refused) <= {"shutting-down"}
    assert not till.socket_path.exists()

    again = TillProcess(short_tmp).start()
    client = again.client()
    stored: dict[str, int] = {}
    since: int | None = 0
    while since is not None:
        page = client.call("admin.journal_export", since_seq=since, limit=10_000)
        for line in page["content"].splitlines():
            entry = json.loads(line)
            if entry["type"] == "sale":
                stored[entry["body"]["sale_id"]] = entry["body"]["receipt_no"]
        since = page["next_since_seq"]
    assert client.call("admin.journal_verify")["ok"]
    client.close()
    assert again.stop() == 0
    # Every sale a cashier was told is done is there, under the number it was told.
    assert {s: stored.get(s) for s in acknowledged} == acknowledged
    # One unbroken receipt series: nothing half-written at the stop.
    assert sorted(stored.values()) == list(range(1, len(stored) + 1))


def test_a_read_only_state_directory_exits_73_naming_it_and_the_fix(short_tmp):
    """The state directory exists but cannot be written (here: a read-only bind mount).

    The suite runs as root, which ignores file modes; a read-only mount in a
    private mount namespace (unshare -m) is refused to root as well, exactly as
    a full or read-only disk would be on a till.
    """
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    till = TillProcess(short_tmp)
    till.state_dir.mkdir()
    state = str(till.state_dir)
    script = (
        f'mount --bind "{state}" "{state}" && mount -o remount,bind,ro "{state}" && '
        f'exec "{sys.executable}" -m tilld.cli.daemon --config "{till.config_path}"'
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=START_TIMEOUT,
    )
    assert result.returncode == EX_CANTCREAT, result.stderr
    assert f"the state directory {state} is not writable" in result.stderr
    assert "chown tilld:" in result.stderr  # says what to do
    assert "<2>tilld: cannot start" in result.stderr  # critical, for journald
    assert "Traceback" not in result.stderr
    assert not till.socket_path.exists()
    assert list(till.state_dir.iterdir()) == []  # nothing was written
