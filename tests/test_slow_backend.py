"""A back-end that answers every request, slowly, is not an outage.

The till runs as a subprocess on its DEFAULT connectivity settings against the
reference back-end started with ``--answer-delay 0.2 0.9`` (every request,
health probes included, waits 0.2-0.9 s for its answer), behind the fault
proxy on a 50 ms round trip. The test runs for a number of probes, not a
time: until the back-end has answered PROBES health probes slowly, which the
default probe interval makes some twenty seconds. Meanwhile sales are synced
through the same slow back-end. The mode must not change once.

docs/benchmarks.md has the ten-minute run of the same (tests/bench/slow_backend.py).
"""

from __future__ import annotations

from conftest import TillProcess
from sims import Backend, Proxy, wait_for

from tilld.config import ConnectivitySection

PROBES = 40
SLOW = ("--answer-delay", "0.2", "0.9")
LONG_LINK = {"up_s": 0.025, "down_s": 0.025, "jitter_s": 0.005}


def slow_answers(backend: Backend) -> dict:
    return backend.request("GET", "/control/slow")


def test_a_slow_back_end_never_changes_the_mode(short_tmp):
    defaults = ConnectivitySection()
    backend = Backend(short_tmp, None, *SLOW)
    server = Proxy(short_tmp, "server", backend.address)
    server.set_mode("latency", **LONG_LINK)
    till = TillProcess(
        short_tmp,
        {"backend": {"url": f"http://{server.address}", "token_file": str(backend.token_file)}},
    ).start()
    try:
        client = till.client()
        wait_for(lambda: client.call("status.get")["mode"] == "online", 30, what="online")
        since = client.call("status.get")["mode_since"]
        listener = till.client()
        listener.call("events.subscribe", topics=["mode", "sale"])
        sale_ids = []
        for _ in range(5):
            sale_id = client.call("sale.open")["sale_id"]
            client.call("sale.add", sale_id=sale_id, plu="300")
            client.call("sale.pay", sale_id=sale_id, method="cash", amount=3500)
            sale_ids.append(sale_id)
        # The probe interval sets the pace: PROBES answered take PROBES intervals and more.
        wait_for(
            lambda: slow_answers(backend)["answered"].get("/v1/health", 0) >= PROBES,
            timeout=PROBES * (defaults.probe_interval_s + 0.9) + 30,
            interval=0.2,
            what=f"{PROBES} slow health answers",
        )
        wait_for(
            lambda: client.call("status.get")["pending"]["entries"] == 0,
            timeout=60,
            what="the sales synced through the slow back-end",
        )
        # A last sale marks the end of the run: every event before it has been read then.
        marker = client.call("sale.open")["sale_id"]
        seen = []
        while True:
            event = listener.next_event()
            seen.append(event)
            if event["topic"] == "sale" and event.get("sale_id") == marker:
                break
        client.call("sale.void", sale_id=marker, reason="end of the test run")
        status = client.call("status.get")
        slow = slow_answers(backend)
    finally:
        till.stop()
        server.stop()
        backend.stop()
    assert [e for e in seen if e["topic"] == "mode"] == []
    assert status["mode"] == "online" and status["mode_since"] == since
    # The back-end really was slow, for probes and for the sync alike.
    assert slow["quickest_s"] >= 0.2 and slow["answered"]["/v1/tills/till-test/journal"] >= 1
    assert slow["answered"]["/v1/health"] >= PROBES
