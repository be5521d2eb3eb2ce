"""How an entry is stored in its row (tilld/journal/rows.py): read back exactly as hashed."""

from __future__ import annotations

import json
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from tilld.chain import GENESIS_HASH, canonical_json, entry_hash, first_broken_seq
from tilld.journal.entry import Entry
from tilld.journal.rows import (
    LOOKUP_FIELDS,
    body_text,
    chain_view,
    decoded_row,
    hash_text,
    lookup_values,
    pack_body,
    pack_hash,
    pack_uuid,
    row_values,
    uuid_text,
)
from tilld.journal.schema import NUMBER_SERIES, STORED_COLUMNS

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text()
    | st.uuids().map(str)
    | st.sampled_from(['"', "\x00", "\\", "ö", "\u2028", '"\x00', "TK0001"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_a_body_reads_back_as_the_canonical_text_that_was_hashed(body):
    canonical = canonical_json(body)
    stored = pack_body(canonical)
    assert isinstance(stored, bytes)
    assert body_text(stored) == canonical
    assert body_text(canonical) == canonical  # an older tilld's text row


def test_a_sale_body_is_much_smaller_stored():
    body = {
        "lines": [
            {
                "amount": 3500,
                "kind": "goods",
                "line_id": 1,
                "name": "Kaffe",
                "plu": "300",
                "quantity": 1,
                "unit_price": 3500,
                "vat_rate": 12,
            }
        ],
        "mode": "online",
        "opened_at": "2026-11-27T10:00:00.000+01:00",
        "payments": [{"amount": 3500, "method": "cash", "payment_id": str(uuid.uuid4())}],
        "receipt_no": 17,
        "sale_id": str(uuid.uuid4()),
        "total": 3500,
    }
    canonical = canonical_json(body)
    assert len(pack_body(canonical)) < len(canonical) / 3


@given(st.uuids())
def test_a_uuid_is_16_bytes_and_reads_back(value):
    text = str(value)
    assert pack_uuid(text) == value.bytes
    assert uuid_text(pack_uuid(text)) == text


def test_values_not_in_canonical_form_are_kept_as_written():
    upper = str(uuid.uuid4()).upper()
    assert pack_uuid(upper) == upper and uuid_text(upper) == upper
    assert pack_hash("AB" * 32) == "AB" * 32 and hash_text("AB" * 32) == "AB" * 32
    assert pack_hash(GENESIS_HASH) == bytes(32) and hash_text(bytes(32)) == GENESIS_HASH


def test_a_stored_row_reads_back_as_the_entry_and_keeps_its_lookup_fields():
    body = {"receipt_no": 5, "sale_id": str(uuid.uuid4()), "total": 100}
    fields = {
        "uuid": str(uuid.uuid4()),
        "seq": 9,
        "type": "sale",
        "created_at": "2026-11-27T10:00:00.000+01:00",
        "prev_hash": "ab" * 32,
        "body": body,
    }
    entry = Entry(hash=entry_hash(fields), **fields)
    row = row_values(
        entry.seq,
        entry.uuid,
        entry.type,
        entry.created_at,
        canonical_json(body),
        entry.prev_hash,
        entry.hash,
        body,
    )
    assert len(row) == len(STORED_COLUMNS.split(", "))
    assert Entry.from_row(row[:7]) == entry
    assert chain_view(row[:7]) == entry.as_dict()
    assert row[7:] == (5, uuid.UUID(body["sale_id"]).bytes, None, None, None)
    assert decoded_row(row[:7])[4] == canonical_json(body)


def test_lookup_fields_are_kept_for_their_entry_types_only():
    body = {"receipt_no": 3, "code": "TK1", "z_no": 2, "original_receipt_no": 1}
    assert lookup_values("scan", body) == (None, None, "TK1", None, None)
    assert lookup_values("refund", body) == (3, None, None, None, 1)
    assert lookup_values("z-report", body) == (None, None, None, 2, None)
    assert lookup_values("float", body) == (None,) * 5
    # A numbered series is looked up by its column (store._next_number).
    for series, types in NUMBER_SERIES.items():
        assert LOOKUP_FIELDS[series] == types


def test_a_damaged_compressed_body_is_named_by_the_chain_check_not_a_crash():
    entries = []
    prev = GENESIS_HASH
    for seq in (1, 2, 3):
        fields = {
            "uuid": str(uuid.uuid4()),
            "seq": seq,
            "type": "float",
            "created_at": "2026-11-27T10:00:00.000+01:00",
            "prev_hash": prev,
            "body": {"amount": seq},
        }
        prev = entry_hash(fields)
        entries.append(Entry(hash=prev, **fields))
    rows = [
        row_values(
            e.seq,
            e.uuid,
            e.type,
            e.created_at,
            canonical_json(e.body),
            e.prev_hash,
            e.hash,
            e.body,
        )[:7]
        for e in entries
    ]
    body = rows[1][4]
    rows[1] = (*rows[1][:4], body[:-2] + bytes([body[-2] ^ 0xFF, body[-1] ^ 0xFF]), *rows[1][5:])
    assert first_broken_seq(chain_view(r) for r in rows) == 2
    rows[1] = (*rows[1][:4], b"\x07junk", *rows[1][5:])
    assert first_broken_seq(chain_view(r) for r in rows) == 2
    assert json.dumps(chain_view(rows[1]))  # still a plain value a report can print
