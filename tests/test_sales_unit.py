"""The pure sale model: lines, payments, change, persistence state and refund planning."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tilld.catalog import Article
from tilld.errors import Refused
from tilld.sales import MAX_QUANTITY, Payment, Sale, card_refundable, plan_refund, refund_body

ENTRE = Article(id="a1", plu="100", name="Entré vuxen", price=15000, vat_rate=6, kind="ticket")
KAFFE = Article(
    id="a3",
    plu="300",
    name="Kaffe",
    price=3500,
    vat_rate=12,
    kind="goods",
    barcodes=("7310000000001",),
)
VYKORT = Article(id="a7", plu="400", name="Vykort", price=1500, vat_rate=25, kind="goods")
KONSERT = Article(
    id="a2",
    plu="200",
    name="Konsert 19:00",
    price=35000,
    vat_rate=6,
    kind="event-ticket",
    event_id="ev-7",
    fallback_plu="100",
)


def new_sale() -> Sale:
    return Sale.new("2026-11-26T18:00:00+01:00")


def refused(excinfo: pytest.ExceptionInfo[Refused]) -> str:
    assert excinfo.value.message
    return excinfo.value.reason


# -- lines -----------------------------------------------------------------


def test_a_new_sale_is_empty_with_nothing_due():
    sale = new_sale()
    assert sale.lines == [] and sale.payments == []
    assert sale.total == 0 and sale.paid == 0 and sale.due == 0


def test_a_sale_is_empty_until_it_has_a_line_or_a_payment():
    """Only an empty sale may be closed as abandoned: it loses nobody anything."""
    sale = new_sale()
    assert sale.empty
    sale.add(KAFFE, 1)
    assert not sale.empty
    sale.remove(sale.lines[0].line_id)
    assert sale.empty
    sale.add(KAFFE, 1)
    sale.payments.append(sale.tender("cash", 1000))
    sale.lines.clear()  # a restored sale's lines are its own; payments alone keep it
    assert not sale.empty


def test_each_new_sale_gets_its_own_id():
    assert new_sale().sale_id != new_sale().sale_id


def test_add_creates_a_line_with_the_articles_price_and_vat():
    sale = new_sale()
    line = sale.add(KAFFE, 2)
    assert (line.plu, line.name, line.quantity, line.unit_price, line.vat_rate) == (
        "300",
        "Kaffe",
        2,
        3500,
        12,
    )
    assert line.amount == 7000
    assert sale.total == 7000


def test_adding_the_same_plu_again_merges_into_one_line():
    sale = new_sale()
    first = sale.add(KAFFE, 1)
    again = sale.add(KAFFE, 2)
    assert again.line_id == first.line_id
    assert len(sale.lines) == 1
    assert sale.lines[0].quantity == 3


def test_different_articles_get_separate_lines_with_rising_ids():
    sale = new_sale()
    ids = [sale.add(a, 1).line_id for a in (ENTRE, KAFFE, VYKORT)]
    assert ids == [1, 2, 3]


def test_line_ids_are_not_reused_after_a_remove():
    sale = new_sale()
    sale.add(ENTRE, 1)
    second = sale.add(KAFFE, 1)
    sale.remove(second.line_id)
    assert sale.add(VYKORT, 1).line_id == 3


def test_the_quantity_cap_is_accepted_exactly():
    sale = new_sale()
    assert sale.add(KAFFE, MAX_QUANTITY).quantity == MAX_QUANTITY


def test_one_more_than_the_quantity_cap_is_refused():
    with pytest.raises(Refused) as caught:
        new_sale().add(KAFFE, MAX_QUANTITY + 1)
    assert refused(caught) == "quantity-too-large"


def test_merging_past_the_quantity_cap_is_refused_and_leaves_the_line_unchanged():
    sale = new_sale()
    sale.add(KAFFE, 500)
    with pytest.raises(Refused) as caught:
        sale.add(KAFFE, 500)
    assert refused(caught) == "quantity-too-large"
    assert sale.lines[0].quantity == 500


def test_remove_takes_the_line_off_the_sale():
    sale = new_sale()
    sale.add(ENTRE, 1)
    line = sale.add(KAFFE, 1)
    removed = sale.remove(line.line_id)
    assert removed.plu == "300"
    assert [ln.plu for ln in sale.lines] == ["100"]
    assert sale.total == 15000


def test_removing_an_unknown_line_is_refused_as_unknown_line():
    sale = new_sale()
    sale.add(KAFFE, 1)
    with pytest.raises(Refused) as caught:
        sale.remove(42)
    assert refused(caught) == "unknown-line"
    assert caught.value.details["line_id"] == 42
    assert len(sale.lines) == 1


def test_goods_lines_carry_no_ticket_codes_in_their_view():
    sale = new_sale()
    sale.add(KAFFE, 1)
    sale.add(ENTRE, 1)
    goods, ticket = (line.as_dict() for line in sale.lines)
    assert "ticket_codes" not in goods
    assert ticket["ticket_codes"] == []


def test_event_ticket_lines_carry_their_event_id():
    sale = new_sale()
    assert sale.add(KONSERT, 1).as_dict()["event_id"] == "ev-7"


# -- tender ----------------------------------------------------------------


def test_paying_an_empty_sale_is_refused():
    with pytest.raises(Refused) as caught:
        new_sale().tender("cash", 100)
    assert refused(caught) == "sale-empty"


def test_cash_over_the_due_amount_gives_change():
    sale = new_sale()
    sale.add(KAFFE, 1)  # 35,00 kr
    payment = sale.tender("cash", 5000)
    assert payment.tendered == 5000
    assert payment.change == 1500
    assert payment.amount == 3500


def test_cash_of_exactly_the_due_amount_gives_no_change():
    sale = new_sale()
    sale.add(KAFFE, 1)
    payment = sale.tender("cash", 3500)
    assert (payment.amount, payment.change) == (3500, 0)


@pytest.mark.parametrize("method", ["card", "swish", "swish-manual"])
def test_a_non_cash_payment_over_the_due_amount_is_refused(method):
    sale = new_sale()
    sale.add(KAFFE, 1)
    with pytest.raises(Refused) as caught:
        sale.tender(method, 3501)
    assert refused(caught) == "amount-exceeds-due"
    assert caught.value.details["due"] == 3500


def test_a_zero_payment_on_an_unpaid_sale_is_refused():
    sale = new_sale()
    sale.add(KAFFE, 1)
    with pytest.raises(Refused) as caught:
        sale.tender("cash", 0)
    assert refused(caught) == "invalid-amount"


def test_tender_does_not_record_the_payment_itself():
    sale = new_sale()
    sale.add(KAFFE, 1)
    sale.tender("cash", 3500)
    assert sale.payments == [] and sale.due == 3500


def test_split_tender_reduces_what_is_due():
    sale = new_sale()
    sale.add(ENTRE, 1)
    sale.payments.append(sale.tender("swish-manual", 10000))
    assert sale.due == 5000
    last = sale.tender("cash", 10000)
    assert (last.amount, last.change) == (5000, 5000)


def test_a_second_non_cash_payment_cannot_exceed_the_rest_due():
    sale = new_sale()
    sale.add(ENTRE, 1)
    sale.payments.append(sale.tender("cash", 10000))
    with pytest.raises(Refused) as caught:
        sale.tender("swish-manual", 5001)
    assert refused(caught) == "amount-exceeds-due"


@given(price=st.integers(1, 100_000), quantity=st.integers(1, 50), extra=st.integers(0, 100_000))
def test_cash_change_is_tendered_minus_due_and_settles_the_sale(price, quantity, extra):
    article = Article(id="x", plu="9", name="X", price=price, vat_rate=25, kind="goods")
    sale = new_sale()
    sale.add(article, quantity)
    due = price * quantity
    payment = sale.tender("cash", due + extra)
    assert payment.change == extra
    sale.payments.append(payment)
    assert sale.due == 0


def test_a_pending_payment_blocks_another_tender():
    sale = new_sale()
    sale.add(KAFFE, 1)
    sale.payments.append(
        Payment(payment_id="p1", method="swish", amount=3500, tendered=3500, status="pending")
    )
    with pytest.raises(Refused) as caught:
        sale.tender("cash", 3500)
    assert refused(caught) == "payment-pending"


def test_a_pending_payment_does_not_count_as_paid():
    sale = new_sale()
    sale.add(KAFFE, 1)
    sale.payments.append(
        Payment(payment_id="p1", method="swish", amount=3500, tendered=3500, status="pending")
    )
    assert sale.paid == 0 and sale.due == 3500


# -- locked after a payment ------------------------------------------------


def _sale_with_a_payment() -> Sale:
    sale = new_sale()
    sale.add(ENTRE, 1)
    sale.payments.append(sale.tender("cash", 5000))
    return sale


def test_adding_after_a_payment_is_refused_as_sale_has_payments():
    sale = _sale_with_a_payment()
    with pytest.raises(Refused) as caught:
        sale.add(KAFFE, 1)
    assert refused(caught) == "sale-has-payments"
    assert len(sale.lines) == 1


def test_adding_more_of_a_paid_line_is_refused_as_sale_has_payments():
    sale = _sale_with_a_payment()
    with pytest.raises(Refused) as caught:
        sale.add(ENTRE, 1)
    assert refused(caught) == "sale-has-payments"
    assert sale.lines[0].quantity == 1


def test_removing_after_a_payment_is_refused_as_sale_has_payments():
    sale = _sale_with_a_payment()
    with pytest.raises(Refused) as caught:
        sale.remove(sale.lines[0].line_id)
    assert refused(caught) == "sale-has-payments"
    assert len(sale.lines) == 1


# -- persistence state -----------------------------------------------------


def _busy_sale() -> Sale:
    sale = new_sale()
    sale.add(ENTRE, 2).ticket_codes.extend(["TKAAAAAAAA01", "TKAAAAAAAA02"])
    sale.add(KONSERT, 1).reservation_ids.append("res-1")
    sale.add(KAFFE, 3)
    sale.remove(3)
    sale.payments.append(sale.tender("cash", 20000))
    sale.payments.append(
        Payment(
            payment_id="p2",
            method="swish",
            amount=1000,
            tendered=1000,
            status="pending",
            swish_id="sw-1",
            swish_token="tok",
            reference="ref",
        )
    )
    return sale


def test_state_round_trips_to_an_equal_sale():
    sale = _busy_sale()
    assert Sale.from_state(sale.state()) == sale


def test_state_survives_json_and_round_trips():
    sale = _busy_sale()
    restored = Sale.from_state(json.loads(json.dumps(sale.state())))
    assert restored == sale
    assert restored.view() == sale.view()


def test_a_restored_sale_keeps_numbering_lines_where_it_left_off():
    sale = new_sale()
    sale.add(ENTRE, 1)
    sale.add(KAFFE, 1)
    sale.remove(2)
    restored = Sale.from_state(json.loads(json.dumps(sale.state())))
    assert restored.add(VYKORT, 1).line_id == 3


# -- views and journal bodies ----------------------------------------------


def test_completed_body_totals_and_vat_per_rate():
    sale = new_sale()
    sale.add(ENTRE, 1)  # 150,00 at 6 %
    sale.add(KAFFE, 2)  # 70,00 at 12 %
    sale.payments.append(sale.tender("cash", 22000))
    body = sale.completed_body("no-internet")
    assert body["total"] == 22000
    assert body["mode"] == "no-internet"
    assert body["vat"] == [
        {"rate": 12, "gross": 7000, "net": 6250, "vat": 750},
        {"rate": 6, "gross": 15000, "net": 14151, "vat": 849},
    ]
    assert [p["method"] for p in body["payments"]] == ["cash"]
    line = body["lines"][1]
    assert {
        k: line[k] for k in ("plu", "name", "quantity", "unit_price", "vat_rate", "amount")
    } == {
        "plu": "300",
        "name": "Kaffe",
        "quantity": 2,
        "unit_price": 3500,
        "vat_rate": 12,
        "amount": 7000,
    }


def test_a_cash_payment_view_shows_tendered_and_change():
    sale = new_sale()
    sale.add(KAFFE, 1)
    view = sale.tender("cash", 5000).as_dict()
    assert (view["amount"], view["tendered"], view["change"]) == (3500, 5000, 1500)


def test_void_body_returns_the_payments_taken():
    sale = _sale_with_a_payment()
    body = sale.void_body("customer left", "online")
    assert body["reason"] == "customer left"
    assert [p["amount"] for p in body["payments_returned"]] == [5000]
    assert body["total"] == 15000


# -- refunds ---------------------------------------------------------------


def _sale_body() -> dict:
    return {
        "sale_id": "s-1",
        "receipt_no": 17,
        "lines": [
            {
                "line_id": 1,
                "plu": "100",
                "name": "Entré vuxen",
                "kind": "ticket",
                "quantity": 3,
                "unit_price": 15000,
                "vat_rate": 6,
                "amount": 45000,
                "ticket_codes": ["TK01", "TK02", "TK03"],
            },
            {
                "line_id": 2,
                "plu": "300",
                "name": "Kaffe",
                "kind": "goods",
                "quantity": 2,
                "unit_price": 3500,
                "vat_rate": 12,
                "amount": 7000,
            },
        ],
        "total": 52000,
    }


def _refund_of(line_id: int, quantity: int, codes: list[str] | None = None) -> dict:
    line = {"line_id": line_id, "quantity": quantity}
    if codes:
        line["ticket_codes"] = codes
    return {"lines": [line]}


def test_a_whole_refund_takes_every_line_in_full():
    plan = plan_refund(_sale_body(), [], None)
    assert [(p.line_id, p.quantity) for p in plan] == [(1, 3), (2, 2)]
    assert set(plan[0].ticket_codes) == {"TK01", "TK02", "TK03"}
    assert plan[1].ticket_codes == ()


def test_a_partial_refund_takes_only_the_wanted_quantity():
    plan = plan_refund(_sale_body(), [], {2: 1})
    assert [(p.line_id, p.quantity, p.amount) for p in plan] == [(2, 1, 3500)]


def test_a_line_wanted_as_none_refunds_all_that_is_left_of_it():
    plan = plan_refund(_sale_body(), [_refund_of(1, 1, ["TK03"])], {1: None})
    assert [(p.line_id, p.quantity) for p in plan] == [(1, 2)]


def test_a_refund_larger_than_what_is_left_is_refused():
    with pytest.raises(Refused) as caught:
        plan_refund(_sale_body(), [_refund_of(2, 1)], {2: 2})
    assert refused(caught) == "refund-exceeds-sale"
    assert caught.value.details == {"line_id": 2, "left": 1}


def test_a_refund_larger_than_the_sold_quantity_is_refused():
    with pytest.raises(Refused) as caught:
        plan_refund(_sale_body(), [], {1: 4})
    assert refused(caught) == "refund-exceeds-sale"


def test_refunding_an_unknown_line_is_refused_as_unknown_line():
    with pytest.raises(Refused) as caught:
        plan_refund(_sale_body(), [], {1: 1, 9: 1})
    assert refused(caught) == "unknown-line"
    assert caught.value.details["line_id"] == 9


def test_refunding_a_fully_refunded_receipt_is_refused_as_nothing_to_refund():
    earlier = [_refund_of(1, 3, ["TK01", "TK02", "TK03"]), _refund_of(2, 2)]
    with pytest.raises(Refused) as caught:
        plan_refund(_sale_body(), earlier, None)
    assert refused(caught) == "nothing-to-refund"


def test_a_whole_refund_after_a_partial_one_takes_only_the_rest():
    plan = plan_refund(_sale_body(), [_refund_of(2, 1)], None)
    assert [(p.line_id, p.quantity) for p in plan] == [(1, 3), (2, 1)]


def test_earlier_partial_refunds_add_up():
    earlier = [_refund_of(2, 1), _refund_of(2, 1)]
    with pytest.raises(Refused) as caught:
        plan_refund(_sale_body(), earlier, {2: 1})
    assert refused(caught) == "refund-exceeds-sale"


def test_refunded_ticket_codes_are_never_returned_again():
    earlier = [_refund_of(1, 1, ["TK02"])]
    (plan,) = plan_refund(_sale_body(), earlier, {1: 2})
    assert sorted(plan.ticket_codes) == ["TK01", "TK03"]


def test_a_partial_ticket_refund_returns_as_many_unrefunded_codes_as_tickets():
    (plan,) = plan_refund(_sale_body(), [], {1: 2})
    assert len(plan.ticket_codes) == 2
    assert set(plan.ticket_codes) <= {"TK01", "TK02", "TK03"}


def test_successive_ticket_refunds_return_disjoint_codes_covering_the_line():
    body = _sale_body()
    earlier: list[dict] = []
    returned: list[str] = []
    for _ in range(3):
        (plan,) = plan_refund(body, earlier, {1: 1})
        assert len(plan.ticket_codes) == 1
        returned.extend(plan.ticket_codes)
        earlier.append(_refund_of(1, 1, list(plan.ticket_codes)))
    assert sorted(returned) == ["TK01", "TK02", "TK03"]


def test_a_wanted_quantity_of_zero_alone_is_nothing_to_refund():
    with pytest.raises(Refused) as caught:
        plan_refund(_sale_body(), [], {2: 0})
    assert refused(caught) == "nothing-to-refund"


def test_refund_body_totals_lines_and_vat():
    body = _sale_body()
    plan = plan_refund(body, [], {1: 1, 2: 2})
    refund = refund_body(body, plan, "cash", "server-unreachable", "wrong day")
    assert refund["original_receipt_no"] == 17
    assert refund["original_sale_id"] == "s-1"
    assert refund["reason"] == "wrong day"
    assert refund["mode"] == "server-unreachable"
    assert refund["total"] == 15000 + 7000
    assert refund["payments"] == [{"method": "cash", "amount": 22000}]
    assert refund["vat"] == [
        {"rate": 12, "gross": 7000, "net": 6250, "vat": 750},
        {"rate": 6, "gross": 15000, "net": 14151, "vat": 849},
    ]
    assert [(ln["line_id"], ln["quantity"], ln["amount"]) for ln in refund["lines"]] == [
        (1, 1, 15000),
        (2, 2, 7000),
    ]


def test_refund_body_lists_ticket_codes_only_for_ticket_lines():
    body = _sale_body()
    refund = refund_body(body, plan_refund(body, [], None), "swish-manual", "online", "")
    tickets, goods = refund["lines"]
    assert len(tickets["ticket_codes"]) == 3
    assert "ticket_codes" not in goods


def test_card_refundable_is_the_card_payments_less_earlier_card_refunds():
    sale = {"payments": [{"method": "cash", "amount": 500}, {"method": "card", "amount": 700}]}
    earlier = [
        {"payments": [{"method": "card", "amount": 200}]},
        {"payments": [{"method": "cash", "amount": 300}]},
    ]
    assert card_refundable(sale, []) == 700
    assert card_refundable(sale, earlier) == 500
    assert card_refundable(sale, [*earlier, {"payments": [{"method": "card", "amount": 900}]}]) == 0
