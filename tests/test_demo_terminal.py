"""`tilld demo --terminal nexo`: the demo sells by card through the nexo simulator,
and shows the offline budget's amount cap when its internet is down."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, Client, RpcError
from sims import wait_for


def test_the_demo_takes_a_card_through_the_nexo_terminal(short_tmp: Path) -> None:
    argv = ["-m", "tilld.cli.daemon", "demo", "--state-dir", str(short_tmp / "d")]
    demo = subprocess.Popen(
        [sys.executable, *argv, "--terminal", "nexo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    try:
        announced: dict[str, str] = {}
        while "socket" not in announced:
            line = demo.stdout.readline()
            assert line, "the demo exited before announcing socket="
            key, _, value = line.strip().partition("=")
            announced[key] = value
        client = Client(Path(announced["socket"]))
        try:
            wait_for(
                lambda: client.call("status.get")["payment_methods"]["card"]["available"],
                30,
                what="the demo's card terminal",
            )
            assert client.call("status.get")["devices"]["terminal"]["kind"] == "NexoTerminal"
            sale_id = client.call("sale.open")["sale_id"]
            client.call("sale.add", sale_id=sale_id, plu="300")
            total = client.call("sale.get", sale_id=sale_id)["total"]
            paid = client.call("sale.pay", sale_id=sale_id, method="card", amount=total)
            assert paid["status"] == "completed" and paid["card"]["brand"] == "visa"
            # `tillctl demo internet down`, then a card payment over the
            # demo's 500 kr offline cap is refused before the terminal.
            client.call("demo.set", target="internet", state="down")
            wait_for(
                lambda: client.call("status.get")["internet"] is False,
                30,
                what="the demo's internet down",
            )
            # Card stays open offline (nothing stored yet); the cap is per payment.
            wait_for(
                lambda: client.call("status.get")["payment_methods"]["card"]["available"],
                30,
                what="card payments open offline",
            )
            big = client.call("sale.open")["sale_id"]
            client.call("sale.add", sale_id=big, plu="300", quantity=20)
            amount = client.call("sale.get", sale_id=big)["total"]
            assert amount > 50_000
            with pytest.raises(RpcError) as refused:
                client.call("sale.pay", sale_id=big, method="card", amount=amount)
            assert refused.value.reason == "offline-card-amount-limit"
            assert refused.value.error["data"]["limit"] == 50_000
        finally:
            client.close()
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(30)
        demo.stdout.close()
