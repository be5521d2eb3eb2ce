"""Ticket codes made from the catalog's ticket_code_pattern (BACKEND-PROTOCOL.md: they must
match the pattern and be unique)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilld.catalog import DEFAULT_TICKET_CODE_PATTERN
from tilld.ticketcodes import UnsupportedPattern, make_ticket_code

SUPPORTED_PATTERNS = [
    DEFAULT_TICKET_CODE_PATTERN,
    r"^TK[0-9A-Z]{8,32}$",
    r"\d{10}",
    r"^\d{10}$",
    r"[A-F0-9]{16}",
    r"(AB|CD)-[0-9]{6}",
    r"^(?:TK|TX)[0-9]{4}(?:-[A-Z]{2}){2}$",
    r"^EV(2026|2027)_[a-z0-9]+$",
    r"T?K[0-9]*Z",
    r"^[0-9]{3}\.[0-9]{3}$",
    r"^(VIP|STD|KID)-[0-9]{2,4}-[A-HJ-NP-Z2-9]{6}$",
    r"^.{10}$",
]


@pytest.mark.parametrize("pattern", SUPPORTED_PATTERNS)
def test_a_made_code_fully_matches_its_pattern(pattern):
    for _ in range(20):
        code = make_ticket_code(pattern)
        assert re.fullmatch(pattern, code), (pattern, code)


def test_default_pattern_codes_are_tk_and_8_to_32_upper_case_alphanumerics():
    code = make_ticket_code(DEFAULT_TICKET_CODE_PATTERN)
    assert code.startswith("TK")
    assert 8 <= len(code) - 2 <= 32
    assert code[2:].isalnum() and code[2:] == code[2:].upper()


def test_every_branch_of_an_alternation_can_be_produced():
    seen = {make_ticket_code(r"^(AB|CD)[0-9]{4}$")[:2] for _ in range(200)}
    assert seen == {"AB", "CD"}


@pytest.mark.parametrize("pattern", [DEFAULT_TICKET_CODE_PATTERN, r"\d{10}", r"[A-F0-9]{16}"])
def test_codes_differ_between_calls(pattern):
    codes = [make_ticket_code(pattern) for _ in range(200)]
    assert len(set(codes)) == len(codes)


def test_a_pattern_with_one_possible_code_gives_that_code():
    assert make_ticket_code(r"^FIXED-1$") == "FIXED-1"


@settings(max_examples=50)
@given(
    prefix=st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=0, max_size=4),
    low=st.integers(1, 20),
    extra=st.integers(0, 20),
    cls=st.sampled_from(["[0-9]", "[A-Z]", "[0-9A-Z]", r"\d", "[a-f0-9]"]),
)
def test_generated_prefix_and_class_patterns_are_always_matched(prefix, low, extra, cls):
    pattern = f"^{prefix}{cls}{{{low},{low + extra}}}$"
    assert re.fullmatch(pattern, make_ticket_code(pattern))


@pytest.mark.parametrize(
    "pattern",
    [
        r"^TK(?=[0-9])[0-9A-Z]{8}$",  # lookahead
        r"^TK(?![0-9])[A-Z]{8}$",  # negative lookahead
        r"^(TK)[0-9]{4}\1$",  # backreference
        r"^TK[^0-9]{8}$",  # negated class
        r"^TK\w{8}$",  # word class
        r"^TK[0-9]{4}$X",  # an anchor no code can pass
        r"(?i)tk[0-9a-f]{12}",  # flags: the matcher would have to know them
        r"\bTK\d{8}\b",  # \b: an anchor that is not at the start or the end
        r"^(a|aa)+$",  # a repeated group of different lengths: ReDoS elsewhere
    ],
)
def test_an_unsupported_pattern_raises_unsupported_pattern(pattern):
    with pytest.raises(UnsupportedPattern):
        make_ticket_code(pattern)


def test_an_unsupported_pattern_is_a_value_error_for_callers_that_catch_those():
    assert issubclass(UnsupportedPattern, ValueError)


@pytest.mark.parametrize(
    ("pattern", "named"),
    [
        (r"^TK(?=[0-9])[0-9]{8}$", "ASSERT"),
        (r"^(TK)[0-9]{4}\1$", "GROUPREF"),
    ],
)
def test_an_unsupported_construct_is_named_in_the_message(pattern, named):
    with pytest.raises(UnsupportedPattern) as caught:
        make_ticket_code(pattern)
    assert named in str(caught.value)
    assert "pattern" in str(caught.value)


def test_an_unmatchable_pattern_names_the_pattern_and_what_to_do():
    pattern = r"^TK[0-9]{4}$X"
    with pytest.raises(UnsupportedPattern) as caught:
        make_ticket_code(pattern)
    message = str(caught.value)
    assert pattern in message or repr(pattern) in message
    assert "ticket_code_pattern" in message
