"""The journal hash chain as BACKEND-PROTOCOL.md defines it (POST /v1/tills/{till_id}/journal).

hash = hex SHA-256 of prev_hash + "\\n" + canonical, canonical being the entry
without "hash" as JSON with sorted keys, separators "," and ":", non-ASCII kept,
UTF-8 encoded. The expected hashes here are computed from that wording with
hashlib and json directly, never with tilld.chain.
"""

from __future__ import annotations

import copy
import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from tilld.chain import (
    GENESIS_HASH,
    canonical_body,
    canonical_json,
    entry_hash,
    entry_hash_with_body,
    first_broken_seq,
)

ZEROS = "0" * 64


def protocol_hash(entry: dict) -> str:
    """The hash exactly as the protocol words it."""
    without_hash = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(without_hash, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((entry["prev_hash"] + "\n" + canonical).encode("utf-8")).hexdigest()


def make_chain(bodies: list[dict]) -> list[dict]:
    entries = []
    prev = ZEROS
    for seq, body in enumerate(bodies, start=1):
        entry = {
            "uuid": f"00000000-0000-4000-8000-{seq:012d}",
            "seq": seq,
            "type": "sale",
            "created_at": f"2026-11-26T18:{seq % 60:02d}:02.123+01:00",
            "prev_hash": prev,
            "body": body,
        }
        entry["hash"] = protocol_hash(entry)
        prev = entry["hash"]
        entries.append(entry)
    return entries


def sample_chain(n: int = 5) -> list[dict]:
    return make_chain(
        [{"receipt_no": i, "lines": [{"name": "Entré", "amount": 15000}]} for i in range(1, n + 1)]
    )


ENTRY = {
    "uuid": "0b7c0000-0000-4000-8000-000000000001",
    "seq": 1,
    "type": "sale",
    "created_at": "2026-11-26T18:01:02.123+01:00",
    "prev_hash": ZEROS,
    "body": {"lines": [{"name": "Entré vuxen", "amount": 15000}], "total": 15000},
}

# The canonical text written out by hand: keys sorted at every level, no spaces,
# "é" kept as itself rather than escaped as \u00e9.
ENTRY_CANONICAL = (
    '{"body":{"lines":[{"amount":15000,"name":"Entré vuxen"}],"total":15000},'
    '"created_at":"2026-11-26T18:01:02.123+01:00",'
    f'"prev_hash":"{ZEROS}",'
    '"seq":1,"type":"sale","uuid":"0b7c0000-0000-4000-8000-000000000001"}'
)


def test_genesis_prev_hash_is_64_zeros():
    assert GENESIS_HASH == ZEROS


def test_entry_hash_matches_the_hand_written_canonical_form():
    expected = hashlib.sha256((ZEROS + "\n" + ENTRY_CANONICAL).encode("utf-8")).hexdigest()
    assert entry_hash(ENTRY) == expected


def test_entry_hash_matches_the_protocol_wording_computed_with_json():
    assert entry_hash(ENTRY) == protocol_hash(ENTRY)


def test_entry_hash_keeps_non_ascii_unescaped():
    escaped = json.dumps(ENTRY, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    hash_if_escaped = hashlib.sha256((ZEROS + "\n" + escaped).encode()).hexdigest()
    assert "\\u00e9" in escaped  # the two forms really differ for this entry
    assert entry_hash(ENTRY) != hash_if_escaped


def test_entry_hash_ignores_the_hash_field_itself():
    with_hash = dict(ENTRY, hash="f" * 64)
    other_hash = dict(ENTRY, hash="a" * 64)
    assert entry_hash(with_hash) == entry_hash(other_hash) == protocol_hash(ENTRY)


def test_entry_hash_is_a_64_char_lower_case_hex_digest():
    digest = entry_hash(ENTRY)
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")


def test_entry_hash_depends_on_the_prev_hash():
    assert entry_hash(ENTRY) != entry_hash(dict(ENTRY, prev_hash="1" * 64))


def test_entry_hash_does_not_depend_on_key_order():
    reversed_entry = dict(reversed(list(ENTRY.items())))
    reversed_entry["body"] = dict(reversed(list(ENTRY["body"].items())))
    assert entry_hash(reversed_entry) == protocol_hash(ENTRY)


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**15), 10**15), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)


@given(
    body=st.dictionaries(st.text(max_size=8), json_values, max_size=5), seq=st.integers(1, 10**9)
)
def test_entry_hash_equals_the_protocol_hash_for_any_json_body(body, seq):
    entry = dict(ENTRY, seq=seq, body=body)
    assert entry_hash(entry) == protocol_hash(entry)
    # The journal's append hashes with the body's text it stores, made once.
    assert entry_hash_with_body(entry, canonical_json(body)) == protocol_hash(entry)


keyed_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.dictionaries(st.integers(-20, 20), inner, max_size=4),
    ),
    max_leaves=15,
)


@given(body=st.dictionaries(st.text(max_size=8), keyed_values, max_size=5))
def test_the_stored_body_and_its_text_are_those_of_one_round_trip_through_json(body):
    parsed, text = canonical_body(body)
    round_trip = json.loads(canonical_json(body))
    assert parsed == round_trip
    assert text == canonical_json(round_trip)


def test_a_body_with_number_keys_is_sorted_as_it_is_stored():
    # 2 < 10 as numbers, "10" < "2" as text: the stored body has text keys.
    parsed, text = canonical_body({"refunded": {2: 1, 10: 1}})
    assert parsed == {"refunded": {"2": 1, "10": 1}}
    assert text == '{"refunded":{"10":1,"2":1}}'


# -- verification ----------------------------------------------------------


def test_an_intact_chain_has_no_broken_seq():
    assert first_broken_seq(sample_chain()) is None


def test_an_empty_journal_has_no_broken_seq():
    assert first_broken_seq([]) is None


def test_a_tampered_body_breaks_the_chain_at_that_entry():
    chain = sample_chain()
    chain[2]["body"]["lines"][0]["amount"] = 100
    assert first_broken_seq(chain) == 3


def test_a_tampered_body_with_a_recomputed_hash_breaks_the_chain_at_the_next_entry():
    chain = sample_chain()
    chain[2]["body"]["total"] = 1
    chain[2]["hash"] = protocol_hash(chain[2])
    assert first_broken_seq(chain) == 4


def test_a_tampered_prev_hash_breaks_the_chain_at_that_entry():
    chain = sample_chain()
    chain[1]["prev_hash"] = "1" * 64
    assert first_broken_seq(chain) == 2


def test_a_first_entry_not_chained_to_genesis_is_broken():
    chain = make_chain([{"n": 1}])
    chain[0]["prev_hash"] = "f" * 64
    chain[0]["hash"] = protocol_hash(chain[0])
    assert first_broken_seq(chain) == 1


def test_a_tampered_hash_breaks_the_chain_at_that_entry():
    chain = sample_chain()
    chain[3]["hash"] = "e" * 64
    assert first_broken_seq(chain) == 4


def test_a_missing_entry_breaks_the_chain_at_the_seq_after_the_gap():
    chain = sample_chain()
    del chain[2]
    assert first_broken_seq(chain) == 4


def test_reordered_entries_break_the_chain_at_the_first_out_of_place_seq():
    chain = sample_chain()
    chain[1], chain[2] = chain[2], chain[1]
    assert first_broken_seq(chain) == 3


def test_a_duplicated_entry_breaks_the_chain_at_the_repeated_seq():
    chain = sample_chain()
    chain.insert(2, copy.deepcopy(chain[1]))
    assert first_broken_seq(chain) == 2


def test_a_journal_not_starting_at_seq_1_is_broken_at_its_first_seq():
    chain = sample_chain()
    assert first_broken_seq(chain[1:]) == 2


def test_a_self_consistent_entry_with_a_wrong_seq_breaks_the_chain():
    chain = sample_chain()
    chain[2]["seq"] = 30
    chain[2]["hash"] = protocol_hash(chain[2])
    assert first_broken_seq(chain) == 30


@given(n=st.integers(1, 12), data=st.data())
def test_tampering_any_body_is_found_at_that_entrys_seq(n, data):
    chain = sample_chain(n)
    index = data.draw(st.integers(0, n - 1))
    chain[index]["body"]["receipt_no"] = -1
    assert first_broken_seq(chain) == index + 1


@given(n=st.integers(2, 12), data=st.data())
def test_removing_any_entry_but_the_last_is_found_at_the_next_seq(n, data):
    chain = sample_chain(n)
    index = data.draw(st.integers(0, n - 2))
    del chain[index]
    assert first_broken_seq(chain) == index + 2
