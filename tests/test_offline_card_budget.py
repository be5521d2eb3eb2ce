"""The offline card risk budget end to end: one payment's amount, the sum stored, the oldest's age.

Without internet the terminal approves offline and stores the payment; the
venue has not got that money yet. tilld refuses, before the terminal sees
the card, what would take the stored risk past the configured budget, and
resets the budget only from what the terminal reports after forwarding.
The till is a process, the terminal the ZVT or the nexo simulator on real TCP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Client, RpcError
from sims import wait_for
from test_card_payments import PROTOCOLS, CardSite, approved, build_site, open_sale


@pytest.fixture(params=PROTOCOLS)
def sites(short_tmp: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    built: list[CardSite] = []

    def build(**card: Any) -> CardSite:
        site = build_site(short_tmp, protocol=request.param, **card)
        built.append(site)
        return site

    yield build
    for site in built:
        site.client.close()
        site.till.kill()
        for sim in (site.terminal, site.internet, site.server, site.backend):
            sim.stop()


def pay(client: Client, sale_id: str, method: str, amount: int) -> dict[str, Any]:
    return client.call("sale.pay", sale_id=sale_id, method=method, amount=amount)


def test_an_offline_card_payment_over_the_amount_cap_is_refused_before_the_terminal(
    sites,
) -> None:
    site = sites(offline_max_amount=100)
    site.internet_down()
    sale_id, total = open_sale(site.client)
    assert total > 100
    with pytest.raises(RpcError) as refused:
        pay(site.client, sale_id, "card", total)
    assert refused.value.reason == "offline-card-amount-limit"
    data = refused.value.error["data"]
    assert (data["amount"], data["limit"]) == (total, 100)
    assert "35,00 kr" in data["message"] and "1,00 kr" in data["message"]
    assert approved(site) == []  # the terminal never saw the card
    # The advice works: the cap by card, the rest in cash.
    assert pay(site.client, sale_id, "card", 100)["card"]["offline"] is True
    assert pay(site.client, sale_id, "cash", total - 100)["status"] == "completed"
    # With the internet the cap does not apply: the terminal authorises online.
    site.internet_up()
    sale_id, total = open_sale(site.client)
    assert pay(site.client, sale_id, "card", total)["card"]["offline"] is False


def test_the_sum_stored_offline_is_capped_survives_a_crash_and_resets_after_forwarding(
    sites,
) -> None:
    site = sites(offline_max_total=1000)
    site.internet_down()
    first, total = open_sale(site.client)
    assert total > 1000
    pay(site.client, first, "card", 600)
    pay(site.client, first, "cash", total - 600)
    budget = site.status()["offline_card"]
    assert (budget["stored"], budget["stored_amount"], budget["max_total"]) == (1, 600, 1000)

    second, total = open_sale(site.client)
    with pytest.raises(RpcError) as refused:
        pay(site.client, second, "card", 600)
    assert refused.value.reason == "offline-card-total-limit"
    data = refused.value.error["data"]
    assert (data["stored_amount"], data["amount"], data["limit"]) == (600, 600, 1000)
    assert len(approved(site)) == 1
    pay(site.client, second, "card", 400)  # what is left of the budget is taken
    card = site.status()["payment_methods"]["card"]
    assert (card["available"], card["reason"]) == (False, "offline-card-total-limit")

    site.restart()  # the sum lives with the journal entries that changed it
    assert site.status()["offline_card"]["stored_amount"] == 1000
    site.internet_up()
    wait_for(lambda: site.status()["offline_card"]["stored"] == 0, 20, what="flush")
    budget = site.status()["offline_card"]
    assert (budget["stored_amount"], budget["oldest_age_s"], budget["age"]) == (0, None, "none")
    assert site.status()["payment_methods"]["card"]["available"] is True


def test_offline_payments_past_their_age_stop_further_offline_card_payments(sites) -> None:
    # 0.002 h is 7.2 s: the age limit a venue sets in hours, shrunk so the
    # test's clock can pass it; the warning comes at a quarter of it.
    site = sites(offline_max_age_h=0.002, offline_age_warning=0.25)
    events = site.till.client()
    events.call("events.subscribe", topics=["terminal"])
    site.internet_down()
    sale_id, total = open_sale(site.client)
    assert pay(site.client, sale_id, "card", total)["card"]["offline"] is True

    ages = []
    while not ages or ages[-1] != "expired":
        event = events.next_event()
        if event.get("event") == "offline-age":
            ages.append(event["age"])
    assert ages[-2:] == ["warning", "expired"]
    budget = site.status()["offline_card"]
    assert budget["age"] == "expired" and budget["oldest_age_s"] >= 7
    card = site.status()["payment_methods"]["card"]
    assert (card["available"], card["reason"]) == (False, "offline-cards-too-old")

    sale_id, total = open_sale(site.client)
    with pytest.raises(RpcError) as refused:
        pay(site.client, sale_id, "card", total)
    assert refused.value.reason == "offline-cards-too-old"
    assert refused.value.error["data"]["limit_h"] == 0.002
    assert len(approved(site)) == 1

    site.internet_up()  # the terminal forwards them; the age budget is free again
    wait_for(lambda: site.status()["offline_card"]["age"] == "none", 20, what="flush")
    assert pay(site.client, sale_id, "card", total)["status"] == "completed"
    events.close()
