"""The outage routine (CONTRACT.md, "Connectivity and modes" and "Payment and article rules").

Expectations are written out from the contract's tables, not from tilld.rules.
Where the contract leaves an order open, the precedence is stated here as the
specification:

1. an unknown method is refused before anything else (``unknown-method``);
2. a method switched off in the catalog is ``method-disabled`` in every mode,
   because that is configuration, not an outage;
3. for card: no terminal (``terminal-unavailable``) before anything about the
   network; with internet the terminal authorises online; without it the
   offline limit is checked before the brand, because the limit can refuse a
   card payment before the terminal has read the card (brand still unknown).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tilld.rules import (
    MODE_TABLE,
    PAYMENT_METHODS,
    CardFacts,
    CardPolicy,
    Connectivity,
    Decision,
    Fallback,
    Mode,
    OfflineAge,
    check_article,
    check_payment,
    check_refund,
    check_ticket_refund,
    offline_age,
)

DEFAULT_OFFLINE_BRANDS = {"visa", "mastercard"}
ONLINE_ONLY_BRANDS = ("visa electron", "maestro", "v pay", "amex")
BRANDS = (None, "visa", "mastercard", *ONLINE_ONLY_BRANDS)
ALL_METHODS = ("cash", "swish-manual", "swish", "card")
UNKNOWN_METHOD = "bitcoin"

booleans = st.booleans()
connectivities = st.builds(Connectivity, server=booleans, internet=booleans)
methods = st.sampled_from((*PAYMENT_METHODS, UNKNOWN_METHOD))
brands = st.sampled_from(BRANDS)
counts = st.one_of(st.sampled_from((0, 1, 249, 250, 251)), st.integers(0, 10_000))
# (stored, limit), with equal values and zero drawn often.
stored_and_limit = st.one_of(
    st.tuples(counts, counts),
    counts.map(lambda n: (n, n)),
    counts.map(lambda n: (n, 0)),
)
enabled_maps = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from((*ALL_METHODS, UNKNOWN_METHOD)), booleans),
)
fallbacks = st.one_of(
    st.none(),
    st.builds(Fallback, plu=st.sampled_from(("100", "7")), name=st.sampled_from(("Entré", "X"))),
)


def _is_enabled(method: str, enabled: dict[str, bool] | None) -> bool:
    return enabled is None or enabled.get(method, False)


# -- the mode table --------------------------------------------------------


def test_mode_table_is_exactly_the_contracts_four_rows():
    assert dict(MODE_TABLE) == {
        (True, True): "online",
        (False, True): "server-unreachable",
        (False, False): "no-internet",
        (True, False): "server-only",
    }


@given(server=booleans, internet=booleans)
def test_connectivity_mode_follows_the_contract_table(server, internet):
    expected = {
        (True, True): "online",
        (False, True): "server-unreachable",
        (False, False): "no-internet",
        (True, False): "server-only",
    }[(server, internet)]
    assert Connectivity(server=server, internet=internet).mode == expected


def test_mode_names_are_the_contract_strings():
    assert {m.value for m in Mode} == {"online", "server-unreachable", "no-internet", "server-only"}


def test_payment_methods_are_the_contracts_four():
    assert set(PAYMENT_METHODS) == set(ALL_METHODS)


# -- every refusal explains itself -----------------------------------------


@given(
    method=methods,
    conn=connectivities,
    enabled=enabled_maps,
    brand=brands,
    sl=stored_and_limit,
    terminal_ready=booleans,
)
def test_a_payment_refusal_always_has_a_reason_and_a_non_empty_message(
    method, conn, enabled, brand, sl, terminal_ready
):
    stored, limit = sl
    decision = check_payment(
        method,
        conn,
        enabled=enabled,
        card=CardFacts(offline_stored=stored, brand=brand, terminal_ready=terminal_ready),
        policy=CardPolicy(offline_limit=limit),
    )
    if not decision.allowed:
        assert decision.reason
        assert decision.message and decision.message.strip()


@given(
    kind=st.sampled_from(("goods", "ticket", "event-ticket", "season-pass")),
    conn=connectivities,
    name=st.sampled_from(("", "Konsert 19:00")),
    fallback=fallbacks,
)
def test_an_article_refusal_always_has_a_reason_and_a_non_empty_message(kind, conn, name, fallback):
    decision = check_article(kind, conn, name=name, fallback=fallback)
    if not decision.allowed:
        assert decision.reason
        assert decision.message and decision.message.strip()


def test_a_refusal_as_dict_carries_reason_and_message_for_status_get():
    decision = check_payment("swish", Connectivity(server=False, internet=True))
    assert decision.as_dict() == {
        "available": False,
        "reason": "method-unavailable-offline",
        "message": decision.message,
    }
    assert decision.message


def test_an_allowed_decision_as_dict_is_just_available():
    assert check_payment("cash", Connectivity(False, False)).as_dict() == {"available": True}


# -- methods that depend on nothing ----------------------------------------


@given(
    method=st.sampled_from(("cash", "swish-manual")),
    conn=connectivities,
    brand=brands,
    sl=stored_and_limit,
    terminal_ready=booleans,
)
def test_cash_and_manual_swish_are_allowed_in_every_mode_when_enabled(
    method, conn, brand, sl, terminal_ready
):
    stored, limit = sl
    decision = check_payment(
        method,
        conn,
        enabled={method: True},
        card=CardFacts(offline_stored=stored, brand=brand, terminal_ready=terminal_ready),
        policy=CardPolicy(offline_limit=limit),
    )
    assert decision.allowed


@given(method=st.sampled_from(("cash", "swish-manual")), conn=connectivities)
def test_cash_and_manual_swish_are_allowed_with_no_enabled_map(method, conn):
    assert check_payment(method, conn).allowed


# -- unknown and disabled methods ------------------------------------------


@given(conn=connectivities, enabled=enabled_maps)
def test_an_unknown_method_is_refused_in_every_mode_even_if_enabled(conn, enabled):
    decision = check_payment(UNKNOWN_METHOD, conn, enabled=enabled)
    assert not decision.allowed
    assert decision.reason == "unknown-method"


@given(method=st.sampled_from(ALL_METHODS), conn=connectivities, terminal_ready=booleans)
def test_a_method_switched_off_is_refused_as_disabled_in_every_mode(method, conn, terminal_ready):
    decision = check_payment(
        method,
        conn,
        enabled=dict.fromkeys(ALL_METHODS, True) | {method: False},
        card=CardFacts(terminal_ready=terminal_ready),
    )
    assert not decision.allowed
    assert decision.reason == "method-disabled"


@given(method=st.sampled_from(ALL_METHODS), conn=connectivities)
def test_a_method_missing_from_the_enabled_map_counts_as_switched_off(method, conn):
    others = {m: True for m in ALL_METHODS if m != method}
    decision = check_payment(method, conn, enabled=others)
    assert decision.reason == "method-disabled"


# -- integrated Swish ------------------------------------------------------


@given(internet=booleans)
def test_integrated_swish_is_allowed_when_the_server_is_reachable(internet):
    decision = check_payment(
        "swish", Connectivity(server=True, internet=internet), enabled={"swish": True}
    )
    assert decision.allowed


@given(internet=booleans)
def test_integrated_swish_is_refused_when_the_server_is_unreachable_even_with_internet(internet):
    decision = check_payment(
        "swish", Connectivity(server=False, internet=internet), enabled={"swish": True}
    )
    assert not decision.allowed
    assert decision.reason == "method-unavailable-offline"


# -- card ------------------------------------------------------------------


@given(server=booleans, brand=brands, sl=stored_and_limit)
def test_card_with_internet_is_allowed_for_any_brand_and_any_offline_count(server, brand, sl):
    stored, limit = sl
    decision = check_payment(
        "card",
        Connectivity(server=server, internet=True),
        enabled={"card": True},
        card=CardFacts(offline_stored=stored, brand=brand, terminal_ready=True),
        policy=CardPolicy(offline_limit=limit),
    )
    assert decision.allowed


@given(conn=connectivities, brand=brands, sl=stored_and_limit)
def test_card_is_refused_without_a_ready_terminal_in_every_mode(conn, brand, sl):
    stored, limit = sl
    decision = check_payment(
        "card",
        conn,
        enabled={"card": True},
        card=CardFacts(offline_stored=stored, brand=brand, terminal_ready=False),
        policy=CardPolicy(offline_limit=limit),
    )
    assert not decision.allowed
    assert decision.reason == "terminal-unavailable"


@given(server=booleans, brand=brands, sl=stored_and_limit)
def test_card_without_internet_is_allowed_iff_brand_listed_or_unread_and_under_the_limit(
    server, brand, sl
):
    stored, limit = sl
    decision = check_payment(
        "card",
        Connectivity(server=server, internet=False),
        enabled={"card": True},
        card=CardFacts(offline_stored=stored, brand=brand, terminal_ready=True),
        policy=CardPolicy(offline_limit=limit),
    )
    brand_ok = brand is None or brand in DEFAULT_OFFLINE_BRANDS
    assert decision.allowed == (brand_ok and stored < limit)


@given(server=booleans, brand=brands, sl=stored_and_limit)
def test_offline_card_limit_is_checked_before_the_brand(server, brand, sl):
    stored, limit = sl
    decision = check_payment(
        "card",
        Connectivity(server=server, internet=False),
        card=CardFacts(offline_stored=stored, brand=brand),
        policy=CardPolicy(offline_limit=limit),
    )
    if stored >= limit:
        assert decision.reason == "offline-card-limit-reached"
    elif brand is not None and brand not in DEFAULT_OFFLINE_BRANDS:
        assert decision.reason == "card-brand-online-only"
    else:
        assert decision.allowed


@given(server=booleans, brand=st.sampled_from(ONLINE_ONLY_BRANDS))
def test_online_only_brands_are_refused_offline_under_the_limit(server, brand):
    decision = check_payment(
        "card",
        Connectivity(server=server, internet=False),
        card=CardFacts(offline_stored=0, brand=brand),
    )
    assert not decision.allowed
    assert decision.reason == "card-brand-online-only"
    assert decision.details["brand"] == brand
    assert brand in decision.message


def test_maestro_refused_without_internet_even_under_the_limit():
    decision = check_payment(
        "card",
        Connectivity(server=True, internet=False),
        card=CardFacts(offline_stored=3, brand="maestro"),
        policy=CardPolicy(offline_limit=250),
    )
    assert decision.reason == "card-brand-online-only"


def test_visa_electron_is_not_visa_for_the_offline_allow_list():
    decision = check_payment(
        "card", Connectivity(False, False), card=CardFacts(brand="visa electron")
    )
    assert decision.reason == "card-brand-online-only"


def test_an_unread_card_is_allowed_offline_under_the_limit():
    decision = check_payment(
        "card", Connectivity(False, False), card=CardFacts(offline_stored=249, brand=None)
    )
    assert decision.allowed


def test_the_offline_limit_defaults_to_250_and_visa_mastercard():
    assert CardPolicy().offline_limit == 250
    assert set(CardPolicy().offline_brands) == DEFAULT_OFFLINE_BRANDS


def test_offline_card_refused_when_stored_equals_the_limit():
    decision = check_payment(
        "card",
        Connectivity(False, False),
        card=CardFacts(offline_stored=250, brand="visa"),
    )
    assert decision.reason == "offline-card-limit-reached"


def test_offline_card_allowed_one_below_the_limit():
    decision = check_payment(
        "card", Connectivity(False, False), card=CardFacts(offline_stored=249, brand="visa")
    )
    assert decision.allowed


@given(brand=brands, server=booleans)
def test_a_zero_offline_limit_refuses_every_offline_card(brand, server):
    decision = check_payment(
        "card",
        Connectivity(server=server, internet=False),
        card=CardFacts(offline_stored=0, brand=brand),
        policy=CardPolicy(offline_limit=0),
    )
    assert decision.reason == "offline-card-limit-reached"


def test_offline_limit_refusal_details_name_stored_and_limit():
    decision = check_payment(
        "card",
        Connectivity(False, False),
        card=CardFacts(offline_stored=12, brand=None),
        policy=CardPolicy(offline_limit=10),
    )
    assert decision.details == {"stored": 12, "limit": 10}
    assert "12" in decision.message and "10" in decision.message


@given(brand=st.sampled_from(("VISA", "Visa", "MasterCard", "MASTERCARD")))
def test_offline_brand_matching_ignores_case(brand):
    decision = check_payment("card", Connectivity(False, False), card=CardFacts(brand=brand))
    assert decision.allowed


def test_the_offline_allow_list_is_configuration_not_code():
    policy = CardPolicy(offline_limit=5, offline_brands=frozenset({"amex"}))
    conn = Connectivity(False, False)
    assert check_payment("card", conn, card=CardFacts(brand="amex"), policy=policy).allowed
    refused = check_payment("card", conn, card=CardFacts(brand="visa"), policy=policy)
    assert refused.reason == "card-brand-online-only"


def test_an_empty_allow_list_refuses_every_read_card_offline():
    policy = CardPolicy(offline_brands=frozenset())
    decision = check_payment(
        "card", Connectivity(True, False), card=CardFacts(brand="visa"), policy=policy
    )
    assert decision.reason == "card-brand-online-only"


# -- the whole payment table at once ---------------------------------------


def _expected_payment_reason(
    method: str,
    conn: Connectivity,
    enabled: dict[str, bool] | None,
    card: CardFacts,
    limit: int,
) -> str | None:
    """CONTRACT.md's payment table with the precedence stated in the module docstring."""
    if method not in ALL_METHODS:
        return "unknown-method"
    if not _is_enabled(method, enabled):
        return "method-disabled"
    if method in ("cash", "swish-manual"):
        return None
    if method == "swish":
        return None if conn.server else "method-unavailable-offline"
    if not card.terminal_ready:
        return "terminal-unavailable"
    if conn.internet:
        return None
    if card.offline_stored >= limit:
        return "offline-card-limit-reached"
    if card.brand is not None and card.brand not in DEFAULT_OFFLINE_BRANDS:
        return "card-brand-online-only"
    return None


@given(
    method=methods,
    conn=connectivities,
    enabled=enabled_maps,
    brand=brands,
    sl=stored_and_limit,
    terminal_ready=booleans,
)
def test_every_payment_combination_matches_the_contract_table(
    method, conn, enabled, brand, sl, terminal_ready
):
    stored, limit = sl
    card = CardFacts(offline_stored=stored, brand=brand, terminal_ready=terminal_ready)
    decision = check_payment(
        method, conn, enabled=enabled, card=card, policy=CardPolicy(offline_limit=limit)
    )
    expected = _expected_payment_reason(method, conn, enabled, card, limit)
    assert isinstance(decision, Decision)
    assert decision.allowed == (expected is None)
    assert decision.reason == expected


# -- articles --------------------------------------------------------------


@given(
    kind=st.sampled_from(("goods", "ticket")),
    conn=connectivities,
    name=st.sampled_from(("", "Entré vuxen")),
    fallback=fallbacks,
)
def test_goods_and_ordinary_tickets_are_sold_in_every_mode(kind, conn, name, fallback):
    assert check_article(kind, conn, name=name, fallback=fallback).allowed


@given(internet=booleans, fallback=fallbacks)
def test_event_ticket_is_sold_when_the_server_is_reachable(internet, fallback):
    decision = check_article(
        "event-ticket", Connectivity(server=True, internet=internet), fallback=fallback
    )
    assert decision.allowed


@given(internet=booleans, fallback=fallbacks, name=st.sampled_from(("", "Konsert 19:00")))
def test_event_ticket_is_refused_when_the_server_is_unreachable(internet, fallback, name):
    decision = check_article(
        "event-ticket", Connectivity(server=False, internet=internet), name=name, fallback=fallback
    )
    assert not decision.allowed
    assert decision.reason == "event-ticket-offline"


@given(internet=booleans)
def test_event_ticket_refusal_names_the_fallback_plu_and_name(internet):
    decision = check_article(
        "event-ticket",
        Connectivity(server=False, internet=internet),
        name="Konsert 19:00",
        fallback=Fallback(plu="100", name="Entré vuxen"),
    )
    assert decision.details["fallback_plu"] == "100"
    assert decision.details["fallback_name"] == "Entré vuxen"
    assert "100" in decision.message
    assert "Entré vuxen" in decision.message


def test_event_ticket_refusal_without_fallback_names_no_fallback():
    decision = check_article("event-ticket", Connectivity(False, True), name="Konsert 19:00")
    assert decision.reason == "event-ticket-offline"
    assert "fallback_plu" not in decision.details
    assert "fallback_name" not in decision.details


@given(conn=connectivities)
def test_an_unknown_article_kind_is_refused_in_every_mode(conn):
    decision = check_article("season-pass", conn)
    assert not decision.allowed
    assert decision.reason == "unknown-article-kind"


# -- refunds and training sales ------------------------------------------------
# Money goes back by cash or manual Swish in every mode; to a card only with
# the internet, a ready terminal, not for training, and never more than the
# receipt took by card. Integrated Swish is paid back by the venue, not the till.


@given(method=st.sampled_from(("cash", "swish-manual")), conn=connectivities, training=booleans)
def test_cash_and_manual_swish_refunds_are_allowed_in_every_mode(method, conn, training):
    assert check_refund(method, conn, training=training, amount=10**6, card_left=0).allowed


@given(conn=connectivities)
def test_integrated_swish_refunds_are_not_the_tills(conn):
    assert check_refund("swish", conn).reason == "method-not-supported"


@given(
    conn=connectivities,
    ready=booleans,
    training=booleans,
    amount=st.one_of(st.sampled_from((0, 1, 500)), st.integers(0, 10**6)),
    card_left=st.one_of(st.sampled_from((0, 1, 500)), st.integers(0, 10**6)),
)
def test_a_card_refund_is_allowed_exactly_when_every_condition_holds(
    conn, ready, training, amount, card_left
):
    decision = check_refund(
        "card", conn, terminal_ready=ready, training=training, amount=amount, card_left=card_left
    )
    expected = ready and conn.internet and not training and 0 < amount <= card_left
    assert decision.allowed is expected
    if training:
        assert decision.reason == "training-real-money"
    elif not ready:
        assert decision.reason == "terminal-unavailable"
    elif not conn.internet:
        assert decision.reason == "card-refund-needs-internet"
    elif amount == 0:
        assert decision.reason == "invalid-amount"
    elif amount > card_left:
        assert decision.reason == "refund-exceeds-card-payment"
        assert decision.details == {"card_left": card_left}


@given(method=st.sampled_from(("card", "swish")), conn=connectivities)
def test_a_training_sale_takes_no_real_money(method, conn):
    decision = check_payment(method, conn, training=True)
    assert decision.reason == "training-real-money"
    assert check_payment("cash", conn, training=True).allowed


@given(conn=connectivities, card_left=st.integers(0, 10**6))
def test_a_card_refund_of_nothing_is_refused(conn, card_left):
    decision = check_refund("card", Connectivity(True, True), amount=0, card_left=card_left)
    assert decision.reason == "invalid-amount"
    assert check_refund("cash", conn, amount=0, card_left=card_left).allowed


def test_a_used_ticket_is_refused_a_refund_unless_the_venue_allows_it():
    refused = check_ticket_refund(["TK1", "TK2"], allow_used=False)
    assert (refused.allowed, refused.reason) == (False, "ticket-already-used")
    assert refused.details == {"codes": ["TK1", "TK2"]}
    assert "TK1, TK2" in refused.message
    assert check_ticket_refund(["TK1"], allow_used=True).allowed
    assert check_ticket_refund([], allow_used=False).allowed


# -- the offline risk budget (issue: cards the Swedish way) --------------------
# Precedence, as the specification: the count limit, then the brand once it
# is known, then the oldest stored payment's age, one payment's amount, and
# the sum stored. None of it applies with the internet: the terminal
# authorises online and stores nothing.

amounts = st.integers(min_value=0, max_value=10_000_000)
ages = st.one_of(st.none(), st.floats(min_value=0, max_value=1000, allow_nan=False))


def budget_expectation(
    amount: int | None, stored_amount: int, age_h: float | None, policy: CardPolicy
) -> str | None:
    if age_h is not None and age_h >= policy.offline_max_age_h:
        return "offline-cards-too-old"
    if amount is not None and amount > policy.offline_max_amount:
        return "offline-card-amount-limit"
    if stored_amount + (1 if amount is None else amount) > policy.offline_max_total:
        return "offline-card-total-limit"
    return None


@given(
    amount=st.one_of(st.none(), amounts),
    stored_amount=amounts,
    age_h=ages,
    max_amount=amounts,
    max_total=amounts,
    max_age_h=st.floats(min_value=0.01, max_value=500, allow_nan=False),
    brand=st.sampled_from((None, "visa", "mastercard")),
)
def test_the_offline_budget_refuses_by_age_then_amount_then_total(
    amount, stored_amount, age_h, max_amount, max_total, max_age_h, brand
):
    policy = CardPolicy(
        offline_max_amount=max_amount, offline_max_total=max_total, offline_max_age_h=max_age_h
    )
    card = CardFacts(
        offline_stored=1,
        brand=brand,
        amount=amount,
        offline_amount=stored_amount,
        offline_age_h=age_h,
    )
    offline = check_payment("card", Connectivity(True, False), card=card, policy=policy)
    assert offline.reason == budget_expectation(amount, stored_amount, age_h, policy)
    online = check_payment("card", Connectivity(True, True), card=card, policy=policy)
    assert online.allowed


@given(brand=st.sampled_from(ONLINE_ONLY_BRANDS), amount=amounts)
def test_an_online_only_brand_is_named_before_any_budget(brand, amount):
    card = CardFacts(brand=brand, amount=amount, offline_amount=10**9, offline_age_h=10**6)
    decision = check_payment("card", Connectivity(False, False), card=card)
    assert decision.reason == "card-brand-online-only"


def test_the_budget_refusals_carry_their_figures():
    policy = CardPolicy(offline_max_amount=50_000, offline_max_total=100_000)
    over = check_payment(
        "card", Connectivity(False, False), card=CardFacts(amount=60_000), policy=policy
    )
    assert over.details == {"amount": 60_000, "limit": 50_000}
    full = check_payment(
        "card",
        Connectivity(False, False),
        card=CardFacts(amount=30_000, offline_amount=80_000),
        policy=policy,
    )
    assert full.details == {"stored_amount": 80_000, "amount": 30_000, "limit": 100_000}
    assert "200,00" in full.message  # the room left, in kronor: 1 000,00 - 800,00


@given(age_h=ages, max_age_h=st.floats(min_value=0.01, max_value=500), share=st.floats(0.01, 0.99))
def test_the_age_warns_past_its_share_and_expires_at_the_limit(age_h, max_age_h, share):
    policy = CardPolicy(offline_max_age_h=max_age_h, offline_age_warning=share)
    level = offline_age(age_h, policy)
    if age_h is None:
        assert level is OfflineAge.NONE
    elif age_h >= max_age_h:
        assert level is OfflineAge.EXPIRED
    elif age_h >= max_age_h * share:
        assert level is OfflineAge.WARNING
    else:
        assert level is OfflineAge.OK
