"""Swedish VAT extracted from gross prices in integer öre, and amounts formatted for people."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tilld.money import VAT_RATES, format_sek, vat_breakdown, vat_of_gross

NBSP = "\u00a0"
rates = st.one_of(st.sampled_from((25, 12, 6, 0)), st.integers(0, 100))
grosses = st.integers(-(10**12), 10**12)


def _exact_vat(gross: int, rate: int) -> Fraction:
    return Fraction(gross * rate, 100 + rate)


# -- hand-computed examples --------------------------------------------------


@pytest.mark.parametrize(
    ("gross", "rate", "vat"),
    [
        (15000, 6, 849),  # 150 kr admission: 15000 * 6/106 = 849.06 -> 849
        (3500, 12, 375),  # 35 kr coffee: 3500 * 12/112 = 375 exactly
        (12500, 25, 2500),  # 125 kr: 12500 * 25/125 = 2500 exactly
        (35000, 6, 1981),  # 350 kr concert: 1981.13 -> 1981
        (9900, 25, 1980),  # 99 kr tote bag: 1980 exactly
        (3000, 12, 321),  # 30 kr bun: 321.43 -> 321
        (3, 25, 1),  # 0.6 -> 1
        (2, 25, 0),  # 0.4 -> 0
        (1, 6, 0),  # 0.057 -> 0
    ],
)
def test_vat_of_gross_matches_hand_computed_swedish_examples(gross, rate, vat):
    assert vat_of_gross(gross, rate) == vat


@given(gross=grosses)
def test_vat_at_zero_percent_is_zero(gross):
    assert vat_of_gross(gross, 0) == 0


@given(rate=rates)
def test_vat_of_nothing_is_nothing(rate):
    assert vat_of_gross(0, rate) == 0


def test_an_exact_half_ore_rounds_up_away_from_zero():
    # 14 öre at 12 %: 14 * 12 / 112 = 1.5 exactly; 42 öre: 4.5 exactly.
    assert vat_of_gross(14, 12) == 2
    assert vat_of_gross(42, 12) == 5


def test_a_negative_exact_half_ore_rounds_down_away_from_zero():
    assert vat_of_gross(-14, 12) == -2
    assert vat_of_gross(-42, 12) == -5


@given(gross=grosses, rate=rates)
def test_vat_of_a_negative_amount_is_the_negated_vat_of_the_positive(gross, rate):
    assert vat_of_gross(-gross, rate) == -vat_of_gross(gross, rate)


@given(gross=grosses, rate=rates)
def test_vat_is_within_half_an_ore_of_the_exact_value(gross, rate):
    assert abs(vat_of_gross(gross, rate) - _exact_vat(gross, rate)) <= Fraction(1, 2)


@given(gross=grosses, rate=rates)
def test_vat_is_the_exact_value_rounded_half_away_from_zero(gross, rate):
    exact = _exact_vat(gross, rate)
    magnitude = abs(exact)
    whole = magnitude.numerator // magnitude.denominator
    rounded = whole + 1 if magnitude - whole >= Fraction(1, 2) else whole
    assert vat_of_gross(gross, rate) == (rounded if exact >= 0 else -rounded)


@given(gross=st.integers(0, 10**12), rate=rates)
def test_vat_never_exceeds_the_gross_amount(gross, rate):
    assert 0 <= vat_of_gross(gross, rate) <= gross


def test_vat_rates_are_the_swedish_ones_highest_first():
    assert VAT_RATES == (25, 12, 6, 0)


# -- breakdown per rate --------------------------------------------------------


@given(st.lists(st.tuples(st.integers(-(10**9), 10**9), st.sampled_from(VAT_RATES)), max_size=30))
def test_net_plus_vat_is_gross_on_every_breakdown_line(amounts):
    for line in vat_breakdown(amounts):
        assert line.net + line.vat == line.gross


@given(st.lists(st.tuples(st.integers(0, 10**9), st.sampled_from(VAT_RATES)), max_size=30))
def test_breakdown_has_one_line_per_rate_highest_first(amounts):
    lines = vat_breakdown(amounts)
    rates_seen = [line.rate for line in lines]
    assert rates_seen == sorted({rate for _, rate in amounts}, reverse=True)


@given(st.lists(st.tuples(st.integers(0, 10**9), st.sampled_from(VAT_RATES)), max_size=30))
def test_breakdown_gross_per_rate_is_the_sum_of_that_rates_amounts(amounts):
    for line in vat_breakdown(amounts):
        assert line.gross == sum(g for g, r in amounts if r == line.rate)


def test_breakdown_of_a_mixed_basket():
    # Admission 150 kr (6 %), two coffees 2 x 35 kr (12 %), a postcard 15 kr (25 %).
    lines = vat_breakdown([(15000, 6), (3500, 12), (3500, 12), (1500, 25)])
    assert [line.as_dict() for line in lines] == [
        {"rate": 25, "gross": 1500, "net": 1200, "vat": 300},
        {"rate": 12, "gross": 7000, "net": 6250, "vat": 750},
        {"rate": 6, "gross": 15000, "net": 14151, "vat": 849},
    ]


def test_breakdown_rounds_once_per_rate_not_per_line():
    # Three 14 öre lines at 12 %: per line 1.5 -> 2 each (6), but the sum 42 holds 4.5 -> 5.
    (line,) = vat_breakdown([(14, 12), (14, 12), (14, 12)])
    assert line.vat == 5
    assert line.gross == 42


def test_breakdown_of_nothing_is_empty():
    assert vat_breakdown([]) == []


# -- formatting ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ore", "text"),
    [
        (0, "0,00"),
        (5, "0,05"),
        (99, "0,99"),
        (100, "1,00"),
        (15000, "150,00"),
        (123456, f"1{NBSP}234,56"),
        (1234567, f"12{NBSP}345,67"),
        (100000000, f"1{NBSP}000{NBSP}000,00"),
    ],
)
def test_format_sek_uses_decimal_comma_and_space_grouping(ore, text):
    assert format_sek(ore) == text


@pytest.mark.parametrize(("ore", "text"), [(-5, "-0,05"), (-150, "-1,50"), (-123456, "-1 234,56")])
def test_format_sek_puts_the_minus_sign_in_front_of_negative_amounts(ore, text):
    assert format_sek(ore).replace(NBSP, " ") == text


def test_format_sek_groups_with_a_non_breaking_space_so_an_amount_never_wraps():
    assert " " not in format_sek(123456789)
    assert NBSP in format_sek(123456789)
