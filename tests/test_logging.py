"""What journald receives: one prefixed line per event, at the right level, and no secrets.

systemd reads a leading ``<N>`` on each stderr line as its syslog priority
(sd-daemon(3)); a line without it would be filed at the unit's default level.
"""

from __future__ import annotations

import re
import signal

import pytest
from conftest import RpcError, TillProcess

LINE = re.compile(r"^<[2-7]>tilld(\.[a-z]+)*: \S.*$")
TERMINAL_PASSWORD = "947318"  # ZVT passwords are six digits
BACKEND_TOKEN = "tok-0815-secret"


def test_every_line_has_a_priority_and_names_no_secret(short_tmp):
    token_file = short_tmp / "backend.token"
    token_file.write_text(BACKEND_TOKEN + "\n")
    till = TillProcess(
        short_tmp,
        {
            # Port 9 (discard) refuses: the server probe fails and logs why.
            "backend": {"url": "http://127.0.0.1:9/", "token_file": str(token_file)},
            # A terminal that is not there: the driver logs its attempts.
            "devices.terminal": {
                "kind": "zvt-tcp",
                "address": "127.0.0.1:9",
                "password": TERMINAL_PASSWORD,
            },
        },
    ).start()
    client = till.client()
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu="300")
    with pytest.raises(RpcError):
        client.call("sale.pay", sale_id=sale_id, method="card", amount=3500)
    client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
    # A reload with an invalid key and the password: the error names the key only.
    config = till.config_path.read_text()
    till.config_path.write_text(config + "[card]\noffline_limit = -1\n")
    with pytest.raises(RpcError):
        client.call("admin.reload")
    client.close()
    till.proc.send_signal(signal.SIGTERM)
    assert till.proc.wait(15) == 0
    log = till.log()

    lines = log.splitlines()
    assert len(lines) >= 8, log
    unprefixed = [line for line in lines if not LINE.match(line)]
    assert not unprefixed, unprefixed
    assert any(line.startswith("<3>tilld.reload: ") for line in lines), log  # the bad reload
    assert any(line.startswith("<6>tilld: till till-test ready in ") for line in lines), log
    assert TERMINAL_PASSWORD not in log and BACKEND_TOKEN not in log
