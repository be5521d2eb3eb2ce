"""Stopping the daemon: SIGTERM answers what is in flight and loses no acknowledged sale."""

from __future__ import annotations

import signal
import sqlite3
import threading

from conftest import RpcError, TillProcess


def test_sigterm_during_a_stream_of_sales_loses_no_acknowledged_sale(short_tmp):
    till = TillProcess(short_tmp).start()
    acknowledged: list[str] = []
    refused: list[str] = []
    first_sales = threading.Event()

    def sell_until_stopped() -> None:
        client = till.client()
        try:
            while True:
                try:
                    sale_id = client.call("sale.open")["sale_id"]
                    client.call("sale.add", sale_id=sale_id, plu="300")
                    client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
                    acknowledged.append(sale_id)
                    if len(acknowledged) >= 20:
                        first_sales.set()
                except RpcError as err:
                    refused.append(err.reason)
        except (OSError, ConnectionError):
            return  # the daemon hung up after answering what was in flight

    seller = threading.Thread(target=sell_until_stopped)
    seller.start()
    assert first_sales.wait(30)
    till.proc.send_signal(signal.SIGTERM)
    assert till.proc.wait(15) == 0
    seller.join(15)
    assert till.log().count("stopped") == 1
    assert set(refused) <= {"shutting-down"}
    db = sqlite3.connect(till.state_dir / "journal.sqlite")
    stored = {
        sale_id
        for (sale_id,) in db.execute(
            "SELECT json_extract(body, '$.sale_id') FROM entries WHERE type = 'sale'"
        )
    }
    db.close()
    assert set(acknowledged) <= stored
    assert not till.socket_path.exists()
