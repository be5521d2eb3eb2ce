"""The outage routine end to end: a real back-end behind a fault proxy, the till as a process."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

import journal_rows
import pytest
from conftest import Client, RpcError, TillProcess
from sims import Backend, Proxy, online_config, wait_for
from test_card_payments import build_site, pay_card

TILL = "till-test"


@dataclass
class Site:
    backend: Backend
    server: Proxy
    internet: Proxy
    till: TillProcess
    client: Client

    def status(self) -> dict:
        return self.client.call("status.get")

    def mode(self) -> str:
        return self.status()["mode"]

    def wait_mode(self, mode: str, timeout: float = 20) -> None:
        wait_for(lambda: self.mode() == mode, timeout, what=f"mode {mode}")

    def restart_till(self, **overrides: dict) -> None:
        self.client.close()
        self.till.kill()
        config = {k: {**v, **overrides.get(k, {})} for k, v in self.till.config.items()}
        self.till = TillProcess(self.till.base, config).start()
        self.till.config = config
        self.client = self.till.client()


@pytest.fixture
def site(short_tmp):
    backend = Backend(short_tmp)
    server = Proxy(short_tmp, "server", backend.address)
    internet = Proxy(short_tmp, "internet", None)
    config = online_config(backend, server, internet)
    till = TillProcess(short_tmp, config).start()
    till.config = config
    s = Site(backend, server, internet, till, till.client())
    s.wait_mode("online")
    yield s
    s.client.close()
    s.till.kill()  # the till the test left running, restarted or not
    for p in (internet, server, backend):
        p.stop()


def sell(client: Client, plu: str = "300", method: str = "cash") -> dict:
    sale_id = client.call("sale.open")["sale_id"]
    client.call("sale.add", sale_id=sale_id, plu=plu)
    total = client.call("sale.get", sale_id=sale_id)["total"]
    return client.call("sale.pay", sale_id=sale_id, method=method, amount=total)


def drained(site: Site) -> bool:
    pending = site.status()["pending"]
    return pending["entries"] == 0 and pending["scans"] == 0


# -- connectivity ------------------------------------------------------------


def test_server_down_and_back_changes_the_mode_with_events_and_no_restart(site):
    listener = site.till.client()
    listener.call("events.subscribe", topics=["mode"])
    site.server.set_mode("refuse")
    event = listener.next_event()
    assert (event["mode"], event["server"], event["internet"]) == (
        "server-unreachable",
        False,
        True,
    )
    assert event["last_error"]["server"]
    status = site.status()
    assert status["mode"] == "server-unreachable" and status["mode_since"]
    site.server.set_mode("pass")
    assert listener.next_event()["mode"] == "online"
    listener.close()


def test_black_holed_server_is_noticed_through_probe_timeouts(site):
    site.server.set_mode("blackhole")
    site.wait_mode("server-unreachable")
    assert "timed out" in site.status()["last_error"]["server"]
    site.server.set_mode("pass")
    site.wait_mode("online")


def card_status(status: dict) -> tuple[dict, dict]:
    """Card's availability, and the offline count and its limit (the budget has more)."""
    offline = status["offline_card"]
    return status["payment_methods"]["card"], {k: offline[k] for k in ("stored", "limit")}


def test_internet_down_is_no_internet_and_card_rules_switch_to_offline(short_tmp):
    """Without the internet a card is taken offline: allowed brands only, up to the limit.

    The rules (tilld/rules.py, docs/api.md) as the cashier sees them: in
    status.get's `payment_methods` and `offline_card`, and in real refusals
    of a card read by the terminal simulator.
    """
    site = build_site(short_tmp, offline_limit=1)  # online, terminal ready, Visa on the terminal
    try:
        card, offline = card_status(site.status())
        assert card == {"available": True} and offline == {"stored": 0, "limit": 1}

        site.internet_down()  # the internet proxy refuses; the terminal cannot authorise
        status = site.status()
        assert (status["mode"], status["server"], status["internet"]) == (
            "server-only",
            True,
            False,
        )
        # Offline, under the limit: card is still offered (the brand is not known
        # until the terminal reads the card), integrated Swish too (it needs the server).
        assert card_status(status) == ({"available": True}, {"stored": 0, "limit": 1})
        assert status["payment_methods"]["swish"] == {"available": True}

        site.terminal.set(brand="maestro")  # not in card.offline_brands
        with pytest.raises(RpcError) as online_only:
            pay_card(site.client)
        assert online_only.value.reason == "card-brand-online-only"
        # The message tells the cashier which brands do work offline.
        assert "mastercard, visa" in online_only.value.error["data"]["message"]
        assert site.status()["offline_card"]["stored"] == 0  # a refusal is not counted

        site.terminal.set(brand="visa")
        paid = pay_card(site.client)
        assert paid["status"] == "completed" and paid["card"]["offline"] is True
        card, offline = card_status(site.status())
        assert offline == {"stored": 1, "limit": 1}
        assert site.status()["offline_card"]["stored_amount"] == paid["sale"]["total"]
        assert (card["available"], card["reason"]) == (False, "offline-card-limit-reached")
        assert card["message"]
        with pytest.raises(RpcError) as over_limit:
            pay_card(site.client)  # refused before the terminal sees the card
        assert over_limit.value.reason == "offline-card-limit-reached"
        assert over_limit.value.error["data"]["limit"] == 1

        site.server.set_mode("refuse")
        site.wait_mode("no-internet")
        status = site.status()
        assert status["payment_methods"]["card"]["reason"] == "offline-card-limit-reached"
        assert status["payment_methods"]["swish"]["reason"] == "method-unavailable-offline"
        assert status["payment_methods"]["cash"] == {"available": True}

        site.terminal.set(online=True)
        site.internet.set_mode("pass")
        site.wait_mode("server-unreachable")
        # The internet is back: cards are authorised online again, whatever the count.
        assert site.status()["payment_methods"]["card"] == {"available": True}
        site.terminal.set(brand="maestro")
        assert pay_card(site.client)["card"]["offline"] is False
    finally:
        site.client.close()
        site.till.kill()
        for sim in (site.terminal, site.internet, site.server, site.backend):
            sim.stop()


def test_server_errors_count_as_unreachable(site):
    site.server.set_mode("http500")
    site.wait_mode("server-unreachable")
    site.server.set_mode("pass")
    site.wait_mode("online")


# -- selling by the rules ------------------------------------------------------


def test_offline_sales_sync_exactly_once_when_the_server_returns(site):
    site.server.set_mode("refuse")
    site.wait_mode("server-unreachable")
    receipts = [sell(site.client)["receipt_no"] for _ in range(30)]
    assert receipts == list(range(1, 31))
    assert site.status()["pending"]["entries"] == 30
    site.server.set_mode("pass")
    wait_for(lambda: drained(site), what="sync drained")
    stored = site.backend.journal(TILL)
    assert [e["seq"] for e in stored] == list(range(1, 31))
    assert [e["body"]["receipt_no"] for e in stored] == receipts
    assert site.client.call("sync.pending")["entries"] == []


def test_ticket_sold_offline_is_pending_until_synced_then_valid(site):
    site.server.set_mode("refuse")
    site.wait_mode("server-unreachable")
    code = sell(site.client, plu="100")["sale"]["lines"][0]["ticket_codes"][0]
    assert [t["code"] for t in site.client.call("sync.pending")["tickets"]] == [code]
    site.server.set_mode("pass")
    wait_for(lambda: site.status()["pending"]["tickets"] == 0, what="ticket synced")
    assert site.backend.ticket(code)["state"] == "valid"


def test_event_ticket_online_reserves_and_offline_names_the_fallback(site):
    sale_id = site.client.call("sale.open")["sale_id"]
    line = site.client.call("sale.add", sale_id=sale_id, plu="200", quantity=2)
    added = line["sale"]["lines"][0]
    assert added["event_id"] == "ev-7" and len(added["reservation_ids"]) == 1
    site.server.set_mode("refuse")
    site.wait_mode("server-unreachable")
    other = site.client.call("sale.open")["sale_id"]
    with pytest.raises(RpcError) as refused:
        site.client.call("sale.add", sale_id=other, plu="200")
    assert refused.value.reason == "event-ticket-offline"
    assert refused.value.error["data"]["fallback_plu"] == "100"


def test_integrated_swish_online_is_followed_until_paid(site):
    sale_id = site.client.call("sale.open")["sale_id"]
    site.client.call("sale.add", sale_id=sale_id, plu="401")
    listener = site.till.client()
    listener.call("events.subscribe", topics=["sale"])
    started = site.client.call("sale.pay", sale_id=sale_id, method="swish", amount=24900)
    assert started["status"] == "pending" and started["swish"]["token"]
    site.backend.request("POST", f"/control/swish/{started['swish']['id']}", {"status": "PAID"})
    payment = listener.next_event()
    assert (payment["event"], payment["swish_status"]) == ("payment", "PAID")
    completed = listener.next_event()
    assert completed["event"] == "completed" and completed["sale_id"] == sale_id
    listener.close()


def test_integrated_swish_refused_offline_with_the_contract_reason(site):
    site.server.set_mode("refuse")
    site.wait_mode("server-unreachable")
    sale_id = site.client.call("sale.open")["sale_id"]
    site.client.call("sale.add", sale_id=sale_id, plu="300")
    with pytest.raises(RpcError) as refused:
        site.client.call("sale.pay", sale_id=sale_id, method="swish", amount=3500)
    assert refused.value.reason == "method-unavailable-offline"


# -- scans ---------------------------------------------------------------------


def test_online_scan_is_registered_at_once_and_a_second_is_already_used(site):
    code = sell(site.client, plu="100")["sale"]["lines"][0]["ticket_codes"][0]
    wait_for(lambda: drained(site), what="sale synced")
    first = site.client.call("scan.submit", code=code)
    assert (first["kind"], first["status"]) == ("ticket", "registered")
    second = site.client.call("scan.submit", code=code)
    assert second["status"] == "already-used" and second["detail"]


def test_offline_scans_are_captured_checked_locally_and_replayed_in_order(site):
    site.server.set_mode("refuse")
    site.wait_mode("server-unreachable")
    code = sell(site.client, plu="100")["sale"]["lines"][0]["ticket_codes"][0]
    first = site.client.call("scan.submit", code=code)
    assert (first["status"], first["local_check"]) == ("captured", "sold-here")
    again = site.client.call("scan.submit", code=code)
    assert (again["status"], again["local_check"]) == ("captured", "already-scanned")
    stranger = site.client.call("scan.submit", code="TKNOSUCHTICKET01")
    assert stranger["local_check"] == "not-known-locally"
    article = site.client.call("scan.submit", code="7310000000001")
    assert article["kind"] == "article" and article["article"]["plu"] == "300"
    assert site.client.call("scan.submit", code="hello")["kind"] == "unknown"
    assert site.status()["pending"]["scans"] == 3
    site.server.set_mode("pass")
    wait_for(lambda: drained(site), what="scans replayed")
    scans = site.client.call("scans.list")["scans"]
    by_seq = sorted(scans, key=lambda s: s["seq"])
    assert [s["state"] for s in by_seq] == ["registered", "already-used", "unknown"]
    assert by_seq[0]["scanned_at"] == first["scanned_at"]


# -- durability across crashes --------------------------------------------------------


def test_crash_while_offline_restarts_from_cache_and_keeps_selling(site):
    site.server.set_mode("refuse")
    site.wait_mode("server-unreachable")
    before = [sell(site.client)["receipt_no"] for _ in range(5)]
    site.restart_till()
    log = site.till.log()
    ready = re.findall(r"ready in (\d+) ms", log)
    assert ready, log
    status = site.status()
    assert status["mode"] != "online" and status["catalog"]["articles"] > 0
    assert sell(site.client)["receipt_no"] == before[-1] + 1
    site.server.set_mode("pass")
    wait_for(lambda: drained(site), what="sync after restart")
    assert len(site.backend.journal(TILL)) == 6


def test_kill_between_sending_a_batch_and_recording_results_causes_no_duplicate(site):
    site.server.set_mode("refuse")
    site.wait_mode("server-unreachable")
    for _ in range(10):
        sell(site.client)
    # Every byte through the proxy now takes 1.5 s each way, and the till is
    # patient enough to see the server through it: the back-end stores the
    # batch, its answer is on the way back, and the till dies before it arrives.
    site.server.set_mode("slow", delay_s=1.5)
    site.restart_till(
        backend={"timeout_s": 10}, connectivity={"probe_timeout_s": 5, "probe_interval_s": 0.2}
    )
    wait_for(lambda: len(site.backend.journal(TILL)) == 10, what="batch stored at back-end")
    site.till.kill()
    db = sqlite3.connect(site.till.state_dir / "journal.sqlite")
    assert db.execute("SELECT count(*) FROM sync_results").fetchone()[0] == 0
    db.close()
    site.server.set_mode("pass")
    site.restart_till()
    wait_for(lambda: drained(site), what="resend after restart")
    stored = site.backend.journal(TILL)
    assert [e["seq"] for e in stored] == list(range(1, 11))
    db = sqlite3.connect(site.till.state_dir / "journal.sqlite")
    statuses = dict(db.execute("SELECT status, count(*) FROM sync_results GROUP BY status"))
    db.close()
    assert statuses == {"duplicate": 10}


def _second_of_three_offline_sales_changed(site, body_sql: str) -> None:
    """Three sales while the server is gone; then, tilld killed, the second's
    stored body is set to ``body_sql`` (an editor's hand, a disk's fault) and
    tilld started again."""
    site.server.set_mode("refuse")
    site.wait_mode("server-unreachable")
    for _ in range(3):
        sell(site.client)
    site.client.close()
    site.till.kill()
    db = journal_rows.connect(site.till.state_dir / "journal.sqlite")
    db.execute("DROP TRIGGER entries_no_update")
    db.execute(f"UPDATE entries SET body = {body_sql} WHERE seq = 2")
    db.commit()
    db.close()
    site.till = TillProcess(site.till.base, site.till.config).start()
    site.client = site.till.client()


def test_rejected_entry_stays_visible_and_does_not_block_later_ones(site):
    _second_of_three_offline_sales_changed(site, "replace(body_text(body), '3500', '1')")
    sell(site.client)
    site.server.set_mode("pass")
    wait_for(lambda: site.status()["sync"]["unsent"] == 0, what="drained past the rejected one")
    pending = site.client.call("sync.pending")
    assert [(e["seq"], e["sync_status"]) for e in pending["entries"]] == [(2, "rejected")]
    assert pending["entries"][0]["sync_reason"]
    stored = [e["seq"] for e in site.backend.journal(TILL)]
    assert 1 in stored and 4 in stored and 2 not in stored


def test_an_entry_damaged_on_disk_stops_sync_before_it_and_says_which(site):
    _second_of_three_offline_sales_changed(site, "X'01FFFFFFFF'")  # no deflate stream in it
    site.server.set_mode("pass")

    def last_error() -> str:
        return site.status()["sync"]["last_error"] or ""

    wait_for(lambda: "journal entry 2 (sale)" in last_error(), what="the damaged entry named")
    assert "tillctl journal verify" in last_error()
    # What comes before it is sent; nothing from it on.
    wait_for(lambda: [e["seq"] for e in site.backend.journal(TILL)] == [1], what="entry 1 sent")
    assert site.status()["sync"]["unsent"] == 2
    assert "<2>tilld.sync: sync stopped: journal entry 2 (sale)" in site.till.log()


def test_wrong_token_is_a_configuration_problem_shown_in_status_not_an_outage(site):
    site.server.set_mode("http401")
    sell(site.client)
    wait_for(
        lambda: "401" in (site.status()["sync"]["last_error"] or ""), what="401 in sync status"
    )
    assert site.status()["server"] is True  # the server answered: it is reachable
    assert site.status()["pending"]["entries"] == 1
    site.server.set_mode("pass")
    wait_for(lambda: drained(site), what="drained once the token is accepted")


def test_responses_reset_mid_way_are_retried_without_duplicates(site):
    # The back-end stores what it is sent but the answers are cut off: the till
    # cannot know, marks the server unreachable, and sends the same uuids again.
    # Only the sales' own batches may meet the resets: a catalog refresh or the
    # start's first sync cut off first would take the server down before any
    # sale is sent, and the case would not be tried at all.
    site.restart_till(sync={"catalog_refresh_s": 3600})
    site.wait_mode("online")
    assert site.client.call("admin.sync_now", wait=True, timeout_s=20)["drained"]
    site.server.set_mode("reset", after_bytes=10)
    for _ in range(20):
        sell(site.client)
    wait_for(lambda: site.backend.journal(TILL), what="an entry stored despite the resets")
    site.server.set_mode("pass")
    wait_for(lambda: drained(site), what="drained after the resets")
    assert [e["seq"] for e in site.backend.journal(TILL)] == list(range(1, 21))
    till_stats = site.backend.stats()["tills"][TILL]
    assert till_stats["entries"] == 20 and till_stats["entries.rejected"] == 0
    assert till_stats["entries.duplicate"] >= 1


def test_a_ticket_refunded_before_it_synced_is_no_longer_pending(site):
    site.server.set_mode("refuse")
    site.wait_mode("server-unreachable")
    sell(site.client, plu="100")  # kept: pending until the server has it
    refunded = sell(site.client, plu="100")
    assert site.status()["pending"]["tickets"] == 2
    site.client.call("sale.refund", receipt_no=refunded["receipt_no"], method="cash")
    assert site.status()["pending"]["tickets"] == 1
    site.server.set_mode("pass")
    wait_for(lambda: site.status()["pending"]["entries"] == 0, 30, what="drained")
    assert site.status()["pending"]["tickets"] == 0
    site.restart_till()  # counted from the journal: the same answer
    assert site.status()["pending"]["tickets"] == 0
