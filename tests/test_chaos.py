"""Back-end chaos and SIGKILLs during sync: at the end, everything is delivered exactly once.

`TILLD_CHAOS_S` sets how long the mixed faults last (default 20 s; `make
test-long` runs minutes) and `TILLD_SYNC_KILLS` how many times the daemon is
killed while it drains (default 15).
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from conftest import TillProcess
from sims import wait_for
from test_bulk_sync import batch
from test_outage import TILL, Site, drained, site  # noqa: F401 - the site fixture

CHAOS_S = float(os.environ.get("TILLD_CHAOS_S", "20"))
SYNC_KILLS = int(os.environ.get("TILLD_SYNC_KILLS", "15"))
FAULTS = [
    ("pass", {}),
    ("refuse", {}),
    ("blackhole", {}),
    ("reset", {"after_bytes": 40}),
    ("reset", {"after_bytes": 400}),
    ("slow", {"delay_s": 1.5}),
    ("http500", {}),
]


def check_delivered_exactly_once(where: Site, entries: int, scans: int) -> None:
    stored = where.backend.journal(TILL)
    assert [e["seq"] for e in stored] == list(range(1, entries + 1))
    assert len({e["uuid"] for e in stored}) == entries
    stats = where.backend.stats()["tills"][TILL]
    assert stats["entries"] == entries and stats["entries.rejected"] == 0
    assert stats["scans"] == scans
    local = where.client.call("admin.journal_verify")
    assert local == {"ok": True, "entries": entries, "integrity": {"state": "ok"}}
    receipts = [e["body"]["receipt_no"] for e in stored if e["type"] == "sale"]
    assert receipts == list(range(1, len(receipts) + 1))


@pytest.mark.timeout(int(CHAOS_S) + 300)
def test_mixed_backend_faults_while_selling_and_scanning_deliver_everything_once(
    site,  # noqa: F811
    reliability,
) -> None:
    rng = random.Random(os.environ.get("TILLD_CHAOS_SEED", "chaos"))
    stop = threading.Event()
    switches: list[str] = []

    def chaos() -> None:
        while not stop.is_set():
            mode, options = rng.choice(FAULTS)
            site.server.set_mode(mode, **options)
            switches.append(mode)
            stop.wait(rng.uniform(0.2, 1.5))

    thread = threading.Thread(target=chaos, name="chaos")
    thread.start()
    sold: list[str] = []
    scans = 0
    deadline = time.monotonic() + CHAOS_S
    try:
        while time.monotonic() < deadline:
            sale_id = site.client.call("sale.open")["sale_id"]
            site.client.call("sale.add", sale_id=sale_id, plu=rng.choice(["100", "300", "401"]))
            total = site.client.call("sale.get", sale_id=sale_id)["total"]
            reply = site.client.call("sale.pay", sale_id=sale_id, method="cash", amount=total)
            sold += [c for line in reply["sale"]["lines"] for c in line.get("ticket_codes", [])]
            if sold and rng.random() < 0.5:
                site.client.call("scan.submit", code=rng.choice(sold))
                scans += 1
    finally:
        stop.set()
        thread.join()
    site.server.set_mode("pass")
    wait_for(lambda: drained(site), timeout=120, interval=0.2, what="drained after chaos")
    assert len(set(switches)) >= 4, switches  # the faults really were mixed
    entries = site.client.call("status.get")["journal"]["last_seq"]
    reliability.record(
        "back-end faults",
        f"mixed back-end faults for {CHAOS_S:.0f} s while selling and scanning",
        tries=len(switches),
        figure=f"{entries} entries and {scans} scans delivered, each once",
    )
    assert entries > 20
    check_delivered_exactly_once(site, entries, scans)


@pytest.mark.timeout(600 + 3 * SYNC_KILLS)
def test_sigkill_while_draining_loses_and_doubles_nothing(site, reliability) -> None:  # noqa: F811
    rng = random.Random(os.environ.get("TILLD_CHAOS_SEED", "kills"))
    site.server.set_mode("refuse")
    site.wait_mode("server-unreachable")
    # Enough 20-entry batches that every kill lands in the middle of the drain.
    n = max(2000, 40 * SYNC_KILLS) // 100 * 100
    for _ in range(n // 100):
        ids = [r["sale_id"] for r in batch(site.client, [("sale.open", {})] * 100)]
        batch(site.client, [("sale.add", {"sale_id": s, "plu": "300"}) for s in ids])
        batch(
            site.client,
            [("sale.pay", {"sale_id": s, "method": "cash", "amount": 3500}) for s in ids],
        )
    scans = 300
    for start in range(0, scans, 100):
        batch(
            site.client,
            [("scan.submit", {"code": f"TKKILL{k:08d}"}) for k in range(start, start + 100)],
        )
    # Small batches and a slow link make the drain long enough to kill it many times.
    site.restart_till(sync={"batch_size": 20})
    site.server.set_mode("slow", delay_s=0.05)
    kills = 0
    while kills < SYNC_KILLS:
        time.sleep(rng.uniform(0.05, 0.6))
        site.till.kill()
        kills += 1
        config = site.till.config
        site.till = TillProcess(site.till.base, config).start()
        site.till.config = config
        site.client = site.till.client()
        if drained(site):
            break
    site.server.set_mode("pass")
    wait_for(lambda: drained(site), timeout=120, interval=0.2, what="drained after kills")
    reliability.record(
        "durability",
        f"SIGKILL while draining {n} entries and {scans} scans to the back-end",
        tries=kills,
        figure="nothing lost or doubled at the back-end",
    )
    assert kills >= min(SYNC_KILLS, 5), f"the drain finished after only {kills} kills"
    # Every scan is a journal entry too.
    check_delivered_exactly_once(site, n + scans, scans)
