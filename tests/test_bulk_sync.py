"""Ten thousand sales and ten thousand scans made offline all arrive exactly once."""

from __future__ import annotations

import json
import time

from conftest import Client
from sims import wait_for
from test_outage import TILL, drained, site  # noqa: F401 - the site fixture

N = 10_000
BATCH = 100


def batch(client: Client, calls: list[tuple[str, dict]]) -> list[dict]:
    """One JSON-RPC batch on one line: the daemon still journals each call on its own."""
    requests = [
        {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
        for i, (method, params) in enumerate(calls)
    ]
    client.send_raw(json.dumps(requests).encode() + b"\n")
    replies = sorted(client.read(), key=lambda r: r["id"])
    errors = [r for r in replies if "error" in r]
    assert not errors, errors[:3]
    return [r["result"] for r in replies]


def test_ten_thousand_offline_entries_and_scans_are_delivered_exactly_once(site):  # noqa: F811
    site.server.set_mode("refuse")
    site.wait_mode("server-unreachable")
    client = site.client
    for _ in range(N // BATCH):
        ids = [r["sale_id"] for r in batch(client, [("sale.open", {})] * BATCH)]
        batch(client, [("sale.add", {"sale_id": s, "plu": "300"}) for s in ids])
        paid = batch(
            client, [("sale.pay", {"sale_id": s, "method": "cash", "amount": 3500}) for s in ids]
        )
        assert all(p["status"] == "completed" for p in paid)
    for start in range(0, N, BATCH):
        scans = batch(
            client,
            [("scan.submit", {"code": f"TKBULK{n:08d}"}) for n in range(start, start + BATCH)],
        )
        assert all(s["status"] == "captured" for s in scans)
    status = site.status()
    assert status["pending"]["entries"] == 2 * N and status["pending"]["scans"] == N

    began = time.monotonic()
    site.server.set_mode("pass")
    wait_for(lambda: drained(site), timeout=300, interval=0.2, what="20,000 entries drained")
    seconds = time.monotonic() - began
    print(f"\ndrained {2 * N} entries and {N} scans in {seconds:.1f} s")

    stats = site.backend.stats()
    till_stats = stats["tills"][TILL]
    assert till_stats["entries"] == 2 * N and till_stats["head_seq"] == 2 * N
    assert till_stats["entries.duplicate"] == 0 and till_stats["entries.rejected"] == 0
    assert till_stats["scans"] == N and till_stats["scans.repeated"] == 0
    stored = site.backend.journal(TILL)
    assert [e["seq"] for e in stored] == list(range(1, 2 * N + 1))
    receipts = [e["body"]["receipt_no"] for e in stored if e["type"] == "sale"]
    assert receipts == list(range(1, N + 1))
    assert client.call("admin.journal_verify") == {
        "ok": True,
        "entries": 2 * N,
        "integrity": {"state": "ok"},
    }
    scans = client.call("scans.list", limit=N)["scans"]
    assert len(scans) == N and {s["state"] for s in scans} == {"unknown"}
