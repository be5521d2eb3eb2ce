"""sale.checkout in process: the same basket gives the same journal entry, or the same refusal,
as the step-by-step calls, and a refused checkout records nothing.

The till is app.py's Daemon in this process (tests/inprocess.py) on a real
SQLite journal: one till without a back-end for the property (the rules of
a till that is offline, without a terminal), and one online through the
reference back-end for sync. The socket and D-Bus faces are in
tests/test_checkout_apis.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inprocess import Rig, RunningTill, off_loop, run, running_till

from tilld.errors import Reason, Refused
from tilld.sales import BasketLine, Tender

# Goods by PLU and by barcode, and admission tickets; now and then an event
# ticket (refused without the server) or a PLU the catalog does not have.
SELLABLE = [("300", None), ("301", None), (None, "7310000000032"), (None, "7310000000018")]
SELLABLE += [("100", None), ("101", None)]
REFUSED = [("200", None), ("no-such-plu", None)]
# Recorded methods mostly; card (no terminal here) and integrated Swish (no server) now and then.
METHODS = ["cash", "swish-manual"] * 3 + ["swish", "card"]


@dataclass(frozen=True)
class Outcome:
    kind: str  # "completed", "refused" or "short" (paid less than the total)
    body: dict[str, Any] | None = None
    reason: str | None = None
    message: str | None = None


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    """A sale entry's body without what differs between two sales by nature:
    its id, its time, its receipt number, its payments' ids, its tickets' codes."""
    kept = {k: v for k, v in body.items() if k not in ("sale_id", "opened_at", "receipt_no")}
    kept["lines"] = [
        {**line, "ticket_codes": len(line["ticket_codes"])} if "ticket_codes" in line else line
        for line in body["lines"]
    ]
    kept["payments"] = [{k: v for k, v in p.items() if k != "payment_id"} for p in body["payments"]]
    return kept


def amounts(total: int, shares: list[int], last_delta: int) -> list[int]:
    """Payments for ``total``: a share of it each (never the whole), then the rest plus a delta."""
    paid, out = 0, []
    for share in shares:
        amount = min(total - paid - 1, max(1, total * share // 100))
        if amount < 1:
            break
        out.append(amount)
        paid += amount
    out.append(max(0, total - paid + last_delta))
    return out


async def step_by_step(
    till: RunningTill, lines: list[BasketLine], methods: list[str], shares, delta, training
) -> tuple[Outcome, list[Tender]]:
    """The basket through sale.open, sale.add and sale.pay; the payments it was given."""
    t = till.till
    sale_id = t.open_sale(training)["sale_id"]
    tenders: list[Tender] = []
    try:
        for line in lines:
            await t.add(sale_id, plu=line.plu, barcode=line.barcode, quantity=line.quantity)
        total = (await t.get(sale_id))["total"]
        tenders = [
            Tender(method, amount, None)
            for method, amount in zip(methods, amounts(total, shares, delta), strict=False)
        ]
        answer: dict[str, Any] = {}
        for tender in tenders:
            answer = await t.pay(sale_id, tender.method, tender.amount, tender.reference)
    except Refused as exc:
        if sale_id in t.settlement.open:
            await t.void(sale_id, "test: refused step")
        if not tenders:
            # Refused before the total was known: the checkout gets payments all the same.
            tenders = [Tender(methods[-1], 1000 + delta if delta > 0 else 1000)]
        return Outcome("refused", reason=str(exc.reason), message=exc.message), tenders
    if answer.get("status") != "completed":
        await t.void(sale_id, "test: paid short")
        return Outcome("short"), tenders
    entry = await t.journal.find_sale(sale_id)
    assert entry is not None and entry.type == "sale"
    return Outcome("completed", body=entry.body), tenders


async def checkout(
    till: RunningTill, lines: list[BasketLine], tenders: list[Tender], training: bool
) -> tuple[Outcome, int, int]:
    """The basket through sale.checkout: its outcome, the journal head before and after."""
    t = till.till
    before = t.journal.head_seq
    open_before = len(t.settlement.open)
    try:
        answer = await t.checkout(lines, tenders, training)
    except Refused as exc:
        assert len(t.settlement.open) == open_before, "a refused checkout left a sale open"
        outcome = Outcome("refused", reason=str(exc.reason), message=exc.message)
        return outcome, before, t.journal.head_seq
    assert answer["status"] == "completed" and answer["receipt_no"] >= 1
    entry = await t.journal.find_sale(answer["sale_id"])
    assert entry is not None and entry.seq == t.journal.head_seq
    assert entry.body["receipt_no"] == answer["receipt_no"]
    assert answer["sale"]["state"] == "completed"
    return Outcome("completed", body=entry.body), before, t.journal.head_seq


quantities = st.sampled_from([1, 1, 1, 2, 3, 4, 4, 600])  # twice 600 of one is too many
baskets = st.tuples(
    st.lists(st.tuples(st.sampled_from(SELLABLE), quantities), min_size=1, max_size=5),
    st.lists(st.tuples(st.sampled_from(REFUSED), quantities), max_size=1),
    st.integers(0, 5),
).map(lambda drawn: drawn[0][: drawn[2]] + drawn[1] + drawn[0][drawn[2] :])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    basket=baskets,
    methods=st.lists(st.sampled_from(METHODS), min_size=1, max_size=3),
    shares=st.lists(st.integers(1, 99), max_size=2),
    delta=st.one_of(st.just(0), st.integers(-2000, 5000)),
    training=st.booleans(),
)
def same_both_ways(on_loop, till: RunningTill, basket, methods, shares, delta, training) -> None:
    lines = [BasketLine(plu, barcode, quantity) for (plu, barcode), quantity in basket]
    shares = shares[: len(methods) - 1]
    stepped, tenders = on_loop(step_by_step(till, lines, methods, shares, delta, training))
    checked, before, after = on_loop(checkout(till, lines, tenders, training))
    if stepped.kind == "completed":
        assert checked.kind == "completed", checked
        assert stepped.body is not None and checked.body is not None
        assert comparable(checked.body) == comparable(stepped.body)
        assert after == before + 1  # one entry: the completed sale
        return
    assert checked.kind == "refused", (stepped, checked)
    assert after == before, "a refused checkout journaled something"
    if stepped.kind == "short":
        assert checked.reason == Reason.CHECKOUT_NOT_COVERED
    else:
        assert (checked.reason, checked.message) == (stepped.reason, stepped.message)


def test_the_same_basket_gives_the_same_entry_or_refusal_both_ways(short_tmp: Path) -> None:
    # The till runs on this thread's loop (it sets signal handlers); hypothesis
    # drives it from a worker thread, one basket at a time.
    async def scenario() -> None:
        async with running_till(short_tmp) as till:
            loop = asyncio.get_running_loop()

            def on_loop(coro: Any) -> Any:
                return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

            await asyncio.to_thread(same_both_ways, on_loop, till)

    run(scenario())


def test_a_checkout_names_what_is_missing_and_leaves_nothing(short_tmp: Path) -> None:
    async def scenario() -> None:
        async with running_till(short_tmp) as till:
            t = till.till
            lines = [BasketLine("300", None, 2), BasketLine(None, "7310000000018", 1)]
            before = t.journal.head_seq  # 2 x 3500 + 3000 = 10000 öre
            with pytest.raises(Refused) as short:
                await t.checkout(lines, [Tender("cash", 4000), Tender("swish-manual", 5000)])
            assert short.value.reason == Reason.CHECKOUT_NOT_COVERED
            assert short.value.details == {"total": 10000, "paid": 9000, "due": 1000}
            assert "1000 öre is missing" in short.value.message
            assert t.journal.head_seq == before and not t.settlement.open
            done = await t.checkout(lines, [Tender("swish-manual", 5000), Tender("cash", 6000)])
            assert done["status"] == "completed" and done["change"] == 1000
            assert [p["method"] for p in done["sale"]["payments"]] == ["swish-manual", "cash"]
            assert done["sale"]["lines"][0]["quantity"] == 2 and done["sale"]["total"] == 10000
            assert t.journal.head_seq == before + 1

    run(scenario())


def test_a_payment_after_the_total_is_covered_is_refused_as_step_by_step_would(
    short_tmp: Path,
) -> None:
    async def scenario() -> None:
        async with running_till(short_tmp) as till:
            t = till.till
            lines = [BasketLine("300", None, 1)]  # 3500 öre
            before = t.journal.head_seq
            with pytest.raises(Refused) as extra:
                await t.checkout(lines, [Tender("swish-manual", 3500), Tender("cash", 500)])
            assert extra.value.reason == Reason.CHECKOUT_OVERPAID
            assert extra.value.details == {"payment": 2, "total": 3500}
            assert t.journal.head_seq == before and not t.settlement.open

    run(scenario())


def test_a_checkout_sent_again_with_its_id_returns_the_recorded_sale(short_tmp: Path) -> None:
    async def scenario() -> None:
        async with running_till(short_tmp) as till:
            t = till.till
            lines = [BasketLine("300", None, 2)]
            checkout_id = "5b7f7f4e-3f0c-4c4e-9a55-3b1d2f6c8a10"
            first = await t.checkout(lines, [Tender("cash", 10000)], checkout_id=checkout_id)
            head = t.journal.head_seq
            again = await t.checkout(lines, [Tender("cash", 10000)], checkout_id=checkout_id)
            assert first["sale_id"] == again["sale_id"] == checkout_id
            assert again["receipt_no"] == first["receipt_no"] and again["change"] == 3000
            assert again["repeated"] is True and "repeated" not in first
            assert t.journal.head_seq == head  # no second sale, no second receipt
            # After a restart, from the journal rather than the recent sales.
            t.settlement.recent.clear()
            assert (await t.checkout(lines, [], checkout_id=checkout_id))["receipt_no"] == (
                first["receipt_no"]
            )
            opened = t.open_sale()
            with pytest.raises(Refused) as in_use:
                await t.checkout(lines, [Tender("cash", 7000)], checkout_id=opened["sale_id"])
            assert in_use.value.reason == Reason.CHECKOUT_ID_IN_USE

    run(scenario())


# -- online: card and integrated Swish, event tickets, sync ------------------------------------


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with Rig.in_temporary_folder() as rig:
        yield rig


def test_online_card_and_swish_are_refused_naming_the_steps_and_the_sale_syncs(
    rig: Rig, short_tmp: Path
) -> None:
    async def scenario() -> None:
        async with running_till(short_tmp, rig.config()) as till:
            await till.wait_mode("online")
            await till.wait_for(
                lambda: till.status()["payment_methods"]["card"]["available"], "terminal ready"
            )
            t = till.till
            basket = [BasketLine("300", None, 1), BasketLine("100", None, 2)]  # 3500 + 2 x 15000
            before = t.journal.head_seq
            for method in ("card", "swish"):
                with pytest.raises(Refused) as steps:
                    await t.checkout(basket, [Tender(method, 33500)])
                assert steps.value.reason == Reason.CHECKOUT_NEEDS_STEPS
                assert steps.value.details == {"method": method}
                assert "sale.open" in steps.value.message and "sale.pay" in steps.value.message
            assert t.journal.head_seq == before and not t.settlement.open
            assert (await off_loop(rig.terminal.state))["booked"] == []  # the terminal saw nothing
            # Online, an event ticket is sold: its seats reserved at the server.
            done = await t.checkout([*basket, BasketLine("200", None, 1)], [Tender("cash", 70000)])
            receipt_no = done["receipt_no"]
            lines = done["sale"]["lines"]
            assert [line["plu"] for line in lines] == ["300", "100", "200"]
            assert len(lines[2]["reservation_ids"]) == 1
            codes = [c for line in lines for c in line.get("ticket_codes", ())]
            assert len(codes) == 3
            synced = await t.sync_now(wait=True, timeout=15)
            assert synced["drained"] is True, synced
            stored = await off_loop(rig.backend.journal, till.till_id)
            sale = [e for e in stored if e["type"] == "sale"]
            assert [e["body"]["receipt_no"] for e in sale] == [receipt_no]
            assert sale[0]["body"]["sale_id"] == done["sale_id"]
            entry = await t.journal.find_sale(done["sale_id"])
            assert entry is not None and sale[0]["hash"] == entry.hash
            for code in codes:  # its tickets are valid at the gates like any others
                assert (await off_loop(rig.backend.ticket, code))["state"] == "valid"

    run(scenario())
